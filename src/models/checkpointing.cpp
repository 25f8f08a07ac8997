#include "phi/models/checkpointing.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include "core/autocast_guard.h"
#include "phi/core/error.h"

namespace phi {

namespace {

struct FunctionHolder : torch::CustomClassHolder {
  std::function<at::Tensor(const at::Tensor&)> fn;
  bool autocast_cpu = false, autocast_cuda = false;
  at::ScalarType autocast_cpu_dtype = at::kBFloat16, autocast_cuda_dtype = at::kBFloat16;
};

struct Checkpoint : torch::autograd::Function<Checkpoint> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            c10::intrusive_ptr<FunctionHolder> holder) {
    ctx->save_for_backward({x});
    at::Tensor out;
    {
      at::NoGradGuard no_grad;
      out = holder->fn(x);
    }
    ctx->saved_data["fn"] = c10::IValue::make_capsule(holder);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    auto holder = c10::static_intrusive_pointer_cast<FunctionHolder>(ctx->saved_data["fn"].toCapsule());
    at::Tensor out;
    {
      at::AutoGradMode grad_mode(true);
      // The forward pass's autocast state, on both device types.
      AutocastGuard cpu(at::kCPU, holder->autocast_cpu, holder->autocast_cpu_dtype);
      AutocastGuard cuda(at::kCUDA, holder->autocast_cuda, holder->autocast_cuda_dtype);
      out = holder->fn(x);
    }
    // Gradients of the recomputed graph: parameters accumulate into .grad; x's gradient is
    // returned to the outer graph.
    torch::autograd::backward({out}, {grads[0]});
    return {x.grad(), at::Tensor()};
  }
};

}  // namespace

at::Tensor checkpointed(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x) {
  auto holder = c10::make_intrusive<FunctionHolder>();
  holder->fn = std::move(fn);
  holder->autocast_cpu = at::autocast::is_autocast_enabled(at::kCPU);
  holder->autocast_cuda = at::autocast::is_autocast_enabled(at::kCUDA);
  holder->autocast_cpu_dtype = at::autocast::get_autocast_dtype(at::kCPU);
  holder->autocast_cuda_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  return Checkpoint::apply(x, holder);
}

}  // namespace phi
