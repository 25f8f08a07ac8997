// Flash attention forward on mma.sync m16n8k16 (FlashAttention-2's register layout), the same
// contract as flash_attention.cu's forward (causal, key padding, GQA, sliding window, Phi-3-small's
// block-sparse pattern at 64-token tiles; o contiguous, lse in natural log).
//
// Grid (ceil(Tq / 64), B * Hq), 4 warps; a warp owns 16 query rows. Q is loaded once (cp.async, then
// ldmatrix into A fragments kept in registers). K and V tiles of 64 keys stream through a two-stage
// cp.async pipeline in shared memory (rows padded by 8 elements: ldmatrix without bank conflicts).
// Per tile a warp computes S = Q K^T into 8 accumulator fragments (16 x 64 floats in registers),
// masks and exponentiates them (online softmax in base 2 with the scale folded in), and reuses the
// accumulators as the A operand of P V directly (the m16n8 C layout of two adjacent key tiles is
// the m16k16 A layout), with V read through ldmatrix.trans. Scores and probabilities never touch
// shared memory; each thread keeps partial row sums that are reduced once at the end. Fragment
// layouts: mma.cuh.
#include <cfloat>

#include "kernels/cuda/mma.cuh"

namespace phi::cuda {
namespace {

constexpr int kRows = 64, kKeys = 64, kThreads = 128;
constexpr float kLn2 = 0.6931471805599453f;

template <typename T, int D>
struct MmaLayout {
  static constexpr int LD = D + 8;                         // padded row (elements)
  static constexpr int kTile = kRows * LD;                 // elements per 64-row tile
  static constexpr size_t bytes = 5 * kTile * sizeof(T);   // Q, K x 2 stages, V x 2 stages
};

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) flash_forward_mma_kernel(AttentionShape s, const T* __restrict__ q,
                                                                     const T* __restrict__ k, const T* __restrict__ v,
                                                                     const int64_t* __restrict__ key_lengths,
                                                                     float scale_log2, T* __restrict__ o,
                                                                     float* __restrict__ lse) {
  using L = MmaLayout<T, D>;
  constexpr int LD = L::LD;
  extern __shared__ __align__(128) unsigned char smem[];
  T* Qs = reinterpret_cast<T*>(smem);
  T* Ks = Qs + L::kTile;      // stages 0, 1
  T* Vs = Ks + 2 * L::kTile;  // stages 0, 1
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;

  const int64_t qb = gridDim.x - 1 - blockIdx.x;  // the longest rows first
  const int64_t bh = blockIdx.y, b = bh / s.Hq, h = bh % s.Hq, kvh = h / (s.Hq / s.Hkv);
  const int64_t q0 = qb * kRows;
  const int64_t len = key_lengths ? min(key_lengths[b], s.Tk) : s.Tk;
  const T* qbase = q + b * s.q_sb + h * s.q_sh;
  const T* kbase = k + b * s.k_sb + kvh * s.k_sh;
  const T* vbase = v + b * s.v_sb + kvh * s.v_sh;

  const int64_t kv_end = min(q0 + kRows, len);
  const int64_t n_tiles = kv_end > 0 ? (kv_end + kKeys - 1) / kKeys : 0;
  const int64_t first_tile = s.window > 0 ? max(static_cast<int64_t>(0), q0 - s.window + 1) / kKeys : 0;
  auto next_tile = [&](int64_t tile) {
    while (tile < n_tiles && !tile_in_pattern(s, h, qb, tile)) ++tile;
    return tile;
  };

  int64_t tile = next_tile(first_tile);
  load_tile_async<T, D, LD, kThreads>(Qs, qbase, s.q_st, q0, s.Tq);
  if (tile < n_tiles) {
    load_tile_async<T, D, LD, kThreads>(Ks, kbase, s.k_st, tile * kKeys, len);
    load_tile_async<T, D, LD, kThreads>(Vs, vbase, s.v_st, tile * kKeys, len);
  }
  commit_async();
  wait_async<0>();
  __syncthreads();
  uint32_t qf[D / 16][4];  // Q's A fragments, kept in registers for every key tile
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) load_a(qf[kk], Qs + warp * 16 * LD + kk * 16, LD);

  const int64_t row_lo = q0 + warp * 16 + g, row_hi = row_lo + 8;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  float acc[D / 8][4];
  zero(acc);

