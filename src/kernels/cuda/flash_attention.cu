// Flash attention (causal, key padding, GQA, optional sliding window and Phi-3-small's block-sparse
// pattern at 64-token blocks) forward and backward on the tensor cores through WMMA 16x16x16 bf16 /
// f16 fragments with float32 accumulation. Tiles outside the window or the block pattern are
// skipped (the pattern is decided per 64 x 64 tile, which is its block size).
//
// Forward: grid (ceil(Tq / 64), B * Hq), 4 warps; a block owns 64 query rows, a warp 16 of them.
// The Q tile stays in registers as WMMA fragments; K and V tiles of 64 keys are staged in shared
// memory (rows padded by 8 elements against bank conflicts). Per key tile a warp computes its
// 16 x 64 scores (S = Q K^T) into shared memory, two lanes per row apply the mask and the online
// softmax in float32 (base-2 exponentials with the scale folded in), write P in the input dtype,
// and P V goes through shared memory into per-lane float32 output registers rescaled by the
// row's correction factor. Key tiles past the causal limit or the key length are never visited.
// The logsumexp (natural log) of each row is written for the backward.
//
// Backward (FlashAttention-2 order): grid (ceil(Tk / 64), B * Hkv), 4 warps; a block owns 64 keys
// (a warp 16 of them) for every query head of its kv group, so dK and dV accumulate in WMMA
// fragments without atomics. Per query tile it recomputes S^T = K Q^T, P^T = exp(S^T * scale -
// lse), dV += P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - delta), dK += dS^T Q * scale, and adds
// dQ += dS K * scale into a float32 buffer with atomics.
//
// Shapes: head dims 64, 80, 96, 128 (80 natively: 5 fragments); q [B, Hq, T, D], k / v [B, Hkv, T, D]
// with any batch / head / row strides and contiguous rows (16-byte aligned).
#include <mma.h>

#include <cfloat>

#include "kernels/cuda/common.cuh"

