// Shared device helpers for the CUDA kernels: dtype conversion, warp and block reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/launch.h"

namespace phi::cuda {

template <typename T>
__device__ __forceinline__ float to_float(T v) { return static_cast<float>(v); }
template <>
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <>
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v) { return static_cast<T>(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float(float v) { return __float2bfloat16(v); }
template <>
__device__ __forceinline__ __half from_float(float v) { return __float2half(v); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 33 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < n_warps ? scratch[lane] : 0.f;
    t = warp_sum(t);
    if (lane == 0) scratch[32] = t;
  }
  __syncthreads();
  return scratch[32];
}

// Whether the 64 x 64 attention tile (query block qb, key block kb) can hold a visible pair for
// query head h under the block-sparse pattern (always, when dense).
__device__ __forceinline__ bool tile_in_pattern(const AttentionShape& s, int64_t h, int64_t qb, int64_t kb) {
  if (s.bs_vert == 0) return true;
  return qb - kb < s.bs_local || (kb + h * s.bs_head_step + 1) % s.bs_vert == 0;
}

// Runs f(std::integral_constant<int, D>) for the flash kernels' head dims (PHI_FLASH_HEAD_DIMS in
// launch.h: the one list the host checks read too).
template <typename F>
int dispatch_head_dim(int64_t D, F&& f) {
  switch (D) {
#define PHI_HEAD_DIM_CASE(d) \
  case d: return f(std::integral_constant<int, d>{});
    PHI_FLASH_HEAD_DIMS(PHI_HEAD_DIM_CASE)
#undef PHI_HEAD_DIM_CASE
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

// Runs f.template operator()<T>() for the dtype (float / bf16 / half).
template <typename F>
int dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat32: return f(float{});
    case DType::kBFloat16: return f(__nv_bfloat16{});
    case DType::kFloat16: return f(__half{});
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

// The flash kernels' common launch checks and dispatch: bf16 / f16, Tq == Tk, whole GQA groups,
// nothing to do for an empty batch; runs f(integral_constant<int, D>, T{}) for the element type T.
template <typename Params, typename F>
int dispatch_flash(const Params& p, F&& f) {
  const AttentionShape& s = p.shape;
  if (p.dtype == DType::kFloat32 || s.Tq != s.Tk || s.Hkv <= 0 || s.Hq % s.Hkv != 0) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  if (s.B * s.Hq == 0 || s.Tq == 0) return 0;
  return dispatch_head_dim(s.D, [&](auto d) {
    return p.dtype == DType::kBFloat16 ? f(d, __nv_bfloat16{}) : f(d, __half{});
  });
}

}  // namespace phi::cuda
