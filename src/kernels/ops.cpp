#include "phi/kernels/ops.h"

#include <cmath>
#include <string>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "phi/core/error.h"
#include "phi/kernels/cpu_kernels.h"
#include "phi/kernels/cuda_kernels.h"
#include "kernels/backend_setting.h"

namespace phi {

namespace {
BackendSetting& elementwise_setting() {
  static BackendSetting setting("PHI_KERNELS", "elementwise backend");
  return setting;
}

// PHI_CPU_KERNELS: "ours" (default: cpu_kernels.h where they apply) or "aten".
BackendSetting& cpu_setting() {
  static BackendSetting setting("PHI_CPU_KERNELS", "CPU kernel backend", "ours", "aten");
  return setting;
}

// The fused kernels take CUDA float32 / bf16 / f16 tensors.
bool fused(const at::Tensor& x) {
  if (!x.is_cuda() || elementwise_setting().get() != "fused" || !cuda_kernels_compiled()) return false;
  const auto t = x.scalar_type();
  return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf;
}

bool needs_grad(std::initializer_list<const at::Tensor*> tensors) {
  if (!at::GradMode::is_enabled()) return false;
  for (const auto* t : tensors) {
    if (t->defined() && t->requires_grad()) return true;
  }
  return false;
}

// Which norm path takes these tensors. The kernels need x and the parameters in one dtype on CUDA.
// Where no gradient is needed the forward kernel runs and the residual must share that dtype too;
// under autograd (training) the residual branch is cast to x's dtype first (under autocast the
// stream is float32 and the branch bf16, as in x + residual).
enum class NormPath { kAten, kForward, kAutograd };
NormPath norm_path(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight, const at::Tensor& bias) {
  if (!fused(x)) return NormPath::kAten;
  for (const auto* t : {&weight, &bias}) {
    if (t->defined() && (t->scalar_type() != x.scalar_type() || !t->is_cuda())) return NormPath::kAten;
  }
  if (residual.defined() && (!residual.is_cuda() || residual.sizes() != x.sizes())) return NormPath::kAten;
  if (needs_grad({&x, &residual, &weight, &bias})) return NormPath::kAutograd;
  return residual.defined() && residual.scalar_type() != x.scalar_type() ? NormPath::kAten : NormPath::kForward;
}

at::Tensor activation(const at::Tensor& x, FusedActivation kind, double limit) {
  return needs_grad({&x}) ? activation_autograd_cuda(x, kind, limit) : activation_cuda(x, kind, limit);
}
}  // namespace

void set_elementwise_backend(const std::string& name) { elementwise_setting().set(name); }
const std::string& elementwise_backend() { return elementwise_setting().get(); }

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (fused(x) && !needs_grad({&x, &weight, &bias}) && gemv_applies(x, weight, bias)) return gemv_cuda(x, weight, bias);
  // f16 stays with ATen: its one-row f16 product streams a large matrix faster than gemv_cpu here
  // (scripts/bench_cpu_gemv: 31 against 19 GB/s on the 32064 x 768 head; docs/perf.md).
  if (x.device().is_cpu() && cpu_setting().get() == "ours" && weight.scalar_type() != at::kHalf &&
      !needs_grad({&x, &weight, &bias}) && gemv_cpu_applies(x, weight, bias)) {
    return gemv_cpu(x, weight, bias);
  }
  return bias.defined() ? at::linear(x, weight, bias) : at::linear(x, weight);
}

at::Tensor linear_add(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& residual) {
  if (fused(x) && !needs_grad({&x, &weight, &residual}) && residual.numel() == weight.size(0) &&
      gemv_applies(x, weight, residual.reshape({-1}))) {
    return gemv_cuda(x, weight, residual.reshape({-1})).view(residual.sizes());
  }
  return residual + phi::linear(x, weight, at::Tensor());
}

at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      double eps) {
  // Under autograd ATen's layer_norm is already one fused kernel each way.
  if (norm_path(x, {}, weight, bias) == NormPath::kForward) return add_norm_cuda(x, {}, weight, bias, eps, false).y;
  return at::layer_norm(x, {x.size(-1)}, weight, bias, eps);
}