namespace phi::cuda {
namespace {

using namespace nvcuda;

constexpr int kBr = 64;   // query rows per forward block
constexpr int kBc = 64;   // keys per tile
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Copies a [64, D] tile (rows `row0..row0+63` of a [rows, D] matrix with row stride `stride`) into
// shared memory with leading dimension LD; rows at or past `valid` are zero.
template <typename T, int D, int LD>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int64_t stride, int64_t row0, int64_t valid) {
  constexpr int kVecPerRow = D / 8;  // 16-byte vectors
  for (int idx = threadIdx.x; idx < 64 * kVecPerRow; idx += blockDim.x) {
    const int r = idx / kVecPerRow, c = (idx % kVecPerRow) * 8;
    uint4 value = make_uint4(0, 0, 0, 0);
    if (row0 + r < valid) value = *reinterpret_cast<const uint4*>(src + (row0 + r) * stride + c);
    *reinterpret_cast<uint4*>(dst + r * LD + c) = value;
  }
}

template <typename T, int D>
struct FwdLayout {
  static constexpr int LD = D + 8, LDS = kBc + 4, LDP = kBc + 8, LDO = D + 4;
  static constexpr size_t kTile = static_cast<size_t>(64) * LD * sizeof(T);
  static constexpr size_t kS = 16 * LDS * sizeof(float), kP = 16 * LDP * sizeof(T), kO = 16 * LDO * sizeof(float);
  static constexpr size_t bytes = 3 * kTile + 4 * (kS + kP + kO);
};

template <typename T, int D>
__global__ void __launch_bounds__(128) flash_forward_kernel(AttentionShape s, const T* __restrict__ q,
                                                            const T* __restrict__ k, const T* __restrict__ v,
                                                            const int64_t* __restrict__ key_lengths, float scale_log2,
                                                            T* __restrict__ o, float* __restrict__ lse) {
  using L = FwdLayout<T, D>;
  extern __shared__ __align__(128) unsigned char smem[];
  T* Qs = reinterpret_cast<T*>(smem);
  T* Ks = reinterpret_cast<T*>(smem + L::kTile);
  T* Vs = reinterpret_cast<T*>(smem + 2 * L::kTile);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  unsigned char* mine = smem + 3 * L::kTile + warp * (L::kS + L::kP + L::kO);
  float* Sw = reinterpret_cast<float*>(mine);
  T* Pw = reinterpret_cast<T*>(mine + L::kS);
  float* Ow = reinterpret_cast<float*>(mine + L::kS + L::kP);

  const int64_t qb = gridDim.x - 1 - blockIdx.x;  // the longest rows first
  const int64_t bh = blockIdx.y, b = bh / s.Hq, h = bh % s.Hq, kvh = h / (s.Hq / s.Hkv);
  const int64_t q0 = qb * kBr;
  const int64_t len = key_lengths ? key_lengths[b] : s.Tk;
  const T* qbase = q + b * s.q_sb + h * s.q_sh;
  const T* kbase = k + b * s.k_sb + kvh * s.k_sh;
  const T* vbase = v + b * s.v_sb + kvh * s.v_sh;

  load_tile<T, D, L::LD>(Qs, qbase, s.q_st, q0, s.Tq);
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qf[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) wmma::load_matrix_sync(qf[kk], Qs + warp * 16 * L::LD + kk * 16, L::LD);

  const int r = lane >> 1, half = lane & 1;
  const int64_t i = q0 + warp * 16 + r;  // this lane's query row
  float m = -INFINITY, l = 0.f;
  float acc[D / 2];
#pragma unroll
  for (int c = 0; c < D / 2; ++c) acc[c] = 0.f;

  const int64_t kv_end = min(q0 + kBr, len);
  const int64_t n_tiles = kv_end > 0 ? (kv_end + kBc - 1) / kBc : 0;
  // With a sliding window the block's first row sees nothing before q0 - window + 1.
  const int64_t first_tile = s.window > 0 ? max(static_cast<int64_t>(0), q0 - s.window + 1) / kBc : 0;
  for (int64_t tile = first_tile; tile < n_tiles; ++tile) {
    if (!tile_in_pattern(s, h, qb, tile)) continue;  // the same for the whole block
    const int64_t j0 = tile * kBc;
    __syncthreads();  // every warp is done with the previous K / V tile
    load_tile<T, D, L::LD>(Ks, kbase, s.k_st, j0, min(len, s.Tk));
    load_tile<T, D, L::LD>(Vs, vbase, s.v_st, j0, min(len, s.Tk));
    __syncthreads();
#pragma unroll
    for (int n = 0; n < kBc / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> sf;
      wmma::fill_fragment(sf, 0.f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kf;
        wmma::load_matrix_sync(kf, Ks + n * 16 * L::LD + kk * 16, L::LD);
        wmma::mma_sync(sf, qf[kk], kf, sf);
      }
      wmma::store_matrix_sync(Sw + n * 16, sf, L::LDS, wmma::mem_row_major);
    }
    __syncwarp();
    float sv[32];
    float mx = -INFINITY;
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const int64_t j = j0 + half * 32 + c;
      const bool visible = j <= i && j < len && (s.window == 0 || i - j < s.window);
      sv[c] = visible ? Sw[r * L::LDS + half * 32 + c] * scale_log2 : -INFINITY;
      mx = fmaxf(mx, sv[c]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float m_new = fmaxf(m, mx);
    const float alpha = m == -INFINITY ? 0.f : exp2f(m - m_new);
    float psum = 0.f;
#pragma unroll
    for (int c = 0; c < 32; ++c) {
      const float p = sv[c] == -INFINITY ? 0.f : exp2f(sv[c] - m_new);
      Pw[r * L::LDP + half * 32 + c] = from_float<T>(p);
      psum += p;
    }
    psum += __shfl_xor_sync(0xffffffffu, psum, 1);
    l = l * alpha + psum;
    m = m_new;
    __syncwarp();
#pragma unroll
    for (int n = 0; n < D / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> of;
      wmma::fill_fragment(of, 0.f);
#pragma unroll
      for (int kk = 0; kk < kBc / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pf;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vf;
        wmma::load_matrix_sync(pf, Pw + kk * 16, L::LDP);
        wmma::load_matrix_sync(vf, Vs + kk * 16 * L::LD + n * 16, L::LD);
        wmma::mma_sync(of, pf, vf, of);
      }
      wmma::store_matrix_sync(Ow + n * 16, of, L::LDO, wmma::mem_row_major);
    }
    __syncwarp();
#pragma unroll
    for (int c = 0; c < D / 2; ++c) acc[c] = acc[c] * alpha + Ow[r * L::LDO + half * (D / 2) + c];
    __syncwarp();
  }
  if (i < s.Tq) {
    const float inv = l > 0.f ? 1.f / l : 0.f;
    T* orow = o + ((b * s.Hq + h) * s.Tq + i) * D + half * (D / 2);
#pragma unroll
    for (int c = 0; c < D / 2; ++c) orow[c] = from_float<T>(acc[c] * inv);
    if (half == 0) lse[(b * s.Hq + h) * s.Tq + i] = l > 0.f ? (m + log2f(l)) * kLn2 : -INFINITY;
  }
}

template <typename T, int D>
struct BwdLayout {
  static constexpr int LD = D + 8, LDS = 64 + 4, LDP = 64 + 8, LDQ = D + 4;
  static constexpr size_t kTile = static_cast<size_t>(64) * LD * sizeof(T);
  static constexpr size_t kS = 16 * LDS * sizeof(float);          // per warp: S^T, then dP^T
  static constexpr size_t kP = 16 * LDP * sizeof(T);              // per warp: P^T
  static constexpr size_t kDS = static_cast<size_t>(64) * LDP * sizeof(T);  // dS^T [64 keys][64 queries]
  static constexpr size_t kDQ = 16 * LDQ * sizeof(float);         // per warp: dQ rows
  static constexpr size_t kStats = 2 * 64 * sizeof(float);        // lse, delta of the query tile
  static constexpr size_t bytes = 4 * kTile + 4 * (2 * kS + kP + kDQ) + kDS + kStats;
};

template <typename T, int D>
__global__ void __launch_bounds__(128) flash_backward_kernel(AttentionShape s, const T* __restrict__ q,
                                                             const T* __restrict__ k, const T* __restrict__ v,
                                                             const T* __restrict__ d_o, const float* __restrict__ lse,
                                                             const float* __restrict__ delta,
                                                             const int64_t* __restrict__ key_lengths, float scale,
                                                             float* __restrict__ dq, T* __restrict__ dk,
                                                             T* __restrict__ dv) {
  using L = BwdLayout<T, D>;
  extern __shared__ __align__(128) unsigned char smem[];
  T* Ks = reinterpret_cast<T*>(smem);
  T* Vs = reinterpret_cast<T*>(smem + L::kTile);
  T* Qs = reinterpret_cast<T*>(smem + 2 * L::kTile);
  T* dOs = reinterpret_cast<T*>(smem + 3 * L::kTile);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  unsigned char* mine = smem + 4 * L::kTile + warp * (2 * L::kS + L::kP + L::kDQ);
  float* St = reinterpret_cast<float*>(mine);
  float* dPt = reinterpret_cast<float*>(mine + L::kS);
  T* Pt = reinterpret_cast<T*>(mine + 2 * L::kS);
  float* dQw = reinterpret_cast<float*>(mine + 2 * L::kS + L::kP);
  T* dSt = reinterpret_cast<T*>(smem + 4 * L::kTile + 4 * (2 * L::kS + L::kP + L::kDQ));
  float* lse_s = reinterpret_cast<float*>(reinterpret_cast<unsigned char*>(dSt) + L::kDS);
  float* delta_s = lse_s + 64;

  const int64_t kb = blockIdx.x;
  const int64_t bkv = blockIdx.y, b = bkv / s.Hkv, kvh = bkv % s.Hkv;
  const int64_t group = s.Hq / s.Hkv;
  const int64_t j0 = kb * 64;
  const int64_t len = key_lengths ? key_lengths[b] : s.Tk;
  const int64_t valid_keys = min(len, s.Tk);
  load_tile<T, D, L::LD>(Ks, k + b * s.k_sb + kvh * s.k_sh, s.k_st, j0, valid_keys);
  load_tile<T, D, L::LD>(Vs, v + b * s.v_sb + kvh * s.v_sh, s.v_st, j0, valid_keys);
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> kf[D / 16], vf[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    wmma::load_matrix_sync(kf[kk], Ks + warp * 16 * L::LD + kk * 16, L::LD);
    wmma::load_matrix_sync(vf[kk], Vs + warp * 16 * L::LD + kk * 16, L::LD);
  }
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> dkf[D / 16], dvf[D / 16];
#pragma unroll
  for (int n = 0; n < D / 16; ++n) {
    wmma::fill_fragment(dkf[n], 0.f);
    wmma::fill_fragment(dvf[n], 0.f);
  }
  const float scale_log2 = scale * kLog2e;
  const int64_t n_qtiles = (s.Tq + 63) / 64;
  const bool block_has_keys = j0 < valid_keys;
  for (int64_t hq = kvh * group; hq < (kvh + 1) * group && block_has_keys; ++hq) {
    const T* qbase = q + b * s.q_sb + hq * s.q_sh;
    const T* dobase = d_o + (b * s.Hq + hq) * s.Tq * D;
    const float* lse_row = lse + (b * s.Hq + hq) * s.Tq;
    const float* delta_row = delta + (b * s.Hq + hq) * s.Tq;
    float* dqbase = dq + (b * s.Hq + hq) * s.Tq * D;
    // Causal: queries i >= j0 only; a sliding window ends them at j0 + 63 + window - 1.
    const int64_t qt_end = s.window > 0 ? min(n_qtiles, (j0 + 63 + s.window - 1) / 64 + 1) : n_qtiles;
    for (int64_t qt = j0 / 64; qt < qt_end; ++qt) {
      if (!tile_in_pattern(s, hq, qt, kb)) continue;  // the same for the whole block
      const int64_t i0 = qt * 64;
      __syncthreads();
      load_tile<T, D, L::LD>(Qs, qbase, s.q_st, i0, s.Tq);
      load_tile<T, D, L::LD>(dOs, dobase, D, i0, s.Tq);
      for (int t = threadIdx.x; t < 64; t += blockDim.x) {
        const bool in = i0 + t < s.Tq;
        lse_s[t] = in ? lse_row[i0 + t] : INFINITY;
        delta_s[t] = in ? delta_row[i0 + t] : 0.f;
      }
      __syncthreads();
      // S^T (16 keys x 64 queries) and dP^T = V dO^T for this warp's keys.
#pragma unroll
      for (int n = 0; n < 4; ++n) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> sf, pf;
        wmma::fill_fragment(sf, 0.f);
        wmma::fill_fragment(pf, 0.f);
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> qf, of;
          wmma::load_matrix_sync(qf, Qs + n * 16 * L::LD + kk * 16, L::LD);
          wmma::load_matrix_sync(of, dOs + n * 16 * L::LD + kk * 16, L::LD);
          wmma::mma_sync(sf, kf[kk], qf, sf);
          wmma::mma_sync(pf, vf[kk], of, pf);
        }
        wmma::store_matrix_sync(St + n * 16, sf, L::LDS, wmma::mem_row_major);
        wmma::store_matrix_sync(dPt + n * 16, pf, L::LDS, wmma::mem_row_major);
      }
      __syncwarp();
      // P^T and dS^T, two lanes per key row.
      {
        const int r = lane >> 1, half = lane & 1;
        const int64_t j = j0 + warp * 16 + r;
#pragma unroll 8
        for (int c = 0; c < 32; ++c) {
          const int col = half * 32 + c;
          const int64_t i = i0 + col;
          const bool visible = j <= i && j < len && i < s.Tq && (s.window == 0 || i - j < s.window);
          const float p = visible ? exp2f(St[r * L::LDS + col] * scale_log2 - lse_s[col] * kLog2e) : 0.f;
          const float ds = p * (dPt[r * L::LDS + col] - delta_s[col]);
          Pt[r * L::LDP + col] = from_float<T>(p);
          dSt[(warp * 16 + r) * L::LDP + col] = from_float<T>(ds);
        }
      }
      __syncwarp();
      // dV += P^T dO, dK += dS^T Q (scale applied at the end).
#pragma unroll
      for (int n = 0; n < D / 16; ++n) {
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pa, da;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> ob, qb;
          wmma::load_matrix_sync(pa, Pt + kk * 16, L::LDP);
          wmma::load_matrix_sync(da, dSt + warp * 16 * L::LDP + kk * 16, L::LDP);
          wmma::load_matrix_sync(ob, dOs + kk * 16 * L::LD + n * 16, L::LD);
          wmma::load_matrix_sync(qb, Qs + kk * 16 * L::LD + n * 16, L::LD);
          wmma::mma_sync(dvf[n], pa, ob, dvf[n]);
          wmma::mma_sync(dkf[n], da, qb, dkf[n]);
        }
      }
      __syncthreads();  // dS^T of every warp is written
      // dQ (this warp's 16 query rows) += dS K: A = dS (16 q x 64 keys) read as the transpose of dS^T.
#pragma unroll
      for (int n = 0; n < D / 16; ++n) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> qacc;
        wmma::fill_fragment(qacc, 0.f);
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::col_major> dsa;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> kb_frag;
          wmma::load_matrix_sync(dsa, dSt + kk * 16 * L::LDP + warp * 16, L::LDP);
          wmma::load_matrix_sync(kb_frag, Ks + kk * 16 * L::LD + n * 16, L::LD);
          wmma::mma_sync(qacc, dsa, kb_frag, qacc);
        }
        wmma::store_matrix_sync(dQw + n * 16, qacc, L::LDQ, wmma::mem_row_major);
      }
      __syncwarp();
      for (int idx = lane; idx < 16 * D; idx += 32) {
        const int rr = idx / D, c = idx % D;
        const int64_t i = i0 + warp * 16 + rr;
        if (i < s.Tq) atomicAdd(dqbase + i * D + c, dQw[rr * L::LDQ + c] * scale);
      }
    }
  }
  // Write dK (scaled) and dV for this block's 64 keys through shared memory (reusing the Q tile).
  __syncthreads();
  float* stage = reinterpret_cast<float*>(mine);  // 16 x LDQ floats fit in this warp's 2 * kS + kP + kDQ
  const int64_t out_base = (b * s.Hkv + kvh) * s.Tk * D;
  for (int which = 0; which < 2; ++which) {
#pragma unroll
    for (int n = 0; n < D / 16; ++n) {
      wmma::store_matrix_sync(stage + n * 16, which == 0 ? dkf[n] : dvf[n], L::LDQ, wmma::mem_row_major);
    }
    __syncwarp();
    T* out = which == 0 ? dk : dv;
    const float mul = which == 0 ? scale : 1.f;
    for (int idx = lane; idx < 16 * D; idx += 32) {
      const int rr = idx / D, c = idx % D;
      const int64_t j = j0 + warp * 16 + rr;
      if (j < s.Tk) out[out_base + j * D + c] = from_float<T>(stage[rr * L::LDQ + c] * mul);
    }
    __syncwarp();
  }
}

