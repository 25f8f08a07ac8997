// Data-parallel gradient reduction (DDP) for the trainer: trainable parameters in buckets of
// about bucket_mb, in the order backward produces their gradients (the head and the last layers
// first). During the last micro-step's backward each parameter's hook writes its final gradient
// (what has accumulated plus what arrives) into its bucket; a full bucket's all-reduce starts at
// once and runs while backward goes on (PyTorch DDP's and Megatron's overlap). finish() waits for
// every bucket and copies the sums back.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "phi/dist/communicator.h"
#include "phi/models/transformer.h"

namespace phi {

class GradientReducer {
 public:
  GradientReducer(ParameterMap& parameters, Communicator& comm, double bucket_mb, bool overlap,
                  c10::ScalarType reduce_dtype);

  /// Buckets whose all-reduce started during the last backward (the rest started after it).
  int64_t started_in_backward() const { return started_in_backward_; }
  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }

  /// The next backward is the last micro-step's: its hooks start the buckets' all-reduces.
  void arm();
  /// Every bucket not started during backward starts now; all are waited for and copied back.
  /// Returns the seconds spent waiting (communication not hidden behind backward).
  double finish();

 private:
  struct Slot {
    at::Tensor* param;
    int64_t offset;
    bool written = false;
  };
  struct Bucket {
    std::vector<Slot> slots;
    int64_t elements = 0;
    at::Tensor flat;
    size_t ready = 0;
    std::unique_ptr<PendingCollective> pending;
  };
  void on_gradient(size_t bucket, size_t slot, const at::Tensor& grad);

  Communicator& comm_;
  bool overlap_;
  c10::ScalarType dtype_;  // the buckets' dtype: gradients are summed in it
  bool armed_ = false;
  int64_t started_in_backward_ = 0;
  std::vector<Bucket> buckets_;
};

}  // namespace phi
