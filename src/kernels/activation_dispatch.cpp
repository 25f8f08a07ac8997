// The fused MLP activations (cuda/elementwise.cu): gelu_new, SwiGLU, Phi-3-small's GeGELU; checks,
// launch, autograd. ATen reference: ops.cpp (activation); tests: tests/kernels/test_cuda_kernels.cpp.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kernels/cuda_support.h"
#include "phi/core/error.h"
#include "phi/kernels/cuda_kernels.h"

namespace phi {

using namespace kernels;

namespace {
cuda::Activation to_launch(FusedActivation kind) {
  switch (kind) {
    case FusedActivation::kGeluNew: return cuda::Activation::kGeluNew;
    case FusedActivation::kSwiGlu: return cuda::Activation::kSwiGlu;
    case FusedActivation::kGeGelu: return cuda::Activation::kGeGelu;
  }
  return cuda::Activation::kGeluNew;
}
}  // namespace

at::Tensor activation_cuda(const at::Tensor& x, FusedActivation kind, double limit) {
  require_cuda("activation_cuda", {&x});
  auto xc = x.contiguous();
  const bool gated = kind != FusedActivation::kGeluNew;
  const int64_t width = x.size(-1);
  PHI_CHECK(!gated || width % 2 == 0, "gated activations need an even last dim, got ", width);
  const int64_t inner = gated ? width / 2 : width;
  auto sizes = x.sizes().vec();
  sizes.back() = inner;
  auto y = at::empty(sizes, x.options());
  cuda::ActivationForwardParams p;
  p.dtype = dtype_of(x, "activation_cuda");
  p.kind = to_launch(kind);
  p.x = xc.data_ptr();
  p.y = y.data_ptr();
  p.rows = width == 0 ? 0 : xc.numel() / width;
  p.inner = inner;
  p.limit = static_cast<float>(limit);
  check_launch(cuda::activation_forward(p, stream_of(x)), "activation kernel");
  return y;
}

at::Tensor activation_backward_cuda(const at::Tensor& x, const at::Tensor& dy, FusedActivation kind, double limit) {
  require_cuda("activation_backward_cuda", {&x, &dy});
  auto xc = x.contiguous();
  auto dyc = dy.contiguous();
  const int64_t width = x.size(-1);
  const int64_t inner = dy.size(-1);
  const int64_t rows = width == 0 ? 0 : xc.numel() / width;
  PHI_CHECK(dy.numel() == rows * inner, "dy does not match x");
  auto dx = at::empty_like(xc);
  cuda::ActivationBackwardParams p;
  p.dtype = dtype_of(x, "activation_backward_cuda");
  p.kind = to_launch(kind);
  p.x = xc.data_ptr();
  p.dy = dyc.data_ptr();
  p.dx = dx.data_ptr();
  p.rows = rows;
  p.inner = inner;
  p.limit = static_cast<float>(limit);
  check_launch(cuda::activation_backward(p, stream_of(x)), "activation backward kernel");
  return dx;
}

namespace {
struct ActivationFunction : torch::autograd::Function<ActivationFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t kind, double limit) {
    ctx->save_for_backward({x});
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["limit"] = limit;
    return activation_cuda(x, static_cast<FusedActivation>(kind), limit);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto x = ctx->get_saved_variables()[0];
    auto dx = activation_backward_cuda(x, grads[0].to(x.scalar_type()),
                                       static_cast<FusedActivation>(ctx->saved_data["kind"].toInt()),
                                       ctx->saved_data["limit"].toDouble());
    return {dx.view(x.sizes()), at::Tensor(), at::Tensor()};
  }
};
}  // namespace

at::Tensor activation_autograd_cuda(const at::Tensor& x, FusedActivation kind, double limit) {
  require_cuda("activation_autograd_cuda", {&x});
  return ActivationFunction::apply(x, static_cast<int64_t>(kind), limit);
}

}  // namespace phi