  int stage = 0;
  while (tile < n_tiles) {
    const int64_t following = next_tile(tile + 1);
    if (following < n_tiles) {
      load_tile_async<T, D, LD, kThreads>(Ks + (stage ^ 1) * L::kTile, kbase, s.k_st, following * kKeys, len);
      load_tile_async<T, D, LD, kThreads>(Vs + (stage ^ 1) * L::kTile, vbase, s.v_st, following * kKeys, len);
    }
    commit_async();
    wait_async<1>();  // this tile's group has landed
    __syncthreads();
    const T* Kt = Ks + stage * L::kTile;
    const T* Vt = Vs + stage * L::kTile;

    // S = Q K^T: 16 x 64 per warp as 8 n8 fragments.
    float sc[8][4];
    zero(sc);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t kf[4];
        load_b_pair(kf, Kt + np * 16 * LD + kk * 16, LD);
        mma_pair<T>(sc[2 * np], sc[2 * np + 1], qf[kk], kf);
      }
    }

    // Mask (only tiles that reach the diagonal, the padding or a window) and online softmax.
    const int64_t j0 = tile * kKeys;
    const bool masked = j0 + kKeys - 1 > q0 + warp * 16 || j0 + kKeys > len || s.window > 0;
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = sc[n][e] * scale_log2;
        if (masked) {
          const int64_t row = e < 2 ? row_lo : row_hi, j = j0 + n * 8 + 2 * t4 + (e & 1);
          if (j > row || j >= len || (s.window > 0 && row - j >= s.window)) x = -INFINITY;
        }
        sc[n][e] = x;
        tile_max[e / 2] = fmaxf(tile_max[e / 2], x);
      }
    }
    float alpha[2], base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      const float m_new = fmaxf(m[r], tile_max[r]);
      base[r] = m_new == -INFINITY ? 0.f : m_new;  // a row with nothing visible yet stays at 0
      alpha[r] = exp2f(m[r] - base[r]);           // 0 while m is -inf
      m[r] = m_new;
    }
    float row_sum[2] = {0.f, 0.f};
#pragma unroll
    for (int n = 0; n < 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(sc[n][e] - base[e / 2]);
        sc[n][e] = p;
        row_sum[e / 2] += p;
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) l[r] = l[r] * alpha[r] + row_sum[r];
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      acc[n][0] *= alpha[0];
      acc[n][1] *= alpha[0];
      acc[n][2] *= alpha[1];
      acc[n][3] *= alpha[1];
    }

    // O += P V: the score fragments of keys 16kc .. 16kc + 15 are P's A fragment.
    mma_cb<T, 8, D / 8>(acc, sc, Vt, LD);
    __syncthreads();  // every warp is done with this stage before the next refill
    stage ^= 1;
    tile = following;
  }
  wait_async<0>();

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = r == 0 ? row_lo : row_hi;
    if (row >= s.Tq) continue;
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
    T* orow = o + ((b * s.Hq + h) * s.Tq + row) * D + 2 * t4;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      *reinterpret_cast<uint32_t*>(orow + n * 8) = pack2<T>(acc[n][2 * r] * inv, acc[n][2 * r + 1] * inv);
    }
    if (t4 == 0) lse[(b * s.Hq + h) * s.Tq + row] = l[r] > 0.f ? (m[r] + log2f(l[r])) * kLn2 : -INFINITY;
  }
}

template <typename T, int D>
int launch(const FlashForwardParams& p, cudaStream_t stream) {
  const AttentionShape& s = p.shape;
  const size_t bytes = MmaLayout<T, D>::bytes;
  auto kernel = flash_forward_mma_kernel<T, D>;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (e != cudaSuccess) return static_cast<int>(e);
  dim3 grid(static_cast<unsigned>((s.Tq + kRows - 1) / kRows), static_cast<unsigned>(s.B * s.Hq));
  kernel<<<grid, kThreads, bytes, stream>>>(s, static_cast<const T*>(p.q), static_cast<const T*>(p.k),
                                            static_cast<const T*>(p.v), p.key_lengths, p.scale * 1.4426950408889634f,
                                            static_cast<T*>(p.o), p.lse);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int flash_attention_forward_mma(const FlashForwardParams& p, void* stream) {
  return dispatch_flash(p, [&](auto d, auto tag) {
    return launch<decltype(tag), decltype(d)::value>(p, static_cast<cudaStream_t>(stream));
  });
}

}  // namespace phi::cuda
