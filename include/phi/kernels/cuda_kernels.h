// Fused CUDA kernels behind plain C++ declarations (no CUDA headers here). Whether they were
// compiled is a build option (PHI_WITH_CUDA); whether they can run depends on a GPU being present.
// Each has an ATen reference (ops.h, attention.h) that the CPU path and the tests use; which kernels
// have passed their GPU test is phi/kernels/verified.h (the dispatch uses no other), and
// set_attention_backend() / PHI_ATTENTION=fused selects the fused attention.
// Every entry point throws phi::Error when CUDA is unavailable or an argument is out of range.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include <ATen/core/Tensor.h>

namespace phi {

/// True when libphi was built with its CUDA kernels.
bool cuda_kernels_compiled();
/// True when the kernels were compiled and a CUDA device is present.
bool cuda_kernels_runnable();

// ---- norms ------------------------------------------------------------------------------------------
/// h = x + residual (residual optional), y = RMSNorm(h) * weight (rms) or LayerNorm(h) * weight +
/// bias; float32 statistics kept for the backward. x [..., H] float32 / bf16 / f16 on CUDA.
struct PagedKV;  // attention.h

struct AddNormResult {
  at::Tensor y, h, mean, rstd;  // mean is empty for RMSNorm
};
AddNormResult add_norm_cuda(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                            const at::Tensor& bias, double eps, bool rms);
/// Gradients of add_norm_cuda: dh = d y / d h (dy) + dh_in (the residual path's gradient, optional);
/// dh is also the gradient of x and of residual. dweight / dbias in float32.
struct AddNormGrads {
  at::Tensor dh, dweight, dbias;
};
AddNormGrads add_norm_backward_cuda(const at::Tensor& dy, const at::Tensor& dh_in, const at::Tensor& h,
                                    const at::Tensor& weight, const AddNormResult& forward, bool rms);
at::Tensor rms_norm_cuda(const at::Tensor& x, const at::Tensor& weight, double eps);
/// add_norm_cuda with autograd: {h, y}; gradients reach x, residual, weight and bias (one dtype for
/// all of them).
std::pair<at::Tensor, at::Tensor> add_norm_autograd_cuda(const at::Tensor& x, const at::Tensor& residual,
                                                         const at::Tensor& weight, const at::Tensor& bias, double eps,
                                                         bool rms);

// ---- elementwise ---------------------------------------------------------------------------------------
enum class FusedActivation { kGeluNew, kSwiGlu, kGeGelu };
/// gelu_new(x) [.., I]; swiglu / gegelu of x = [a | b] halves [.., 2I] -> [.., I].
at::Tensor activation_cuda(const at::Tensor& x, FusedActivation kind, double limit = 0);
at::Tensor activation_backward_cuda(const at::Tensor& x, const at::Tensor& dy, FusedActivation kind, double limit = 0);
/// Rotary embedding of x [B, H, T, D] (last dim contiguous) with cos / sin float32 [B, T, rot];
/// inverse = true applies the transpose (the backward). Returns a contiguous [B, H, T, D].
at::Tensor rotary_cuda(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool inverse = false);
/// y = x W^T (+ b) for a single row x (numel == K; any leading shape of ones) with a bandwidth-bound
/// GEMV: W [N, K] bf16 / f16, K a multiple of 8 and at most 24576. Returns x's shape with N last.
at::Tensor gemv_cuda(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);
/// True when gemv_cuda takes these arguments (device, dtypes, one row, K, alignment).
bool gemv_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);
/// One decode step's KV-cache append: k_cache[b, :, positions[b]] = rotary(k[b, :, 0]) and
/// v_cache[b, :, positions[b]] = v[b, :, 0]; k, v [B, H, 1, D] (last dim contiguous), caches
/// [B, H, C, D], cos / sin float32 [B, 1, rot] (rot <= D), positions int64 [B] on the device.
void kv_append_cuda(const at::Tensor& k, const at::Tensor& v, const at::Tensor& cos, const at::Tensor& sin,
                    at::Tensor& k_cache, at::Tensor& v_cache, const at::Tensor& positions);