template <typename T, int D>
int launch_forward(const FlashForwardParams& p, cudaStream_t stream) {
  const AttentionShape& s = p.shape;
  const size_t bytes = FwdLayout<T, D>::bytes;
  auto kernel = flash_forward_kernel<T, D>;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (e != cudaSuccess) return static_cast<int>(e);
  dim3 grid(static_cast<unsigned>((s.Tq + kBr - 1) / kBr), static_cast<unsigned>(s.B * s.Hq));
  kernel<<<grid, 128, bytes, stream>>>(s, static_cast<const T*>(p.q), static_cast<const T*>(p.k),
                                       static_cast<const T*>(p.v), p.key_lengths, p.scale * kLog2e,
                                       static_cast<T*>(p.o), p.lse);
  return static_cast<int>(cudaGetLastError());
}

template <typename T, int D>
int launch_backward(const FlashBackwardParams& p, cudaStream_t stream) {
  const AttentionShape& s = p.shape;
  const size_t bytes = BwdLayout<T, D>::bytes;
  auto kernel = flash_backward_kernel<T, D>;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (e != cudaSuccess) return static_cast<int>(e);
  dim3 grid(static_cast<unsigned>((s.Tk + 63) / 64), static_cast<unsigned>(s.B * s.Hkv));
  kernel<<<grid, 128, bytes, stream>>>(s, static_cast<const T*>(p.q), static_cast<const T*>(p.k),
                                       static_cast<const T*>(p.v), static_cast<const T*>(p.d_o), p.lse, p.delta,
                                       p.key_lengths, p.scale, p.dq_accum, static_cast<T*>(p.dk), static_cast<T*>(p.dv));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int flash_attention_forward(const FlashForwardParams& p, void* stream) {
  return dispatch_flash(p, [&](auto d, auto tag) {
    return launch_forward<decltype(tag), decltype(d)::value>(p, static_cast<cudaStream_t>(stream));
  });
}

int flash_attention_backward(const FlashBackwardParams& p, void* stream) {
  return dispatch_flash(p, [&](auto d, auto tag) {
    return launch_backward<decltype(tag), decltype(d)::value>(p, static_cast<cudaStream_t>(stream));
  });
}

}  // namespace phi::cuda
