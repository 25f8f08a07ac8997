// Plain C++ launch declarations of the CUDA kernels (implemented in the .cu files beside this): one
// params struct per launcher. Pointers are device pointers; `stream` is a cudaStream_t; every
// launcher returns a cudaError_t code (0 = success). Shapes and strides are in elements.
// Built without CUDA (PHI_WITH_CUDA off), the launchers exist and return kNotCompiled: the dispatch
// files (src/kernels/*_dispatch.cpp) check cuda_kernels_runnable() first, so they are not reached.
#pragma once

#include <cstdint>

namespace phi::cuda {

enum class DType { kFloat32, kBFloat16, kFloat16 };

/// The head dims the flash attention kernels are instantiated for. The host checks, the attention
/// dispatch's fused-or-ATen choice and the device dispatch (common.cuh) all read this one list.
#define PHI_FLASH_HEAD_DIMS(X) X(64) X(80) X(96) X(128)
constexpr bool flash_head_dim_supported(int64_t d) {
#define PHI_HEAD_DIM_MATCH(v) d == v ||
  return PHI_FLASH_HEAD_DIMS(PHI_HEAD_DIM_MATCH) false;
#undef PHI_HEAD_DIM_MATCH
}
/// The decode kernel's head dims: multiples of 8 up to this.
constexpr int64_t kDecodeMaxHeadDim = 128;

// ---- norms (norms.cu) ---------------------------------------------------------------------------
// h = x + residual (residual may be null: h = x), y = norm(h) * weight (+ bias); RMSNorm (rms) or
// LayerNorm. Statistics in float32: mean (LayerNorm) and rstd per row are written for the backward.
// x, residual, h, y [rows, cols] contiguous; weight, bias [cols] (bias may be null).
struct AddNormForwardParams {
  DType dtype = DType::kFloat32;
  bool rms = true;
  const void *x = nullptr, *residual = nullptr, *weight = nullptr, *bias = nullptr;
  void *h = nullptr, *y = nullptr;
  float *mean = nullptr, *rstd = nullptr;
  int64_t rows = 0, cols = 0;
  float eps = 1e-5f;
};
// dh = dnorm/dh(dy) + dh_in (dh_in: the gradient reaching h from the residual path; may be null).
// dweight_partial / dbias_partial: float32 [splits, cols] partial sums over row chunks (the caller
// sums them); dbias_partial may be null.
struct AddNormBackwardParams {
  DType dtype = DType::kFloat32;
  bool rms = true;
  const void *dy = nullptr, *dh_in = nullptr, *h = nullptr, *weight = nullptr;
  const float *mean = nullptr, *rstd = nullptr;
  void* dh = nullptr;
  float *dweight_partial = nullptr, *dbias_partial = nullptr;
  int64_t splits = 1, rows = 0, cols = 0;
};

// ---- elementwise (elementwise.cu) -----------------------------------------------------------------
enum class Activation { kGeluNew, kSwiGlu, kGeGelu };
// gelu_new: y[n, I] = gelu_tanh(x[n, I]); swiglu: y[n, I] = silu(a) * b; gegelu: quick_gelu(clamp(a))
// * (clamp(b) + 1) with x[n, 2I] = [a | b] halves. Contiguous.
struct ActivationForwardParams {
  DType dtype = DType::kFloat32;
  Activation kind = Activation::kGeluNew;
  const void* x = nullptr;
  void* y = nullptr;
  int64_t rows = 0, inner = 0;
  float limit = 0;
};
// dx (same layout as x) from dy [n, I].
struct ActivationBackwardParams {
  DType dtype = DType::kFloat32;
  Activation kind = Activation::kGeluNew;
  const void *x = nullptr, *dy = nullptr;
  void* dx = nullptr;
  int64_t rows = 0, inner = 0;
  float limit = 0;
};
// Rotary embedding on the first `rot` dims of every head (NeoX halves), out = x * cos + rotate(x) * sin
// (sign = -1 gives the inverse rotation: the backward). x [B, H, T, D] with strides (sb, sh, st, 1);
// out [B, H, T, D] contiguous; cos, sin float32 [B, T, rot] contiguous.
struct RotaryParams {
  DType dtype = DType::kFloat32;
  const void* x = nullptr;
  int64_t sb = 0, sh = 0, st = 0;
  const float *cos = nullptr, *sin = nullptr;
  void* out = nullptr;
  int64_t B = 0, H = 0, T = 0, D = 0, rot = 0;
  float sign = 1.f;
};
// Decode's KV-cache append: k_cache[b, h, positions[b], :] = rotary(k[b, h, :]) (first `rot` dims;
// rot = 0: none), v_cache[b, h, positions[b], :] = v[b, h, :]. k, v rows with strides (sb, sh, 1);
// caches [B, H, C, D] with strides (c_sb, c_sh, c_st, 1); cos, sin float32 [B, rot]; positions int64 [B].
struct KvAppendParams {
  DType dtype = DType::kFloat32;
  const void* k = nullptr;
  int64_t k_sb = 0, k_sh = 0;
  const void* v = nullptr;
  int64_t v_sb = 0, v_sh = 0;
  const float *cos = nullptr, *sin = nullptr;
  int64_t rot = 0;
  void *k_cache = nullptr, *v_cache = nullptr;
  int64_t c_sb = 0, c_sh = 0, c_st = 0;
  const int64_t* positions = nullptr;
  int64_t B = 0, H = 0, D = 0;
};

// ---- gemv.cu ------------------------------------------------------------------------------------------
// y[N] = W[N, K] x[K] (+ bias[N]; may be null), bf16 / f16 only, K % 8 == 0 and K <= kGemvMaxK,
// 16-byte aligned W and x. sms: the device's multiprocessor count (sizes the grid).
constexpr int64_t kGemvMaxK = 24576;
struct GemvParams {
  DType dtype = DType::kBFloat16;
  const void *w = nullptr, *x = nullptr, *bias = nullptr;
  void* y = nullptr;
  int64_t N = 0, K = 0;
  int sms = 1;
};

// ---- attention (flash_attention.cu, flash_*_mma.cu, decode_attention.cu) ---------------------------
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
// log of the row's sum of exp(scale * s)). D in PHI_FLASH_HEAD_DIMS; bf16 / f16.
struct FlashForwardParams {
  DType dtype = DType::kBFloat16;
  AttentionShape shape{};
  const void *q = nullptr, *k = nullptr, *v = nullptr;
  const int64_t* key_lengths = nullptr;
  float scale = 1.f;
  void* o = nullptr;
  float* lse = nullptr;
};
// Backward: dq_accum float32 [B, Hq, Tq, D] (zeroed by the caller), dk / dv [B, Hkv, Tk, D]
// contiguous in the input dtype; o, d_o contiguous [B, Hq, Tq, D]; delta float32 [B, Hq, Tq] =
// rowsum(dO * O) (the caller computes it).
struct FlashBackwardParams {
  DType dtype = DType::kBFloat16;
  AttentionShape shape{};
  const void *q = nullptr, *k = nullptr, *v = nullptr, *d_o = nullptr;
  const float *lse = nullptr, *delta = nullptr;
  const int64_t* key_lengths = nullptr;
  float scale = 1.f;
  float* dq_accum = nullptr;
  void *dk = nullptr, *dv = nullptr;
};
// Paged keys (PagedKVCache): `pages` null reads key j of sequence b at row j of k / v (strides as
// in the shape); otherwise at row pages[b * stride + j / page_size] * page_size + j % page_size of
// pools whose rows are k_st apart (the shape's k_sb / v_sb are then 0).
struct PageTable {
  const int32_t* pages = nullptr;
  int64_t stride = 0;
  int64_t page_size = 1;
};
// Decode: Tq new queries per sequence at positions key_lengths[b] - Tq .. key_lengths[b] - 1 (causal
// inside them), keys [0, key_lengths[b]) of the cache. Split along the key axis into `splits`
// chunks whose partial results (o_partial float32 [splits, B, Hq, Tq, D], m/l float32 [splits, B,
// Hq, Tq]) are combined into o [B, Hq, Tq, D] contiguous.
struct DecodeAttentionParams {
  DType dtype = DType::kBFloat16;
  AttentionShape shape{};
  const void *q = nullptr, *k = nullptr, *v = nullptr;
  const int64_t* key_lengths = nullptr;
  PageTable paging;
  float scale = 1.f;
  int64_t splits = 1;
  float *o_partial = nullptr, *m_partial = nullptr, *l_partial = nullptr;
  void* o = nullptr;
};

// ---- the launchers ------------------------------------------------------------------------------------
// X(name, Params): int name(const Params&, void* stream). The mma variants run the same contract as
// the WMMA flash kernels on mma.sync m16n8k16 with register-resident scores.
#define PHI_CUDA_LAUNCHERS(X)                                  \
  X(add_norm_forward, AddNormForwardParams)                    \
  X(add_norm_backward, AddNormBackwardParams)                  \
  X(activation_forward, ActivationForwardParams)               \
  X(activation_backward, ActivationBackwardParams)             \
  X(rotary, RotaryParams)                                      \
  X(kv_append, KvAppendParams)                                 \
  X(gemv, GemvParams)                                          \
  X(flash_attention_forward, FlashForwardParams)               \
  X(flash_attention_forward_mma, FlashForwardParams)           \
  X(flash_attention_backward, FlashBackwardParams)             \
  X(flash_attention_backward_mma, FlashBackwardParams)         \
  X(decode_attention, DecodeAttentionParams)

/// The code a launcher returns when libphi was built without CUDA.
constexpr int kNotCompiled = -1;

#if PHI_WITH_CUDA
#define PHI_DECLARE_LAUNCHER(name, Params) int name(const Params& params, void* stream);
PHI_CUDA_LAUNCHERS(PHI_DECLARE_LAUNCHER)
#undef PHI_DECLARE_LAUNCHER
const char* error_string(int code);
#else
#define PHI_DECLARE_LAUNCHER(name, Params) \
  inline int name(const Params&, void*) { return kNotCompiled; }
PHI_CUDA_LAUNCHERS(PHI_DECLARE_LAUNCHER)
#undef PHI_DECLARE_LAUNCHER
inline const char* error_string(int) { return "libphi was built without CUDA kernels"; }
#endif

}  // namespace phi::cuda
