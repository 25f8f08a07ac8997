// NCCL (CUDA tensors) through LibTorch's ProcessGroupNCCL: compiled in CUDA builds only, against
// the NCCL headers of the CUDA toolkit / the torch wheel. Collectives run on NCCL's streams; wait()
// makes the current stream wait for them, and TORCH_NCCL_ASYNC_ERROR_HANDLING / the watchdog turn a
// hung or failed collective into an error after the timeout.
#include "dist/backends.h"

#ifdef PHI_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "phi/core/error.h"

namespace phi {

#ifndef PHI_WITH_NCCL
bool nccl_available() { return false; }
std::unique_ptr<Communicator> make_nccl_communicator(const DistEnv&, const CommunicatorOptions&,
                                                     const c10::intrusive_ptr<c10d::Store>&) {
  return nullptr;
}
#else
bool nccl_available() { return true; }

namespace {

c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::kMax:
      return c10d::ReduceOp::MAX;
    case ReduceOp::kMin:
      return c10d::ReduceOp::MIN;
    default:
      return c10d::ReduceOp::SUM;
  }
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const DistEnv& env, const CommunicatorOptions& options, const c10::intrusive_ptr<c10d::Store>& store)
      : rank_(env.rank), world_(env.world_size) {
    auto pg_options = c10d::ProcessGroupNCCL::Options::create();
    pg_options->timeout = options.timeout;
    try {
      group_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank_, world_, pg_options);
    } catch (const std::exception& e) {
      throw Error("rank " + std::to_string(rank_) + " could not join the NCCL group: " + exception_text(e));
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend() const override { return "nccl"; }

  // NCCL moves CUDA tensors only: a host tensor (the trainer's small counts and flags) is staged
  // through the GPU and copied back when the collective completes.
  void all_reduce(at::Tensor& tensor, ReduceOp op) override { all_reduce_async(tensor, op)->wait(); }

  std::unique_ptr<PendingCollective> all_reduce_async(at::Tensor& tensor, ReduceOp op) override {
    auto staged = on_device(tensor);
    std::vector<at::Tensor> tensors = {staged};
    c10d::AllreduceOptions opts;
    opts.reduceOp = to_c10d(op);
    return pending("all_reduce", tensor, staged, [&] { return group_->allreduce(tensors, opts); });
  }

  void broadcast(at::Tensor& tensor, int root) override {
    auto staged = on_device(tensor);
    std::vector<at::Tensor> tensors = {staged};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    pending("broadcast", tensor, staged, [&] { return group_->broadcast(tensors, opts); })->wait();
  }

  void all_gather(const at::Tensor& input, at::Tensor& output) override {
    PHI_CHECK(output.numel() == input.numel() * world_, "all_gather output needs world_size x input elements");
    auto in = on_device(input.contiguous());
    auto out = on_device(output);
    pending("all_gather", output, out, [&] { return group_->_allgather_base(out, in); })->wait();
  }

  void reduce_scatter(const at::Tensor& input, at::Tensor& output) override {
    PHI_CHECK(input.numel() == output.numel() * world_, "reduce_scatter input needs world_size x output elements");
    auto in = on_device(input.contiguous());
    auto out = on_device(output);
    pending("reduce_scatter", output, out, [&] { return group_->_reduce_scatter_base(out, in); })->wait();
  }

  void barrier() override {
    at::Tensor none;
    pending("barrier", none, none, [&] { return group_->barrier(); })->wait();
  }

 private:
  static at::Tensor on_device(const at::Tensor& t) { return t.is_cuda() ? t : t.to(at::kCUDA); }

  // `staged` is what the collective ran on; when it differs from `tensor`, wait() copies it back.
  template <typename Start>
  std::unique_ptr<PendingCollective> pending(const char* name, const at::Tensor& tensor, const at::Tensor& staged,
                                             Start&& start) {
    const std::string what = std::string(name) + (tensor.defined() ? " of " + std::to_string(tensor.numel()) +
                                                                         " elements" : std::string()) +
                             " on rank " + std::to_string(rank_) + " of " + std::to_string(world_) + " (nccl)";
    struct Pending final : PendingCollective {
      c10::intrusive_ptr<c10d::Work> work;
      std::string what;
      at::Tensor target, staged;
      void wait() override {
        try {
          work->wait();
        } catch (const std::exception& e) {
          throw Error(what + " failed: " + exception_text(e), "",
                      "another rank died or stopped answering (see its log); the last complete checkpoint is intact");
        }
        if (target.defined() && !target.is_same(staged)) target.copy_(staged);
      }
    };
    auto p = std::make_unique<Pending>();
    p->what = what;
    p->target = tensor;
    p->staged = staged;
    try {
      p->work = start();
    } catch (const std::exception& e) {
      throw Error(what + " could not start: " + exception_text(e));
    }
    return p;
  }

  int rank_, world_;
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> group_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const DistEnv& env, const CommunicatorOptions& options,
                                                     const c10::intrusive_ptr<c10d::Store>& store) {
  return std::make_unique<NcclCommunicator>(env, options, store);
}
#endif

}  // namespace phi
