#include "phi/kernels/lm_loss.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include "phi/core/error.h"

namespace phi {

namespace {

struct ChunkedLmLoss : torch::autograd::Function<ChunkedLmLoss> {
  // bias and masked_ids are passed as (possibly empty) defined tensors: autograd inputs must be.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& targets, const at::Tensor& masked_ids,
                            int64_t chunk_rows, double divisor) {
    at::AutoGradMode no_grad(false);
    const bool has_bias = bias.numel() > 0;
    const int64_t N = hidden.size(0);
    auto flat_targets = targets.to(hidden.device());
    auto valid = flat_targets.ne(-100);
    auto count = valid.sum().clamp_min(1).to(at::kFloat);
    auto loss_sum = at::zeros({}, hidden.options().dtype(at::kFloat));
    auto grad_hidden = at::empty_like(hidden);
    auto grad_weight = at::zeros(weight.sizes(), weight.options().dtype(at::kFloat));
    auto grad_bias = has_bias ? at::zeros(bias.sizes(), bias.options().dtype(at::kFloat)) : at::Tensor();
    for (int64_t r0 = 0; r0 < N; r0 += chunk_rows) {
      const int64_t n = std::min(chunk_rows, N - r0);
      auto h = hidden.narrow(0, r0, n);
      auto t = flat_targets.narrow(0, r0, n);
      auto keep = valid.narrow(0, r0, n);
      auto logits = (has_bias ? at::linear(h, weight, bias) : at::linear(h, weight)).to(at::kFloat);
      if (divisor != 1.0) logits.div_(divisor);
      if (masked_ids.numel() > 0) logits.index_fill_(-1, masked_ids, -std::numeric_limits<float>::infinity());
      auto lse = at::logsumexp(logits, -1, /*keepdim=*/true);
      auto safe_t = t.clamp_min(0).unsqueeze(1);
      auto picked = logits.gather(1, safe_t);
      loss_sum += ((lse - picked).squeeze(1) * keep).sum();
      // d loss_sum / d logits = softmax - onehot, on the kept rows; then through the divisor.
      auto grad_logits = (logits - lse).exp_();
      grad_logits.scatter_add_(1, safe_t, at::full({n, 1}, -1.0f, grad_logits.options()));
      grad_logits.mul_(keep.unsqueeze(1).to(at::kFloat));
      if (divisor != 1.0) grad_logits.div_(divisor);
      auto g = grad_logits.to(h.scalar_type());
      grad_hidden.narrow(0, r0, n).copy_(at::matmul(g, weight.to(h.scalar_type())));
      grad_weight.add_(at::matmul(g.t(), h).to(at::kFloat));
      if (has_bias) grad_bias.add_(grad_logits.sum(0));
    }
    ctx->save_for_backward({grad_hidden, grad_weight, has_bias ? grad_bias : at::empty({0}), count});
    ctx->saved_data["has_bias"] = has_bias;
    return loss_sum / count;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto scale = grads[0].to(at::kFloat) / saved[3];  // d mean / d sum, times the incoming gradient
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    auto grad_hidden = saved[0] * scale.to(saved[0].scalar_type());
    auto grad_weight = saved[1] * scale;
    at::Tensor grad_bias = has_bias ? saved[2] * scale : at::Tensor();
    return {grad_hidden, grad_weight, grad_bias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor chunked_lm_loss(const at::Tensor& hidden, const LmHead& head, const at::Tensor& targets, int64_t chunk_rows) {
  PHI_CHECK(hidden.dim() == 2 && head.weight.dim() == 2 && hidden.size(1) == head.weight.size(1),
            "chunked_lm_loss: hidden [N, H] and weight [V, H] expected, got ", hidden.sizes(), " and ",
            head.weight.sizes());
  PHI_CHECK(targets.dim() == 1 && targets.size(0) == hidden.size(0), "chunked_lm_loss: targets must be [N]");
  PHI_CHECK(chunk_rows > 0, "chunk_rows must be > 0");
  auto empty = at::empty({0}, head.weight.options());
  auto masked = head.masked_ids.defined() ? head.masked_ids : at::empty({0}, head.weight.options().dtype(at::kLong));
  return ChunkedLmLoss::apply(hidden, head.weight, head.bias.defined() ? head.bias : empty, targets, masked, chunk_rows,
                              head.logit_divisor);
}

}  // namespace phi