std::pair<at::Tensor, at::Tensor> add_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                                           const at::Tensor& bias, double eps, bool rms) {
  switch (norm_path(x, residual, weight, bias)) {
    case NormPath::kForward: {
      auto r = add_norm_cuda(x, residual, weight, bias, eps, rms);
      return {r.h, r.y};
    }
    case NormPath::kAutograd: return add_norm_autograd_cuda(x, residual.to(x.scalar_type()), weight, bias, eps, rms);
    case NormPath::kAten: break;
  }
  auto h = x + residual;
  return {h, rms ? rms_norm(h, weight, eps) : layer_norm(h, weight, bias, eps)};
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  switch (norm_path(x, {}, weight, {})) {
    case NormPath::kForward: return rms_norm_cuda(x, weight, eps);
    case NormPath::kAutograd: return add_norm_autograd_cuda(x, {}, weight, {}, eps, true).second;
    case NormPath::kAten: break;
  }
  auto xf = x.to(at::kFloat);
  auto normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

at::Tensor gelu_new(const at::Tensor& x) {
  if (fused(x)) return activation(x, FusedActivation::kGeluNew, 0);
  return at::gelu(x, "tanh");
}

at::Tensor swiglu(const at::Tensor& gate_up) {
  if (fused(gate_up)) return activation(gate_up, FusedActivation::kSwiGlu, 0);
  auto halves = gate_up.chunk(2, -1);
  return at::silu(halves[0]) * halves[1];
}

at::Tensor gegelu(const at::Tensor& gelu_linear, double limit) {
  if (fused(gelu_linear)) return activation(gelu_linear, FusedActivation::kGeGelu, limit);
  auto halves = gelu_linear.chunk(2, -1);
  auto a = halves[0];
  auto b = halves[1];
  a = at::where(at::isinf(a), a, a.clamp_max(limit));
  b = at::where(at::isinf(b), b, b.clamp(-limit, limit));
  auto quick_gelu = a * at::sigmoid(1.702 * a);
  return quick_gelu * (b + 1.0);
}

at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t r = cos.size(-1);
  PHI_CHECK(r <= x.size(-1) && r % 2 == 0, "rotary width ", r, " does not fit head dim ", x.size(-1));
  if (fused(x) && x.dim() == 4 && x.stride(-1) == 1 && cos.is_cuda() && sin.is_cuda()) {
    return needs_grad({&x}) ? rotary_autograd_cuda(x, cos, sin) : rotary_cuda(x, cos, sin);
  }
  auto c = cos.unsqueeze(1).to(x.scalar_type());  // [B, 1, T, r]
  auto s = sin.unsqueeze(1).to(x.scalar_type());
  auto x_rot = x.narrow(-1, 0, r);
  auto halves = x_rot.chunk(2, -1);
  auto rotated = at::cat({halves[1].neg(), halves[0]}, -1);
  auto out = x_rot * c + rotated * s;
  if (r == x.size(-1)) return out;
  return at::cat({out, x.narrow(-1, r, x.size(-1) - r)}, -1);
}

void append_kv_step(const at::Tensor& k, const at::Tensor& v, const at::Tensor& cos, const at::Tensor& sin,
                    at::Tensor& k_cache, at::Tensor& v_cache, const at::Tensor& positions) {
  if (fused(k) && !needs_grad({&k, &v}) && k.scalar_type() == k_cache.scalar_type() && k_cache.is_cuda()) {
    kv_append_cuda(k, v, cos, sin, k_cache, v_cache, positions);
    return;
  }
  const int64_t n = k.size(0), H = k.size(1), D = k.size(3);
  auto index = positions.view({n, 1, 1, 1}).expand({n, H, 1, D});
  k_cache.scatter_(2, index, apply_rotary(k, cos, sin).to(k_cache.scalar_type()));
  v_cache.scatter_(2, index, v.to(v_cache.scalar_type()));
}

}  // namespace phi
