// Elementwise and normalisation ops of the phi family with plain tensor signatures. Each is the ATen
// reference used by the CPU path and the tests; fused CUDA versions dispatch from the same calls.
#pragma once

#include <ATen/core/Tensor.h>

namespace phi {

/// LayerNorm over the last dimension with weight and bias.
at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      double eps);
/// Phi-3 RMSNorm: x * rsqrt(mean(x^2) + eps) computed in float32, cast back to x's dtype, then
/// multiplied by weight.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
/// gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
at::Tensor gelu_new(const at::Tensor& x);
/// SwiGLU on [gate | up] halves of the last dimension: silu(gate) * up.
at::Tensor swiglu(const at::Tensor& gate_up);
/// Phi-3-small gegelu on [gelu | linear] halves: quick_gelu(min(a, L)) * (clamp(b, -L, L) + 1);
/// infinities pass the clamps untouched, as in the reference code.
at::Tensor gegelu(const at::Tensor& gelu_linear, double limit);
/// Rotates the first cos.size(-1) dims of x [B, H, T, D] ("rotate half" layout); cos and sin are
/// [B, T, r] in x's dtype or float32. The remaining dims pass through.
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace phi
