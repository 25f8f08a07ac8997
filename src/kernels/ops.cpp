#include "phi/kernels/ops.h"

#include <cmath>

#include <ATen/ATen.h>

#include "phi/core/error.h"

namespace phi {

at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      double eps) {
  return at::layer_norm(x, {x.size(-1)}, weight, bias, eps);
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  auto xf = x.to(at::kFloat);
  auto normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

at::Tensor gelu_new(const at::Tensor& x) {
  return at::gelu(x, "tanh");
}

at::Tensor swiglu(const at::Tensor& gate_up) {
  auto halves = gate_up.chunk(2, -1);
  return at::silu(halves[0]) * halves[1];
}

at::Tensor gegelu(const at::Tensor& gelu_linear, double limit) {
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
  auto c = cos.unsqueeze(1).to(x.scalar_type());  // [B, 1, T, r]
  auto s = sin.unsqueeze(1).to(x.scalar_type());
  auto x_rot = x.narrow(-1, 0, r);
  auto halves = x_rot.chunk(2, -1);
  auto rotated = at::cat({halves[1].neg(), halves[0]}, -1);
  auto out = x_rot * c + rotated * s;
  if (r == x.size(-1)) return out;
  return at::cat({out, x.narrow(-1, r, x.size(-1) - r)}, -1);
}

}  // namespace phi
