// Plain C++ launch declarations of the CUDA kernels (implemented in the .cu files beside this).
// Pointers are device pointers; `stream` is a cudaStream_t; every launcher returns a cudaError_t
// code (0 = success). Shapes and strides are in elements.
#pragma once

#include <cstdint>

namespace phi::cuda {

enum class DType { kFloat32, kBFloat16, kFloat16 };

const char* error_string(int code);

// ---- norms (norms.cu) ---------------------------------------------------------------------------
// h = x + residual (residual may be null: h = x), y = norm(h) * weight (+ bias); RMSNorm (rms) or
// LayerNorm. Statistics in float32: mean (LayerNorm) and rstd per row are written for the backward.
// x, residual, h, y [rows, cols] contiguous; weight, bias [cols] (bias may be null).
int add_norm_forward(DType dtype, bool rms, const void* x, const void* residual, const void* weight,
                     const void* bias, void* h, void* y, float* mean, float* rstd, int64_t rows,
                     int64_t cols, float eps, void* stream);
// dh = dnorm/dh(dy) + dh_in (dh_in: the gradient reaching h from the residual path; may be null).
// dweight_partial / dbias_partial: float32 [splits, cols] partial sums over row chunks (the caller
// sums them); dbias_partial may be null.
int add_norm_backward(DType dtype, bool rms, const void* dy, const void* dh_in, const void* h,
                      const void* weight, const float* mean, const float* rstd, void* dh,
                      float* dweight_partial, float* dbias_partial, int64_t splits, int64_t rows,
                      int64_t cols, void* stream);

// ---- elementwise (elementwise.cu) -----------------------------------------------------------------
enum class Activation { kGeluNew, kSwiGlu, kGeGelu };
// gelu_new: y[n, I] = gelu_tanh(x[n, I]); swiglu: y[n, I] = silu(a) * b; gegelu: quick_gelu(clamp(a))
// * (clamp(b) + 1) with x[n, 2I] = [a | b] halves. Contiguous.
int activation_forward(DType dtype, Activation kind, const void* x, void* y, int64_t rows, int64_t inner,
                       float limit, void* stream);
// dx (same layout as x) from dy [n, I].
int activation_backward(DType dtype, Activation kind, const void* x, const void* dy, void* dx, int64_t rows,
                        int64_t inner, float limit, void* stream);
// Rotary embedding on the first `rot` dims of every head (NeoX halves), out = x * cos + rotate(x) * sin
// (sign = -1 gives the inverse rotation: the backward). x [B, H, T, D] with strides (sb, sh, st, 1);
// out [B, H, T, D] contiguous; cos, sin float32 [B, T, rot/2 .. rot] as [B, T, rot] contiguous.
int rotary(DType dtype, const void* x, int64_t sb, int64_t sh, int64_t st, const float* cos, const float* sin,
           void* out, int64_t B, int64_t H, int64_t T, int64_t D, int64_t rot, float sign, void* stream);

// Decode's KV-cache append: k_cache[b, h, positions[b], :] = rotary(k[b, h, :]) (first `rot` dims;
// rot = 0: none), v_cache[b, h, positions[b], :] = v[b, h, :]. k, v rows with strides (sb, sh, 1);
// caches [B, H, C, D] with strides (c_sb, c_sh, c_st, 1); cos, sin float32 [B, rot]; positions int64 [B].
int kv_append(DType dtype, const void* k, int64_t k_sb, int64_t k_sh, const void* v, int64_t v_sb, int64_t v_sh,
              const float* cos, const float* sin, int64_t rot, void* k_cache, void* v_cache, int64_t c_sb,
              int64_t c_sh, int64_t c_st, const int64_t* positions, int64_t B, int64_t H, int64_t D, void* stream);

// ---- gemv.cu ------------------------------------------------------------------------------------------
// y[N] = W[N, K] x[K] (+ bias[N]; may be null), bf16 / f16 only, K % 8 == 0 and K <= 24576, 16-byte
// aligned W and x. sms: the device's multiprocessor count (sizes the grid).
int gemv(DType dtype, const void* w, const void* x, const void* bias, void* y, int64_t N, int64_t K, int sms,
         void* stream);

// ---- attention (flash_attention.cu, decode_attention.cu) -------------------------------------------
struct AttentionShape {
  int64_t B, Hq, Hkv, Tq, Tk, D;
  // strides (elements) of q [B, Hq, Tq, D], k / v [B, Hkv, Tk, D]; the last dim is contiguous
  int64_t q_sb, q_sh, q_st, k_sb, k_sh, k_st, v_sb, v_sh, v_st;
  // Sliding window: a query at position p sees keys p - window < j <= p; 0 = no window.
  int64_t window;
  // Phi-3-small's block-sparse pattern at 64-token blocks (flash kernels only): key block kb is
  // visible from query block qb for query head h iff qb - kb < bs_local or (kb + h * bs_head_step
  // + 1) % bs_vert == 0; bs_vert = 0: dense. Invisible tiles are skipped.
  int64_t bs_local, bs_vert, bs_head_step;
};
// Causal (query i sees keys j <= i) flash attention forward with key padding (key_lengths int64
// [B], or null = Tk) and GQA; Tq == Tk. o [B, Hq, Tq, D] contiguous, lse float32 [B, Hq, Tq] (natural
// log of the row's sum of exp(scale * s)). D in {64, 80, 96, 128}; bf16 / f16.
int flash_attention_forward(DType dtype, const AttentionShape& s, const void* q, const void* k, const void* v,
                            const int64_t* key_lengths, float scale, void* o, float* lse, void* stream);
// The same forward on mma.sync m16n8k16 with register-resident scores (flash_forward_mma.cu).
int flash_attention_forward_mma(DType dtype, const AttentionShape& s, const void* q, const void* k, const void* v,
                                const int64_t* key_lengths, float scale, void* o, float* lse, void* stream);
// Backward: dq_accum float32 [B, Hq, Tq, D] (zeroed by the caller), dk / dv [B, Hkv, Tk, D]
// contiguous in the input dtype; o, d_o contiguous [B, Hq, Tq, D]; delta float32 [B, Hq, Tq] =
// rowsum(dO * O) (the caller computes it).
int flash_attention_backward(DType dtype, const AttentionShape& s, const void* q, const void* k, const void* v,
                             const void* d_o, const float* lse, const float* delta, const int64_t* key_lengths,
                             float scale, float* dq_accum, void* dk, void* dv, void* stream);
// The same backward on mma.sync m16n8k16 (flash_backward_mma.cu).
int flash_attention_backward_mma(DType dtype, const AttentionShape& s, const void* q, const void* k, const void* v,
                                 const void* d_o, const float* lse, const float* delta, const int64_t* key_lengths,
                                 float scale, float* dq_accum, void* dk, void* dv, void* stream);
// Decode: Tq new queries per sequence at positions key_lengths[b] - Tq .. key_lengths[b] - 1 (causal
// inside them), keys [0, key_lengths[b]) of the cache. Split along the key axis into `splits`
// chunks whose partial results (o_partial float32 [splits, B, Hq, Tq, D], m/l float32 [splits, B,
// Hq, Tq]) are combined into o [B, Hq, Tq, D] contiguous.
// Paged keys (PagedKVCache): `pages` null reads key j of sequence b at row j of k / v (strides as
// in the shape); otherwise at row pages[b * stride + j / page_size] * page_size + j % page_size of
// pools whose rows are k_st apart (the shape's k_sb / v_sb are then 0).
struct PageTable {
  const int32_t* pages = nullptr;
  int64_t stride = 0;
  int64_t page_size = 1;
};
int decode_attention(DType dtype, const AttentionShape& s, const void* q, const void* k, const void* v,
                     const int64_t* key_lengths, const PageTable& paging, float scale, int64_t splits,
                     float* o_partial, float* m_partial, float* l_partial, void* o, void* stream);

}  // namespace phi::cuda
