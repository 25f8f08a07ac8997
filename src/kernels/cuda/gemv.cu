// Batch-1 linear layer (y = W x + b) as a bandwidth-bound GEMV: the decode step's matrices are read
// once per token, so the kernel's job is to stream W at full memory bandwidth. Each warp owns one
// output row at a time and walks it with 16-byte loads (8 bf16 / f16 elements per lane, 4 loads in
// flight per lane); x sits in shared memory in its dtype; float32 accumulation, a warp reduction, one
// rounding. W [N, K] row-major (nn.Linear's layout), K a multiple of 8, 16-byte aligned rows and x.
#include <algorithm>

#include "kernels/cuda/common.cuh"

namespace phi::cuda {
namespace {

constexpr int kWarps = 8;

template <typename T>
__global__ void gemv_kernel(const T* __restrict__ w, const T* __restrict__ x, const T* __restrict__ bias,
                            T* __restrict__ y, int64_t N, int64_t K) {
  // x staged in its own dtype: lane i reads the 16 bytes at chunk i, so a quarter warp reads 128
  // contiguous bytes (no bank conflicts).
  extern __shared__ uint4 x_s[];
  const int64_t vectors = K / 8;  // 16-byte chunks per row
  for (int64_t i = threadIdx.x; i < vectors; i += blockDim.x) x_s[i] = reinterpret_cast<const uint4*>(x)[i];
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  auto dot8 = [](const uint4& wv, const uint4& xv) {
    const T* we = reinterpret_cast<const T*>(&wv);
    const T* xe = reinterpret_cast<const T*>(&xv);
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) sum += to_float(we[i]) * to_float(xe[i]);
    return sum;
  };
  for (int64_t n = blockIdx.x * static_cast<int64_t>(kWarps) + warp; n < N; n += gridDim.x * static_cast<int64_t>(kWarps)) {
    const uint4* row = reinterpret_cast<const uint4*>(w + n * K);
    float acc = 0.f;
    int64_t c = lane;
    for (; c + 96 < vectors; c += 128) {
      uint4 packed[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) packed[u] = __ldg(row + c + 32 * u);
#pragma unroll
      for (int u = 0; u < 4; ++u) acc += dot8(packed[u], x_s[c + 32 * u]);
    }
    for (; c < vectors; c += 32) acc += dot8(__ldg(row + c), x_s[c]);
    acc = warp_sum(acc);
    if (lane == 0) y[n] = from_float<T>(bias != nullptr ? acc + to_float(bias[n]) : acc);
  }
}

}  // namespace

int gemv(const GemvParams& p, void* stream) {
  if (p.dtype == DType::kFloat32 || p.K % 8 != 0 || p.K > kGemvMaxK) return static_cast<int>(cudaErrorInvalidValue);
  const size_t shared = static_cast<size_t>(p.K) * 2;
  if (shared > 48 * 1024) return static_cast<int>(cudaErrorInvalidValue);
  return dispatch_dtype(p.dtype, [&](auto tag) {
    using E = decltype(tag);
    if constexpr (sizeof(E) != 2) {
      return static_cast<int>(cudaErrorInvalidValue);
    } else {
      if (p.N == 0) return 0;
      // Four blocks (32 warps) per SM keep enough loads in flight; each warp loops over its rows, and
      // x is staged once per block rather than once per row group.
      const int64_t blocks = std::min<int64_t>((p.N + kWarps - 1) / kWarps, static_cast<int64_t>(p.sms) * 4);
      gemv_kernel<E><<<static_cast<unsigned>(blocks), kWarps * 32, shared, static_cast<cudaStream_t>(stream)>>>(
          static_cast<const E*>(p.w), static_cast<const E*>(p.x), static_cast<const E*>(p.bias), static_cast<E*>(p.y),
          p.N, p.K);
      return static_cast<int>(cudaGetLastError());
    }
  });
}

}  // namespace phi::cuda
