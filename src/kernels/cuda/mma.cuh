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
