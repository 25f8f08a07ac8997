// RMSNorm forward, one block per row.
// Algorithm: each thread accumulates x^2 over a strided slice of the row in float32, a block
// reduction (warp shuffles, then shared memory across warps) gives the mean, then every thread
// writes weight * cast(x * rsqrt(mean + eps)) — the cast before the weight multiply matches
// Phi3RMSNorm. Layout: x and y [rows, cols] row-major, weight [cols]. Limits: cols < 2^31.
// Tested shapes: none on a GPU yet (issue 5); compiled for sm_80 and sm_90a.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/rms_norm_launch.h"

namespace phi::cuda {
namespace {

template <typename T>
__device__ float to_float(T v) { return static_cast<float>(v); }
template <>
__device__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <>
__device__ float to_float(__half v) { return __half2float(v); }

template <typename T>
__device__ T from_float(float v) { return static_cast<T>(v); }
template <>
__device__ __nv_bfloat16 from_float(float v) { return __float2bfloat16(v); }
template <>
__device__ __half from_float(float v) { return __float2half(v); }

template <typename T>
__global__ void rms_norm_kernel(const T* __restrict__ x, const T* __restrict__ weight, T* __restrict__ y,
                                int64_t cols, float eps) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * cols;
  T* yr = y + row * cols;
  float sum = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = to_float(xr[c]);
    sum += v * v;
  }
  for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffff, sum, offset);
  __shared__ float warp_sums[32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_sums[warp] = sum;
  __syncthreads();
  if (warp == 0) {
    const int n_warps = (blockDim.x + 31) / 32;
    sum = lane < n_warps ? warp_sums[lane] : 0.f;
    for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffff, sum, offset);
    if (lane == 0) warp_sums[0] = sum;
  }
  __syncthreads();
  const float inv = rsqrtf(warp_sums[0] / static_cast<float>(cols) + eps);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    T normed = from_float<T>(to_float(xr[c]) * inv);
    yr[c] = from_float<T>(to_float(weight[c]) * to_float(normed));
  }
}

template <typename T>
int launch(const void* x, const void* weight, void* y, int64_t rows, int64_t cols, float eps, void* stream) {
  const int threads = cols >= 1024 ? 1024 : (cols >= 256 ? 256 : 128);
  rms_norm_kernel<T><<<static_cast<unsigned>(rows), threads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<T*>(y), cols, eps);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int rms_norm_forward(RmsNormDType dtype, const void* x, const void* weight, void* y, int64_t rows,
                     int64_t cols, float eps, void* stream) {
  switch (dtype) {
    case RmsNormDType::kFloat32: return launch<float>(x, weight, y, rows, cols, eps, stream);
    case RmsNormDType::kBFloat16: return launch<__nv_bfloat16>(x, weight, y, rows, cols, eps, stream);
    case RmsNormDType::kFloat16: return launch<__half>(x, weight, y, rows, cols, eps, stream);
  }
  return -1;
}

const char* error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace phi::cuda
