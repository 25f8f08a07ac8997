#include "phi/dist/communicator.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "dist/backends.h"
#include "phi/core/error.h"

namespace phi {

namespace {

// One process: every collective is the identity.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string backend() const override { return "local"; }
  void all_reduce(at::Tensor&, ReduceOp) override {}
  std::unique_ptr<PendingCollective> all_reduce_async(at::Tensor&, ReduceOp) override { return done(); }
  void broadcast(at::Tensor&, int) override {}
  void all_gather(const at::Tensor& input, at::Tensor& output) override { output.copy_(input.reshape(output.sizes())); }
  void reduce_scatter(const at::Tensor& input, at::Tensor& output) override {
    output.copy_(input.reshape(output.sizes()));
  }
  std::unique_ptr<PendingCollective> all_gather_async(const at::Tensor& input, at::Tensor& output) override {
    all_gather(input, output);
    return done();
  }
  std::unique_ptr<PendingCollective> reduce_scatter_async(const at::Tensor& input, at::Tensor& output) override {
    reduce_scatter(input, output);
    return done();
  }

 private:
  static std::unique_ptr<PendingCollective> done() {
    struct Done final : PendingCollective {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  void barrier() override {}
};

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

// The collectives over a c10d backend (Gloo or NCCL). A failure (a timeout, a rank that went
// away) becomes phi::Error naming the collective, its size and this rank. NCCL moves CUDA tensors
// only: with `stage_to_cuda` a host tensor (the trainer's counts and flags) goes through the GPU
// and is copied back when the collective completes.
class BackendCommunicator final : public Communicator {
 public:
  BackendCommunicator(const DistEnv& env, c10::intrusive_ptr<c10d::Backend> group, std::string name, bool stage_to_cuda)
      : rank_(env.rank), world_(env.world_size), group_(std::move(group)), name_(std::move(name)),
        stage_(stage_to_cuda) {}

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend() const override { return name_; }

  void all_reduce(at::Tensor& tensor, ReduceOp op) override { all_reduce_async(tensor, op)->wait(); }

  std::unique_ptr<PendingCollective> all_reduce_async(at::Tensor& tensor, ReduceOp op) override {
    auto staged = staged_for(tensor);
    std::vector<at::Tensor> tensors = {staged};
    c10d::AllreduceOptions opts;
    opts.reduceOp = to_c10d(op);
    return pending("all_reduce", tensor, staged, [&] { return group_->allreduce(tensors, opts); });
  }

  void broadcast(at::Tensor& tensor, int root) override {
    auto staged = staged_for(tensor);
    std::vector<at::Tensor> tensors = {staged};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    pending("broadcast", tensor, staged, [&] { return group_->broadcast(tensors, opts); })->wait();
  }

  void all_gather(const at::Tensor& input, at::Tensor& output) override { all_gather_async(input, output)->wait(); }

  void reduce_scatter(const at::Tensor& input, at::Tensor& output) override {
    reduce_scatter_async(input, output)->wait();
  }

  std::unique_ptr<PendingCollective> all_gather_async(const at::Tensor& input, at::Tensor& output) override {
    PHI_CHECK(output.numel() == input.numel() * world_, "all_gather output needs world_size x input elements");
    auto in = staged_for(input.contiguous());
    auto out = staged_for(output);
    return pending("all_gather", output, out, [&] { return group_->_allgather_base(out, in); }, in);
  }

  std::unique_ptr<PendingCollective> reduce_scatter_async(const at::Tensor& input, at::Tensor& output) override {
    PHI_CHECK(input.numel() == output.numel() * world_, "reduce_scatter input needs world_size x output elements");
    auto in = staged_for(input.contiguous());
    auto out = staged_for(output);
    return pending("reduce_scatter", output, out, [&] { return group_->_reduce_scatter_base(out, in); }, in);
  }

  void barrier() override {
    at::Tensor none;
    pending("barrier", none, none, [&] { return group_->barrier(); })->wait();
  }

 private:
  at::Tensor staged_for(const at::Tensor& t) const { return stage_ && !t.is_cuda() ? t.to(at::kCUDA) : t; }

  // `staged` is what the collective ran on; when it is not `tensor`, wait() copies it back. `input`
  // (a staged or contiguous copy of a collective's input) is kept alive until then.
  template <typename Start>
  std::unique_ptr<PendingCollective> pending(const char* name, const at::Tensor& tensor, const at::Tensor& staged,
                                             Start&& start, const at::Tensor& input = {}) {
    const std::string what = std::string(name) +
                             (tensor.defined() ? " of " + std::to_string(tensor.numel()) + " elements" : std::string()) +
                             " on rank " + std::to_string(rank_) + " of " + std::to_string(world_) + " (" + name_ + ")";
    struct Pending final : PendingCollective {
      c10::intrusive_ptr<c10d::Work> work;
      std::string what;
      at::Tensor target, staged, input;
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
    p->input = input;
    try {
      p->work = start();
    } catch (const std::exception& e) {
      throw Error(what + " could not start: " + exception_text(e));
    }
    return p;
  }

  int rank_, world_;
  c10::intrusive_ptr<c10d::Backend> group_;
  std::string name_;
  bool stage_;
};

}  // namespace

std::unique_ptr<Communicator> make_communicator(const DistEnv& env, const CommunicatorOptions& options) {
  // One process needs no group, unless NCCL is asked for by name (the GPU check of the NCCL path).
  if (!env.distributed() && options.backend != "nccl") return std::make_unique<LocalCommunicator>();
  std::string backend = options.backend;
  if (backend == "auto") backend = options.cuda ? "nccl" : "gloo";
  if (backend != "gloo" && backend != "nccl") {
    throw Error("distributed backend '" + options.backend + "' is not auto, gloo or nccl");
  }
  if (backend == "nccl" && !nccl_available()) {
    throw Error("this phi was built without CUDA: the NCCL backend is not available", "",
                "use backend gloo with CPU tensors");
  }
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(env.master_port);
  store_options.isServer = env.rank == 0 && !env.agent_store;
  store_options.numWorkers = env.world_size;
  store_options.waitWorkers = !env.agent_store;
  store_options.timeout = options.timeout;
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) +
                    " could not meet the others at " + env.master_addr + ":" + std::to_string(env.master_port) +
                    ": " + exception_text(e),
                "", "every rank must start within the timeout and reach MASTER_ADDR:MASTER_PORT");
  }
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("phi", store);
  auto group = backend == "nccl" ? make_nccl_backend(env, options, prefixed) : make_gloo_backend(env, options, prefixed);
  if (!group) {
    throw Error("this phi was built without Gloo (Debian's libgloo-dev): it cannot run " +
                std::to_string(env.world_size) + " CPU ranks");
  }
  return std::make_unique<BackendCommunicator>(env, std::move(group), backend, backend == "nccl");
}

}  // namespace phi
