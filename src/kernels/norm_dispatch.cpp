// The fused add + RMSNorm / LayerNorm kernels (cuda/norms.cu): argument checks, launch, autograd.
// ATen reference: ops.cpp (add_norm, rms_norm, layer_norm); tests: tests/kernels/test_cuda_kernels.cpp.
#include <algorithm>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kernels/cuda_support.h"
#include "phi/core/error.h"
#include "phi/kernels/cuda_kernels.h"

namespace phi {

using namespace kernels;

AddNormResult add_norm_cuda(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                            const at::Tensor& bias, double eps, bool rms) {
  require_cuda("add_norm_cuda", {&x, &residual, &weight, &bias});
  const int64_t cols = x.size(-1);
  PHI_CHECK(weight.dim() == 1 && weight.size(0) == cols, "weight must be [", cols, "]");
  PHI_CHECK(!residual.defined() || residual.sizes() == x.sizes(), "residual must have the shape of x");
  for (const auto* t : {&residual, &weight, &bias}) {
    if (t->defined()) PHI_CHECK(t->scalar_type() == x.scalar_type(), "add_norm_cuda: dtypes differ");
  }
  auto xc = x.contiguous();
  auto rc = residual.defined() ? residual.contiguous() : at::Tensor();
  auto wc = weight.contiguous();
  auto bc = bias.defined() ? bias.contiguous() : at::Tensor();
  AddNormResult r;
  r.h = at::empty_like(xc);
  r.y = at::empty_like(xc);
  const int64_t rows = cols == 0 ? 0 : xc.numel() / cols;
  auto stats = x.options().dtype(at::kFloat);
  r.rstd = at::empty({rows}, stats);
  if (!rms) r.mean = at::empty({rows}, stats);
  if (rows == 0) return r;
  cuda::AddNormForwardParams p;
  p.dtype = dtype_of(x, "add_norm_cuda");
  p.rms = rms;
  p.x = xc.data_ptr();
  p.residual = ptr_or_null(rc);
  p.weight = wc.data_ptr();
  p.bias = ptr_or_null(bc);
  p.h = r.h.data_ptr();
  p.y = r.y.data_ptr();
  p.mean = rms ? nullptr : r.mean.data_ptr<float>();
  p.rstd = r.rstd.data_ptr<float>();
  p.rows = rows;
  p.cols = cols;
  p.eps = static_cast<float>(eps);
  check_launch(cuda::add_norm_forward(p, stream_of(x)), "add_norm kernel");
  return r;
}

AddNormGrads add_norm_backward_cuda(const at::Tensor& dy, const at::Tensor& dh_in, const at::Tensor& h,
                                    const at::Tensor& weight, const AddNormResult& forward, bool rms) {
  require_cuda("add_norm_backward_cuda", {&dy, &dh_in, &h, &weight});
  const int64_t cols = h.size(-1);
  const int64_t rows = cols == 0 ? 0 : h.numel() / cols;
  auto dyc = dy.contiguous();
  auto hc = h.contiguous();
  auto wc = weight.contiguous();
  auto dhc = dh_in.defined() ? dh_in.contiguous() : at::Tensor();
  AddNormGrads g;
  g.dh = at::empty_like(hc);
  const int64_t splits = std::max<int64_t>(1, std::min<int64_t>(rows, 128));
  auto f32 = h.options().dtype(at::kFloat);
  auto dw_partial = at::empty({splits, cols}, f32);
  auto db_partial = rms ? at::Tensor() : at::empty({splits, cols}, f32);
  if (rows > 0) {
    cuda::AddNormBackwardParams p;
    p.dtype = dtype_of(h, "add_norm_backward_cuda");
    p.rms = rms;
    p.dy = dyc.data_ptr();
    p.dh_in = ptr_or_null(dhc);
    p.h = hc.data_ptr();
    p.weight = wc.data_ptr();
    p.mean = rms ? nullptr : forward.mean.data_ptr<float>();
    p.rstd = forward.rstd.data_ptr<float>();
    p.dh = g.dh.data_ptr();
    p.dweight_partial = dw_partial.data_ptr<float>();
    p.dbias_partial = rms ? nullptr : db_partial.data_ptr<float>();
    p.splits = splits;
    p.rows = rows;
    p.cols = cols;
    check_launch(cuda::add_norm_backward(p, stream_of(h)), "add_norm backward kernel");
  }
  g.dweight = dw_partial.sum(0);
  if (!rms) g.dbias = db_partial.sum(0);
  return g;
}

at::Tensor rms_norm_cuda(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return add_norm_cuda(x, {}, weight, {}, eps, true).y;
}

namespace {
// add_norm_cuda with autograd: outputs h and y; the backward kernel takes both incoming gradients.
// residual and bias arrive as (possibly empty) defined tensors: autograd inputs must be.
struct AddNormFunction : torch::autograd::Function<AddNormFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                                                const at::Tensor& residual, const at::Tensor& weight,
                                                const at::Tensor& bias, double eps, bool rms) {
    const bool has_residual = residual.numel() > 0, has_bias = bias.numel() > 0;
    auto r = add_norm_cuda(x, has_residual ? residual : at::Tensor(), weight, has_bias ? bias : at::Tensor(), eps, rms);
    ctx->save_for_backward({r.h, weight, r.mean.defined() ? r.mean : at::empty({0}), r.rstd});
    ctx->saved_data["rms"] = rms;
    ctx->saved_data["has_residual"] = has_residual;
    ctx->saved_data["has_bias"] = has_bias;
    return {r.h, r.y};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const bool rms = ctx->saved_data["rms"].toBool();
    const auto& h = saved[0];
    const auto& weight = saved[1];
    AddNormResult forward;
    forward.mean = saved[2];
    forward.rstd = saved[3];
    auto dy = grads[1].defined() ? grads[1] : at::zeros_like(h);
    auto g = add_norm_backward_cuda(dy, grads[0], h, weight, forward, rms);
    const bool has_residual = ctx->saved_data["has_residual"].toBool();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    return {g.dh, has_residual ? g.dh : at::Tensor(), g.dweight.to(weight.scalar_type()),
            has_bias ? g.dbias.to(weight.scalar_type()) : at::Tensor(), at::Tensor(), at::Tensor()};
  }
};
}  // namespace

std::pair<at::Tensor, at::Tensor> add_norm_autograd_cuda(const at::Tensor& x, const at::Tensor& residual,
                                                         const at::Tensor& weight, const at::Tensor& bias, double eps,
                                                         bool rms) {
  require_cuda("add_norm_autograd_cuda", {&x, &residual, &weight, &bias});
  auto empty = at::empty({0}, x.options());
  auto out = AddNormFunction::apply(x, residual.defined() ? residual : empty, weight, bias.defined() ? bias : empty, eps,
                                    rms);
  return {out[0], out[1]};
}

}  // namespace phi
