// Collectives between the processes of a job, behind the project's own interface: LibTorch's c10d
// process groups underneath (ProcessGroupGloo on CPU, ProcessGroupNCCL on CUDA) with a TCPStore
// rendezvous at MASTER_ADDR:MASTER_PORT. Every gloo-touching line lives in one translation unit
// (src/dist/gloo_communicator.cpp) so that the Debian gloo headers it compiles against never mix
// with other code. A collective that does not complete within the timeout (a rank died or hangs)
// throws phi::Error naming the collective and the ranks.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

#include "phi/dist/env.h"

namespace phi {

enum class ReduceOp { kSum, kMax, kMin };

/// A collective started without waiting (all_reduce_async): wait() before reading the tensor.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string backend() const = 0;
  /// In place on every rank; `tensor` contiguous.
  virtual void all_reduce(at::Tensor& tensor, ReduceOp op = ReduceOp::kSum) = 0;
  virtual std::unique_ptr<PendingCollective> all_reduce_async(at::Tensor& tensor, ReduceOp op = ReduceOp::kSum) = 0;
  /// `tensor` on every rank becomes root's.
  virtual void broadcast(at::Tensor& tensor, int root = 0) = 0;
  /// output [world_size * n] holds every rank's input [n], in rank order.
  virtual void all_gather(const at::Tensor& input, at::Tensor& output) = 0;
  /// input [world_size * n], summed over ranks; rank r keeps slice r in output [n].
  virtual void reduce_scatter(const at::Tensor& input, at::Tensor& output) = 0;
  /// The same two without waiting: input and output must stay alive until wait() returns.
  virtual std::unique_ptr<PendingCollective> all_gather_async(const at::Tensor& input, at::Tensor& output) = 0;
  virtual std::unique_ptr<PendingCollective> reduce_scatter_async(const at::Tensor& input, at::Tensor& output) = 0;
  virtual void barrier() = 0;
};

struct CommunicatorOptions {
  std::string backend = "auto";  // auto (nccl for CUDA devices, else gloo), gloo, nccl
  std::chrono::milliseconds timeout{60000};
  bool cuda = false;             // the tensors live on the GPU
};

/// The communicator of this process: with one process a local one (every collective the identity);
/// otherwise the rendezvous at env.master_addr:master_port (rank 0 serves the store unless
/// torchrun's agent does) and the backend's process group. Errors name what failed and where.
std::unique_ptr<Communicator> make_communicator(const DistEnv& env, const CommunicatorOptions& options);

/// Whether this build has the Gloo backend (Debian's libgloo-dev at build time).
bool gloo_available();

}  // namespace phi
