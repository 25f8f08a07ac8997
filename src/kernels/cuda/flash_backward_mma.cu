// Flash attention backward on mma.sync m16n8k16 (FlashAttention-2's order), the same contract as
// flash_attention.cu's backward: dq_accum float32 (zeroed by the caller, atomics), dk / dv
// contiguous in the input dtype, delta = rowsum(dO * O) from the caller; causal, key padding, GQA,
// sliding window, Phi-3-small's block-sparse pattern at 64-token blocks.
//
// Grid (ceil(Tk / 64), B * Hkv), 4 warps; a block owns 64 keys (a warp 16 of them) for every query
// head of its kv group, so dK and dV accumulate in registers without atomics. K and V stay in
// shared memory; per tile of QT queries (64, or 32 for head dim 128 to keep the registers in
// check) Q, dO, the logsumexp and delta are loaded (cp.async), and each warp computes
//   S^T = K Q^T and P^T = exp(S^T * scale - lse)   (its 16 keys x QT queries, in registers),
//   dV += P^T dO                                   (P^T's accumulators are the A fragments),
//   dP^T = V dO^T, dS^T = P^T (dP^T - delta),
//   dK += dS^T Q                                   (scaled once at the end),
// then writes dS^T to shared memory, and after a barrier the warps split dQ = dS K * scale over
// query rows and head-dim columns (dS read through ldmatrix.trans) and add it to dq_accum with
// atomics. Fragment layouts and the addressing check: mma.cuh.
#include <cfloat>

#include "kernels/cuda/mma.cuh"

