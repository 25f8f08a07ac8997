// Sharded training state for the trainer, two strategies on one mechanism:
//
// - fsdp (ZeRO-3, as PyTorch FSDP and DeepSpeed stage 3 do it): parameters, gradients and
//   optimizer state sharded;
// - zero1 (the optimizer state sharded, as Megatron's distributed optimizer and llm.c's -z 1 do
//   it): every rank keeps the whole weights and gradients; the gradients are reduce-scattered,
//   each rank updates its shard, and the updated weights are all-gathered after the step.
//
// The trainable parameters of each decoder block, of the embedding, and of the final norm with the
// head are one flat float32 buffer each (a unit), padded to a multiple of the world size and split
// into equal contiguous shards; a rank's shard of each unit is what its optimizer steps on.
//
// - fsdp forward: before block i runs, its buffer is all-gathered into freshly allocated storage
//   that the model's parameter tensors alias; after it, the storage is freed (the autograd graph
//   keeps the tensors, not their memory). The embedding and the head (the root) are gathered for
//   the whole micro-step. Block i + 1's all-gather starts when block i begins (prefetch).
// - fsdp backward: a hook on block i's output gathers its parameters again before its backward
//   runs (with activation checkpointing, before its recomputation), and starts block i - 1's.
// - Gradients: zero1's accumulate in place in one whole flat buffer per unit (the parameters'
//   .grad are views of it) over a step's micro-steps; in the last one's backward, a unit's buffer
//   is reduce-scattered as soon as its last parameter's gradient is in. fsdp's are reduce-scattered
//   every micro-step: as each parameter's gradient is accumulated it is copied into the unit's
//   flat gradient buffer and dropped; when the unit's last one arrives, the buffer's
//   reduce-scatter starts (asynchronously, while backward goes on); the unit before it, whose
//   reduce-scatter has had a block's backward to finish, is collected then (its slice added to the
//   shard's gradient, its whole gradient freed), and finish() collects the last.
// - The optimizer steps on the shard slices (`shards()`: one 1-D slice per parameter, named as the
//   parameter), so weight decay and learning-rate groups by name work as they do unsharded; its
//   global gradient norm sums the ranks' squares (set_norm_reduction).
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

class ShardedState final : public BlockHooks {
 public:
  enum class Strategy { kZero1, kFsdp };
  /// Shards `model`'s trainable parameters (requires_grad) across `comm`'s ranks. Every rank must
  /// hold the same values (rank 0's, broadcast) when this is called; the model's tensors alias the
  /// units' buffers from then on (fsdp: unreadable outside a gather; use the methods below).
  /// Gradients are reduce-scattered in `reduce_dtype` (bf16: half the traffic, sums rounded).
  ShardedState(Transformer& model, Communicator& comm, Strategy strategy, c10::ScalarType reduce_dtype = at::kFloat);
  ~ShardedState() override;
  ShardedState(const ShardedState&) = delete;
  ShardedState& operator=(const ShardedState&) = delete;

  /// One 1-D slice of this rank's shard per parameter that has elements here, named as the
  /// parameter; their .grad are slices of the shard's gradient. What the optimizer steps on.
  ParameterMap& shards() { return shards_; }

  /// fsdp: the root's parameters (embedding, final norm, head) gathered for a forward; released by
  /// the backward that follows (training), or by release_root() (a forward without backward).
  /// zero1: nothing (the weights are always whole).
  void gather_root();
  void release_root();
  /// zero1: the next backward is the last micro-step's, whose gradients are reduce-scattered
  /// (fsdp reduce-scatters every backward's).
  void arm() { armed_ = true; }
  bool reduces_this_backward() const { return armed_ || strategy_ == Strategy::kFsdp; }
  /// Waits for the reduce-scatters of the last backward and adds them to the shard gradients;
  /// returns the seconds spent waiting for them since the last call (communication not hidden
  /// behind backward).
  double finish();
  /// zero1, after the optimizer step: every rank's updated shard all-gathered into the whole weights.
  void share_updated_weights();

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

  /// Bytes this rank holds: shards of the weights (fsdp; zero1's alias the whole weights) and of
  /// the gradients, the whole weights and gradients (zero1), the frozen parameters, and the most
  /// that was whole at once besides (fsdp: weights and gradients of the units in flight; zero1:
  /// the flat gradient buffers).
  struct Memory {
    int64_t held_bytes = 0, frozen_bytes = 0, peak_gathered_bytes = 0, largest_unit_bytes = 0;
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
  /// Starts a unit's reduce-scatter (its gradient is complete).
  void start_scatter(Unit& unit);
  /// Waits for a unit's reduce-scatter and adds this rank's slice to its shard's gradient.
  void collect(Unit& unit);
  /// Whether what is reduce-scattered is a buffer of its own (fsdp; zero1 in bf16) or zero1's
  /// whole gradient itself.
  bool scatters_a_copy() const;
  void track(int64_t delta);
  int64_t grad_bytes(const Unit& unit) const;
  /// The member named `name` (null when it is not sharded here: frozen or unknown).
  const Member* member(const std::string& name) const;

  Transformer& model_;
  Communicator& comm_;
  Strategy strategy_;
  c10::ScalarType reduce_dtype_;
  bool armed_ = false;  // zero1: this backward's gradients are reduce-scattered
  static constexpr size_t kFirstBlock = 2;
  std::vector<std::unique_ptr<Unit>> units_;  // the embedding, the head and final norm, then block i at 2 + i
  ParameterMap shards_;
  int64_t frozen_bytes_ = 0;
  int64_t gathered_bytes_ = 0, peak_gathered_bytes_ = 0;
  double waited_ = 0;  // seconds waiting for reduce-scatters since the last finish()
};

}  // namespace phi
