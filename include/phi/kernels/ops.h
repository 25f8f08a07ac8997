// Elementwise and normalisation ops of the phi family with plain tensor signatures. Each is the ATen
// reference used by the CPU path and the tests; on CUDA tensors the fused kernels (cuda_kernels.h)
// run from the same calls when the elementwise backend is "fused" (PHI_KERNELS=fused).
#pragma once

#include <utility>

#include <ATen/core/Tensor.h>

namespace phi {

/// x W^T + b (b optional): at::linear, or on CUDA a single-row x (batch-1 decode) through the
/// bandwidth-bound GEMV kernel when no gradient is needed.
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);
/// residual + x W^T (no bias): where the GEMV kernel takes the single-row case, the residual rides
/// in as its bias (one kernel instead of a GEMV and an add).
at::Tensor linear_add(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& residual);
/// LayerNorm over the last dimension with weight and bias.
at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      double eps);
/// Phi-3 RMSNorm: x * rsqrt(mean(x^2) + eps) computed in float32, cast back to x's dtype, then
/// multiplied by weight.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
/// h = x + residual and its norm (RMSNorm when rms, else LayerNorm with bias): {h, norm(h)}, one
/// fused kernel on CUDA.
std::pair<at::Tensor, at::Tensor> add_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                                           const at::Tensor& bias, double eps, bool rms);
/// gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
at::Tensor gelu_new(const at::Tensor& x);
/// SwiGLU on [gate | up] halves of the last dimension: silu(gate) * up.
at::Tensor swiglu(const at::Tensor& gate_up);
/// Phi-3-small gegelu on [gelu | linear] halves: quick_gelu(min(a, L)) * (clamp(b, -L, L) + 1);
/// infinities pass the clamps untouched, as in the reference code.
at::Tensor gegelu(const at::Tensor& gelu_linear, double limit);
/// One decode step's KV-cache write: k_cache[b, :, positions[b]] = rotary(k[b, :, 0]) and
/// v_cache[b, :, positions[b]] = v[b, :, 0], with k [n, H, 1, D] not yet rotated, v alike, cos / sin
/// [n, 1, r], caches [n, H, C, D], positions int64 [n] on the caches' device. Graph-capturable (no
/// host reads); one fused kernel on CUDA.
void append_kv_step(const at::Tensor& k, const at::Tensor& v, const at::Tensor& cos, const at::Tensor& sin,
                    at::Tensor& k_cache, at::Tensor& v_cache, const at::Tensor& positions);
/// Rotates the first cos.size(-1) dims of x [B, H, T, D] ("rotate half" layout); cos and sin are
/// [B, T, r] in x's dtype or float32. The remaining dims pass through.
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace phi
