// The only translation unit that includes gloo (through ProcessGroupGloo.hpp): Debian's libgloo-dev
// headers against the gloo symbols the PyPI torch wheel exports.
#include "dist/backends.h"

#ifdef PHI_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

#include "phi/core/error.h"

namespace phi {

#ifndef PHI_WITH_GLOO
bool gloo_available() { return false; }
std::unique_ptr<Communicator> make_gloo_communicator(const DistEnv&, const CommunicatorOptions&,
                                                     const c10::intrusive_ptr<c10d::Store>&) {
  return nullptr;
}
#else
bool gloo_available() { return true; }

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

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(const DistEnv& env, const CommunicatorOptions& options, const c10::intrusive_ptr<c10d::Store>& store)
      : rank_(env.rank), world_(env.world_size) {
    auto pg_options = c10d::ProcessGroupGloo::Options::create();
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME")) {
      pg_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost") {
      pg_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      pg_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    pg_options->timeout = options.timeout;
    try {
      group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank_, world_, pg_options);
    } catch (const std::exception& e) {
      throw Error("rank " + std::to_string(rank_) + " could not join the Gloo group: " + exception_text(e));
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend() const override { return "gloo"; }

  void all_reduce(at::Tensor& tensor, ReduceOp op) override { all_reduce_async(tensor, op)->wait(); }

  std::unique_ptr<PendingCollective> all_reduce_async(at::Tensor& tensor, ReduceOp op) override {
    std::vector<at::Tensor> tensors = {tensor};
    c10d::AllreduceOptions opts;
    opts.reduceOp = to_c10d(op);
    return pending("all_reduce", tensor, [&] { return group_->allreduce(tensors, opts); });
  }

  void broadcast(at::Tensor& tensor, int root) override {
    std::vector<at::Tensor> tensors = {tensor};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    pending("broadcast", tensor, [&] { return group_->broadcast(tensors, opts); })->wait();
  }

  void all_gather(const at::Tensor& input, at::Tensor& output) override {
    PHI_CHECK(output.numel() == input.numel() * world_, "all_gather output needs world_size x input elements");
    auto in = input.contiguous();
    pending("all_gather", output, [&] { return group_->_allgather_base(output, in); })->wait();
  }

  void reduce_scatter(const at::Tensor& input, at::Tensor& output) override {
    PHI_CHECK(input.numel() == output.numel() * world_, "reduce_scatter input needs world_size x output elements");
    // Gloo's reduce-scatter takes one input per rank: the input's slices, in rank order.
    std::vector<at::Tensor> outputs = {output};
    std::vector<std::vector<at::Tensor>> inputs(1);
    auto flat = input.contiguous().view({world_, -1});
    for (int r = 0; r < world_; ++r) inputs[0].push_back(flat[r].view(output.sizes()));
    pending("reduce_scatter", output, [&] { return group_->reduce_scatter(outputs, inputs); })->wait();
  }

  void barrier() override {
    at::Tensor none;
    pending("barrier", none, [&] { return group_->barrier(); })->wait();
  }

 private:
  // A started collective whose failures (a timeout, a rank that went away) become phi::Error naming
  // the collective, its size and this rank.
  template <typename Start>
  std::unique_ptr<PendingCollective> pending(const char* name, const at::Tensor& tensor, Start&& start) {
    const std::string what = std::string(name) + (tensor.defined() ? " of " + std::to_string(tensor.numel()) +
                                                                         " elements" : std::string()) +
                             " on rank " + std::to_string(rank_) + " of " + std::to_string(world_);
    struct Pending final : PendingCollective {
      c10::intrusive_ptr<c10d::Work> work;
      std::string what;
      void wait() override {
        try {
          work->wait();
        } catch (const std::exception& e) {
          throw Error(what + " failed: " + exception_text(e), "",
                      "another rank died or stopped answering (see its log); the last complete checkpoint is intact");
        }
      }
    };
    auto p = std::make_unique<Pending>();
    p->what = what;
    try {
      p->work = start();
    } catch (const std::exception& e) {
      throw Error(what + " could not start: " + exception_text(e));
    }
    return p;
  }

  int rank_, world_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

}  // namespace

std::unique_ptr<Communicator> make_gloo_communicator(const DistEnv& env, const CommunicatorOptions& options,
                                                     const c10::intrusive_ptr<c10d::Store>& store) {
  return std::make_unique<GlooCommunicator>(env, options, store);
}
#endif

}  // namespace phi