namespace phi::cuda {
namespace {

constexpr int kKeys = 64, kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;

template <typename T, int D, int QT>
struct BwdMmaLayout {
  static constexpr int LD = D + 8;     // K, V, Q, dO rows
  static constexpr int LDS = QT + 8;   // dS^T rows (keys) of QT queries
  static constexpr int kKV = kKeys * LD, kQ = QT * LD;
  static constexpr size_t bytes = (2 * kKV + 2 * kQ + kKeys * LDS) * sizeof(T) + 2 * QT * sizeof(float);
};

template <typename T, int D, int QT>
__global__ void __launch_bounds__(kThreads) flash_backward_mma_kernel(
    AttentionShape s, const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
    const T* __restrict__ d_o, const float* __restrict__ lse, const float* __restrict__ delta,
    const int64_t* __restrict__ key_lengths, float scale, float* __restrict__ dq, T* __restrict__ dk,
    T* __restrict__ dv) {
  using L = BwdMmaLayout<T, D, QT>;
  constexpr int LD = L::LD, LDS = L::LDS, NQ = QT / 8;
  constexpr int QS = QT / 16, WPQ = 4 / QS;  // dQ: query slices of 16 rows, warps per slice
  extern __shared__ __align__(128) unsigned char smem[];
  T* Ks = reinterpret_cast<T*>(smem);
  T* Vs = Ks + L::kKV;
  T* Qs = Vs + L::kKV;
  T* dOs = Qs + L::kQ;
  T* dSs = dOs + L::kQ;
  float* lse_s = reinterpret_cast<float*>(dSs + kKeys * LDS);
  float* delta_s = lse_s + QT;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;

  const int64_t kb = blockIdx.x, k0 = kb * kKeys;
  const int64_t bh = blockIdx.y, b = bh / s.Hkv, kvh = bh % s.Hkv, group = s.Hq / s.Hkv;
  const int64_t len = key_lengths ? min(key_lengths[b], s.Tk) : s.Tk;
  const int64_t kw0 = k0 + warp * 16;                 // this warp's first key
  const int64_t key_lo = kw0 + g, key_hi = key_lo + 8;  // this thread's accumulator rows
  const float scale_log2 = scale * kLog2e;

  load_tile_async<T, D, LD, kThreads>(Ks, k + b * s.k_sb + kvh * s.k_sh, s.k_st, k0, len);
  load_tile_async<T, D, LD, kThreads>(Vs, v + b * s.v_sb + kvh * s.v_sh, s.v_st, k0, len);
  commit_async();

  float dk_acc[D / 8][4], dv_acc[D / 8][4];
  zero(dk_acc);
  zero(dv_acc);

  // Queries that can see a key of this block: from k0 (causal) to k0 + 63 + window - 1.
  int64_t q_stop = s.Tq;
  if (s.window > 0) q_stop = min(q_stop, k0 + kKeys - 1 + s.window);
  const int64_t first_tile = k0 / QT, end_tile = k0 < len ? (q_stop + QT - 1) / QT : first_tile;
  for (int64_t hq = 0; hq < group; ++hq) {
    const int64_t h = kvh * group + hq;
    const T* qbase = q + b * s.q_sb + h * s.q_sh;
    const T* dobase = d_o + (b * s.Hq + h) * s.Tq * D;
    const float* lse_h = lse + (b * s.Hq + h) * s.Tq;
    const float* delta_h = delta + (b * s.Hq + h) * s.Tq;
    float* dq_h = dq + (b * s.Hq + h) * s.Tq * D;
    for (int64_t qt = first_tile; qt < end_tile; ++qt) {
      const int64_t q0 = qt * QT;
      if (!tile_in_pattern(s, h, q0 / 64, kb)) continue;  // the same for the whole block
      __syncthreads();  // every warp is done with the previous query tile
      load_tile_async<T, D, LD, kThreads, QT>(Qs, qbase, s.q_st, q0, s.Tq);
      load_tile_async<T, D, LD, kThreads, QT>(dOs, dobase, D, q0, s.Tq);
      commit_async();
      for (int i = threadIdx.x; i < QT; i += kThreads) {
        const bool ok = q0 + i < s.Tq;
        lse_s[i] = ok ? lse_h[q0 + i] * kLog2e : -INFINITY;
        delta_s[i] = ok ? delta_h[q0 + i] : 0.f;
      }
      wait_async<0>();
      __syncthreads();

      // S^T = K Q^T: 16 keys x QT queries per warp.
      float st[NQ][4];
      zero(st);
      mma_abt<T, NQ, D / 16>(st, Ks + warp * 16 * LD, LD, Qs, LD);
      // P^T, masked where a query precedes a key, past the lengths, or outside the window.
      const bool masked = q0 < kw0 + 15 || q0 + QT > s.Tq || kw0 + 16 > len || s.window > 0;
#pragma unroll
      for (int n = 0; n < NQ; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = n * 8 + 2 * t4 + (e & 1);
          const int64_t key = e < 2 ? key_lo : key_hi, query = q0 + col;
          bool visible = lse_s[col] != -INFINITY;
          if (masked) {
            visible = visible && query >= key && key < len && query < s.Tq &&
                      (s.window == 0 || query - key < s.window);
          }
          st[n][e] = visible ? exp2f(st[n][e] * scale_log2 - lse_s[col]) : 0.f;
        }
      }
      // dV += P^T dO.
      mma_cb<T, NQ, D / 8>(dv_acc, st, dOs, LD);
      // dP^T = V dO^T, then dS^T = P^T (dP^T - delta) in place of P^T.
      float dpt[NQ][4];
      zero(dpt);
      mma_abt<T, NQ, D / 16>(dpt, Vs + warp * 16 * LD, LD, dOs, LD);
#pragma unroll
      for (int n = 0; n < NQ; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) st[n][e] *= dpt[n][e] - delta_s[n * 8 + 2 * t4 + (e & 1)];
      }
      // dK += dS^T Q, and dS^T to shared memory for dQ.
#pragma unroll
      for (int kc = 0; kc < NQ / 2; ++kc) {
        uint32_t pa[4];
        pack_a<T>(pa, st, kc);
        T* lo = dSs + (warp * 16 + g) * LDS + kc * 16 + 2 * t4;
        *reinterpret_cast<uint32_t*>(lo) = pa[0];
        *reinterpret_cast<uint32_t*>(lo + 8 * LDS) = pa[1];
        *reinterpret_cast<uint32_t*>(lo + 8) = pa[2];
        *reinterpret_cast<uint32_t*>(lo + 8 * LDS + 8) = pa[3];
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t f[4];
          load_b_pair_trans(f, Qs + kc * 16 * LD + dp * 16, LD);
          mma_pair<T>(dk_acc[2 * dp], dk_acc[2 * dp + 1], pa, f);
        }
      }
      __syncthreads();
      // dQ = dS K * scale for query rows qs*16 .. +15 and head-dim pairs dp = wd, wd + WPQ, ...
      const int qs = warp % QS, wd = warp / QS;
      uint32_t dsa[kKeys / 16][4];
#pragma unroll
      for (int kc = 0; kc < kKeys / 16; ++kc) load_a_trans(dsa[kc], dSs + kc * 16 * LDS + qs * 16, LDS);
      const int64_t row_lo = q0 + qs * 16 + g, row_hi = row_lo + 8;
      for (int dp = wd; dp < D / 16; dp += WPQ) {
        float c[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
        for (int kc = 0; kc < kKeys / 16; ++kc) {
          uint32_t f[4];
          load_b_pair_trans(f, Ks + kc * 16 * LD + dp * 16, LD);
          mma_pair<T>(c[0], c[1], dsa[kc], f);
        }
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int64_t col = dp * 16 + half * 8 + 2 * t4;
          if (row_lo < s.Tq) {
            atomicAdd(dq_h + row_lo * D + col, c[half][0] * scale);
            atomicAdd(dq_h + row_lo * D + col + 1, c[half][1] * scale);
          }
          if (row_hi < s.Tq) {
            atomicAdd(dq_h + row_hi * D + col, c[half][2] * scale);
            atomicAdd(dq_h + row_hi * D + col + 1, c[half][3] * scale);
          }
        }
      }
    }
  }
  wait_async<0>();

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t key = r == 0 ? key_lo : key_hi;
    if (key >= s.Tk) continue;
    T* dk_row = dk + ((b * s.Hkv + kvh) * s.Tk + key) * D + 2 * t4;
    T* dv_row = dv + ((b * s.Hkv + kvh) * s.Tk + key) * D + 2 * t4;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      *reinterpret_cast<uint32_t*>(dk_row + n * 8) = pack2<T>(dk_acc[n][2 * r] * scale, dk_acc[n][2 * r + 1] * scale);
      *reinterpret_cast<uint32_t*>(dv_row + n * 8) = pack2<T>(dv_acc[n][2 * r], dv_acc[n][2 * r + 1]);
    }
  }
}

template <typename T, int D>
int launch(const FlashBackwardParams& p, cudaStream_t stream) {
  const AttentionShape& s = p.shape;
  constexpr int QT = D <= 96 ? 64 : 32;
  const size_t bytes = BwdMmaLayout<T, D, QT>::bytes;
  auto kernel = flash_backward_mma_kernel<T, D, QT>;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (e != cudaSuccess) return static_cast<int>(e);
  dim3 grid(static_cast<unsigned>((s.Tk + kKeys - 1) / kKeys), static_cast<unsigned>(s.B * s.Hkv));
  kernel<<<grid, kThreads, bytes, stream>>>(s, static_cast<const T*>(p.q), static_cast<const T*>(p.k),
                                            static_cast<const T*>(p.v), static_cast<const T*>(p.d_o), p.lse, p.delta,
                                            p.key_lengths, p.scale, p.dq_accum, static_cast<T*>(p.dk),
                                            static_cast<T*>(p.dv));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int flash_attention_backward_mma(const FlashBackwardParams& p, void* stream) {
  return dispatch_flash(p, [&](auto d, auto tag) {
    return launch<decltype(tag), decltype(d)::value>(p, static_cast<cudaStream_t>(stream));
  });
}

}  // namespace phi::cuda
