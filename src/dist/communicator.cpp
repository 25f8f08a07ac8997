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
  std::unique_ptr<PendingCollective> all_reduce_async(at::Tensor&, ReduceOp) override {
    struct Done final : PendingCollective {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  void broadcast(at::Tensor&, int) override {}
  void all_gather(const at::Tensor& input, at::Tensor& output) override { output.copy_(input.reshape(output.sizes())); }
  void reduce_scatter(const at::Tensor& input, at::Tensor& output) override {
    output.copy_(input.reshape(output.sizes()));
  }
  void barrier() override {}
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
  auto communicator = backend == "nccl" ? make_nccl_communicator(env, options, prefixed)
                                        : make_gloo_communicator(env, options, prefixed);
  if (!communicator) {
    throw Error("this phi was built without Gloo (Debian's libgloo-dev): it cannot run " +
                std::to_string(env.world_size) + " CPU ranks");
  }
  return communicator;
}

}  // namespace phi
