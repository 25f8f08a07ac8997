#include "phi/models/checkpointing.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include "phi/core/error.h"

namespace phi {

namespace {

struct FunctionHolder : torch::CustomClassHolder {
  std::function<at::Tensor(const at::Tensor&)> fn;
  bool autocast_cpu = false, autocast_cuda = false;
  at::ScalarType autocast_cpu_dtype = at::kBFloat16, autocast_cuda_dtype = at::kBFloat16;
};

// Restores the autocast state of the forward pass while the backward recomputes.
class AutocastState {
 public:
  explicit AutocastState(const FunctionHolder& h)
      : cpu_(at::autocast::is_autocast_enabled(at::kCPU)), cuda_(at::autocast::is_autocast_enabled(at::kCUDA)),
        cpu_dtype_(at::autocast::get_autocast_dtype(at::kCPU)), cuda_dtype_(at::autocast::get_autocast_dtype(at::kCUDA)) {
    at::autocast::set_autocast_enabled(at::kCPU, h.autocast_cpu);
    at::autocast::set_autocast_enabled(at::kCUDA, h.autocast_cuda);
    at::autocast::set_autocast_dtype(at::kCPU, h.autocast_cpu_dtype);
    at::autocast::set_autocast_dtype(at::kCUDA, h.autocast_cuda_dtype);
  }
  ~AutocastState() {
    at::autocast::set_autocast_enabled(at::kCPU, cpu_);
    at::autocast::set_autocast_enabled(at::kCUDA, cuda_);
    at::autocast::set_autocast_dtype(at::kCPU, cpu_dtype_);
    at::autocast::set_autocast_dtype(at::kCUDA, cuda_dtype_);
  }

 private:
  bool cpu_, cuda_;
  at::ScalarType cpu_dtype_, cuda_dtype_;
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
      AutocastState autocast(*holder);
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
