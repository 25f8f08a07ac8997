// Fully sharded data parallelism (ZeRO-3, as PyTorch FSDP and DeepSpeed stage 3 do it) for the
// trainer: the trainable parameters of each decoder block, of the embedding, and of the final norm
// with the head are one flat float32 buffer each (a unit), padded to a multiple of the world size
// and split into equal contiguous shards. A rank keeps only its shard of every buffer (the master
// weights), the gradients of that shard and the optimizer state of that shard.
//
// - Forward: before block i runs, its buffer is all-gathered into freshly allocated storage that
//   the model's parameter tensors alias; after it, the storage is freed (the autograd graph keeps
//   the tensors, not their memory). The embedding and the head (the root) are gathered for the
//   whole micro-step. Block i + 1's all-gather starts when block i begins (prefetch), so that it
//   runs meanwhile.
// - Backward: a hook on block i's output gathers its parameters again before its backward runs
//   (with activation checkpointing, before its recomputation), and starts block i - 1's. As each
//   parameter's gradient is accumulated, it is copied into the unit's flat gradient buffer and
//   dropped; when the unit's
//   last one arrives, the buffer's reduce-scatter starts (asynchronously, while backward goes on)
//   and the parameters are freed; the unit before it, whose reduce-scatter has had a block's
//   backward to finish, is collected then (its slice added to the shard's gradient, its whole
//   gradient freed), and finish() collects the last.
// - The optimizer steps on the shard slices (`shards()`: one 1-D slice per parameter, named as the
//   parameter, views of the shard), so weight decay and learning-rate groups by name work as they
//   do unsharded; its global gradient norm sums the ranks' squares (set_norm_reduction).
// - Checkpoints are sharded: each rank writes its slices (phi/train/checkpoint.h).
// Frozen parameters are not sharded: every rank keeps them whole, with no gradient and no
// communication.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "phi/dist/communicator.h"
#include "phi/io/safetensors.h"
#include "phi/models/transformer.h"

namespace phi {

class Optimizer;

class FullySharded final : public BlockHooks {
 public:
  /// Shards `model`'s trainable parameters (requires_grad) across `comm`'s ranks. Every rank must
  /// hold the same values (rank 0's, broadcast) when this is called; the model's tensors alias the
  /// gathered buffers from then on, and are unreadable outside a gather (use the methods below).
  /// Gradients are reduce-scattered in `reduce_dtype` (bf16: half the traffic, sums rounded).
  FullySharded(Transformer& model, Communicator& comm, c10::ScalarType reduce_dtype = at::kFloat);
  ~FullySharded() override;
  FullySharded(const FullySharded&) = delete;
  FullySharded& operator=(const FullySharded&) = delete;

  /// One 1-D slice of this rank's shard per parameter that has elements here, named as the
  /// parameter; their .grad are slices of the shard's gradient. What the optimizer steps on.
  ParameterMap& shards() { return shards_; }

  /// The root's parameters (embedding, final norm, head) gathered for a forward; released by the
  /// backward that follows (training), or by release_root() (a forward without backward).
  void gather_root();
  void release_root();
  /// Waits for the reduce-scatters of the last backward and adds them to the shard gradients;
  /// returns the seconds spent waiting for them since the last call (communication not hidden
  /// behind backward).
  double finish();

  /// This rank's slices of the weights and of the optimizer's state ("<param>.<kind>"), as they are
  /// (no communication), for a sharded checkpoint; `first` receives each slice's first element.
  NamedTensors local_slices(const Optimizer& optimizer, std::map<std::string, int64_t>& first) const;
  /// Which elements of `name`'s flattened tensor this rank holds: {first, count} (count 0: none).
  std::pair<int64_t, int64_t> range_of(const std::string& name) const;
  /// The slice of a whole tensor that this rank's slice of `name` covers (state to resume), or an
  /// undefined tensor when this rank holds none of it.
  at::Tensor slice_of(const std::string& name, const at::Tensor& whole) const;
  /// Whether every element of every rank's shard is finite (a collective).
  bool finite();

  /// Bytes this rank holds: shards of the weights and gradients, the frozen parameters, and the
  /// most that was gathered at once (whole weights and gradients of the blocks in flight).
  struct Memory {
    int64_t shard_bytes = 0, frozen_bytes = 0, peak_gathered_bytes = 0, largest_unit_bytes = 0;
    int64_t sharded_elements = 0, padded_elements = 0;
  };
  Memory memory() const;
  int64_t units() const { return static_cast<int64_t>(units_.size()); }

  void before_block(int64_t index) override;
  at::Tensor after_block(int64_t index, const at::Tensor& output) override;

 private:
  struct Member;
  struct Unit;
  class GradientHook;
  /// Allocates the unit's storage and starts its all-gather; gather() waits for it.
  void prefetch(Unit& unit);
  void gather(Unit& unit);
  void release(Unit& unit);
  void on_gradient(Unit& unit, size_t member);
  /// Waits for a unit's reduce-scatter and adds this rank's slice to its shard's gradient.
  void collect(Unit& unit);
  void track(int64_t delta);
  int64_t grad_bytes(const Unit& unit) const;

  Transformer& model_;
  Communicator& comm_;
  c10::ScalarType reduce_dtype_;
  static constexpr size_t kFirstBlock = 2;
  std::vector<std::unique_ptr<Unit>> units_;  // the embedding, the head and final norm, then block i at 2 + i
  ParameterMap shards_;
  int64_t frozen_bytes_ = 0;
  int64_t gathered_bytes_ = 0, peak_gathered_bytes_ = 0;
  double waited_ = 0;  // seconds waiting for reduce-scatters since the last finish()
};

}  // namespace phi
