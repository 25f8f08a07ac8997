// Building blocks of the mma.sync attention kernels (sm_80+): cp.async copies, ldmatrix loads and
// the m16n8k16 tensor-core product with float32 accumulators.
//
// Fragment layouts (PTX ISA, mma.m16n8k16, g = lane / 4, t = lane % 4): A regs {a0a1, a2a3, a4a5,
// a6a7} = rows {g, g+8, g, g+8} x cols {2t.., 2t.., 8+2t.., 8+2t..}; B regs {b0b1, b2b3} = k rows
// {2t.., 8+2t..} x col g; C = rows {g, g, g+8, g+8} x cols {2t, 2t+1, 2t, 2t+1}. ldmatrix.x4: lanes
// 8m .. 8m+7 address the rows of matrix m, and lane t receives row t / 4, columns 2(t % 4) and
// 2(t % 4) + 1 of each (.trans: column t / 4, rows 2(t % 4) and 2(t % 4) + 1).
// scripts/mma_layout_sim.py replays the kernels' addressing under these rules against matmuls.
#pragma once

#include <type_traits>

#include "kernels/cuda/common.cuh"

namespace phi::cuda {

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1; zero-filled when !valid (src is then not read).
__device__ __forceinline__ void copy16_async(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void commit_async() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void wait_async() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p)));
}

// c += a b (16 x 8 x 16, float32 accumulators).
template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two floats as one register of two 16-bit values (lo in the low half: the lower column).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
}

// Fragment loads of 16 x 16 blocks from shared tiles with row pitch `ld` (elements); lane l addresses
// row l % 8 of matrix l / 8. These four addressings are the ones scripts/mma_layout_sim.py replays.
// The A operand (rows M, columns K) stored row-major at p.
template <typename T>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const T* p, int ld) {
  const int lane = threadIdx.x % 32, mi = lane / 8;
  ldmatrix_x4(a, p + (lane % 8 + (mi & 1) * 8) * ld + (mi & 2) * 4);
}
// The A operand stored transposed at p (rows K, columns M), e.g. dS read from dS^T.
template <typename T>
__device__ __forceinline__ void load_a_trans(uint32_t (&a)[4], const T* p, int ld) {
  const int lane = threadIdx.x % 32, mi = lane / 8;
  ldmatrix_x4_trans(a, p + (lane % 8 + (mi & 2) * 4) * ld + (mi & 1) * 8);
}
// The B operands of two n8 tiles (b[0..1]: n 0..7, b[2..3]: n 8..15) from B^T stored row-major at p
// (rows N, columns K), e.g. K for S = Q K^T.
template <typename T>
__device__ __forceinline__ void load_b_pair(uint32_t (&b)[4], const T* p, int ld) {
  const int lane = threadIdx.x % 32, mi = lane / 8;
  ldmatrix_x4(b, p + (lane % 8 + (mi & 2) * 4) * ld + (mi & 1) * 8);
}
// The same from B stored row-major at p (rows K, columns N), e.g. V for O = P V.
template <typename T>
__device__ __forceinline__ void load_b_pair_trans(uint32_t (&b)[4], const T* p, int ld) {
  const int lane = threadIdx.x % 32, mi = lane / 8;
  ldmatrix_x4_trans(b, p + (lane % 8 + (mi & 1) * 8) * ld + (mi & 2) * 4);
}

// c0 += a b[0..1], c1 += a b[2..3]: the two n8 tiles of a load_b_pair(_trans).
template <typename T>
__device__ __forceinline__ void mma_pair(float (&c0)[4], float (&c1)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[4]) {
  mma16816<T>(c0, a, b[0], b[1]);
  mma16816<T>(c1, a, b[2], b[3]);
}

// The A fragment of columns 16 kc .. 16 kc + 15 of a 16-row float32 accumulator held as n8 fragments:
// the C layout of two adjacent n8 tiles is the A layout, so P or dS feed the next product directly.
template <typename T, int N>
__device__ __forceinline__ void pack_a(uint32_t (&a)[4], const float (&c)[N][4], int kc) {
  a[0] = pack2<T>(c[2 * kc][0], c[2 * kc][1]);
  a[1] = pack2<T>(c[2 * kc][2], c[2 * kc][3]);
  a[2] = pack2<T>(c[2 * kc + 1][0], c[2 * kc + 1][1]);
  a[3] = pack2<T>(c[2 * kc + 1][2], c[2 * kc + 1][3]);
}

template <int N>
__device__ __forceinline__ void zero(float (&c)[N][4]) {
#pragma unroll
  for (int n = 0; n < N; ++n) c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.f;
}

// acc (16 x 8N) += A B^T over K = 16 KSTEPS columns, A's 16 rows at a and B's 8N rows at b, both
// row-major in shared memory: S = Q K^T, S^T = K Q^T, dP^T = V dO^T.
template <typename T, int N, int KSTEPS>
__device__ __forceinline__ void mma_abt(float (&acc)[N][4], const T* a, int lda, const T* b, int ldb) {
#pragma unroll
  for (int kk = 0; kk < KSTEPS; ++kk) {
    uint32_t af[4];
    load_a(af, a + kk * 16, lda);
#pragma unroll
    for (int np = 0; np < N / 2; ++np) {
      uint32_t bf[4];
      load_b_pair(bf, b + np * 16 * ldb + kk * 16, ldb);
      mma_pair<T>(acc[2 * np], acc[2 * np + 1], af, bf);
    }
  }
}

// acc (16 x 8DN) += C B with C a 16 x 8NC float32 accumulator (rounded to T) and B's 8NC rows at b,
// row-major in shared memory: O += P V, dV += P^T dO, dK += dS^T Q.
template <typename T, int NC, int DN>
__device__ __forceinline__ void mma_cb(float (&acc)[DN][4], const float (&c)[NC][4], const T* b, int ldb) {
#pragma unroll
  for (int kc = 0; kc < NC / 2; ++kc) {
    uint32_t a[4];
    pack_a<T>(a, c, kc);
#pragma unroll
    for (int dp = 0; dp < DN / 2; ++dp) {
      uint32_t bf[4];
      load_b_pair_trans(bf, b + kc * 16 * ldb + dp * 16, ldb);
      mma_pair<T>(acc[2 * dp], acc[2 * dp + 1], a, bf);
    }
  }
}

// Rows row0 .. row0 + ROWS - 1 of a [rows, D] matrix (row stride `stride`) into a shared tile with
// row pitch LD, by `threads` threads; rows at or past `valid` are zero.
template <typename T, int D, int LD, int threads, int ROWS = 64>
__device__ __forceinline__ void load_tile_async(T* dst, const T* src, int64_t stride, int64_t row0, int64_t valid) {
  constexpr int kVec = D / 8;
  for (int idx = threadIdx.x; idx < ROWS * kVec; idx += threads) {
    const int r = idx / kVec, c = (idx % kVec) * 8;
    const bool ok = row0 + r < valid;
    copy16_async(dst + r * LD + c, ok ? src + (row0 + r) * stride + c : src, ok);
  }
}

}  // namespace phi::cuda