/// activation_cuda / rotary_cuda with autograd (the gradient reaches x through the backward kernels).
at::Tensor activation_autograd_cuda(const at::Tensor& x, FusedActivation kind, double limit = 0);
at::Tensor rotary_autograd_cuda(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// ---- attention -----------------------------------------------------------------------------------------
/// The head dims the flash kernels are built for (one table, src/kernels/cuda/launch.h, read by
/// the host checks, this choice and the device dispatch), as a test and as "64, 80, 96, 128".
bool flash_head_dim_supported(int64_t head_dim);
std::string flash_head_dims_text();
/// The decode kernel's head dims: multiples of 8 up to 128.
bool decode_head_dim_supported(int64_t head_dim);
/// Causal flash attention with key padding (key_lengths int64 [B] on the device, optional) and GQA:
/// q [B, Hq, T, D], k / v [B, Hkv, T, D], bf16 / f16, D one of flash_head_dims_text().
/// Optional masks of the flash kernels: Phi-3's sliding window (0: none) and Phi-3-small's
/// block-sparse pattern at 64-token blocks (vert_stride 0: dense; see BlockSparseLayout, with
/// head_step = homo_head ? 0 : max(1, vert_stride / n_heads)). The attention dispatch uses them
/// once verified.h's "flash_masks" is true.
struct FlashMask {
  int64_t window = 0;
  int64_t local_blocks = 0, vert_stride = 0, head_step = 0;
};
struct AttentionMaskSpec;  // attention.h
/// The flash kernels' form of an attention mask: `window` (the effective sliding window, 0: none)
/// and Phi-3-small's block-sparse pattern when its blocks are 64 tokens; nothing when the kernels
/// cannot express the spec (segments, another block size). Defined with or without CUDA.
std::optional<FlashMask> flash_mask_for(const AttentionMaskSpec& mask, int64_t window, int64_t n_heads);
struct FlashForward {
  at::Tensor out;  // [B, Hq, T, D] contiguous
  at::Tensor lse;  // float32 [B, Hq, T]
};
/// Which flash kernels: WMMA with scores staged in shared memory, or mma.sync with register-resident
/// scores (FlashAttention-2's layout, forward and backward). Their status: verified.h's
/// "flash_wmma" and "flash_mma".
enum class FlashKernel { kWmma, kMma };
FlashForward flash_attention_forward_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                          const at::Tensor& key_lengths, double scale, const FlashMask& mask = {},
                                          FlashKernel kernel = FlashKernel::kWmma);
struct FlashGrads {
  at::Tensor dq, dk, dv;
};
FlashGrads flash_attention_backward_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                         const FlashForward& forward, const at::Tensor& d_out,
                                         const at::Tensor& key_lengths, double scale, const FlashMask& mask = {},
                                         FlashKernel kernel = FlashKernel::kWmma);
/// The same with autograd (gradients reach q, k and v); the kernels are PHI_FLASH_KERNEL's.
at::Tensor flash_attention_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const at::Tensor& key_lengths, double scale, const FlashMask& mask = {});
/// Decode attention over a KV cache: q [B, Hq, Tq, D] (the last Tq positions of each sequence),
/// k / v [B, Hkv, Tk, D] (cache rows, the first key_lengths[b] valid), split along the keys
/// (splits = 0: chosen from the shape and the device); window > 0: a query at position p sees only
/// the keys p - window < j <= p (Phi-3's sliding window). Returns [B, Hq, Tq, D].
at::Tensor decode_attention_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& key_lengths, double scale, int64_t splits = 0, int64_t window = 0);
/// The same over a paged cache (attention.h's PagedKV, contiguous pools): keys [0, key_lengths[b])
/// of sequence b through its page-table row; n_keys: the longest length (sizes the key splits).
/// Dispatched by paged_attention() once verified.h's "paged_decode" is true.
at::Tensor paged_decode_attention_cuda(const at::Tensor& q, const PagedKV& kv, const at::Tensor& key_lengths,
                                       int64_t n_keys, double scale, int64_t splits = 0, int64_t window = 0);

/// "aten" (default) or "fused": which attention the dispatch point uses on CUDA where the fused
/// kernels apply. Initialised from PHI_ATTENTION.
void set_attention_backend(const std::string& name);
const std::string& attention_backend();
/// "aten" or "fused": whether ops.h's norms, activations and rotary run the fused kernels on CUDA
/// tensors (norms only where no gradient is needed). Initialised from PHI_KERNELS (default aten).
void set_elementwise_backend(const std::string& name);
const std::string& elementwise_backend();
/// "wmma" (default) or "mma": which flash kernels the fused attention backend's training and prefill
/// path runs (flash_attention_cuda). Initialised from PHI_FLASH_KERNEL.
void set_flash_kernel(const std::string& name);
const std::string& flash_kernel();

}  // namespace phi
