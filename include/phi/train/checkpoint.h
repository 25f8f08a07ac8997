// Training checkpoints of one run directory: RUN/checkpoints/step-NNNNNNNN/ holding the model (a
// Hugging Face directory with the tokenizer files), optimizer.safetensors (optimizer state and RNG
// states) and trainer_state.json. Written under step-N.tmp/, fsynced, renamed, and marked complete
// last by a DONE file; only complete checkpoints are resumed from or counted for retention.
//
// Fully sharded runs write sharded checkpoints instead: every rank writes its own slices of the
// weights and optimizer state at once (shards/rank-RRRRR.safetensors, each slice's first element in
// the file's metadata), and rank 0 writes model/config.json with the tokenizer, sharding.json
// (world size, parameter shapes), the RNG states and the trainer state, then marks the checkpoint
// complete once every rank has finished. Any world size and strategy resumes from either kind
// (the slices are re-cut on load); `phi convert --from step-N --to DIR` exports either kind as a
// Hugging Face directory.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "phi/dist/communicator.h"
#include "phi/io/safetensors.h"
#include "phi/models/transformer.h"

namespace phi {

/// A sharded checkpoint's slices, read back: any range of any tensor, from whichever ranks' files
/// hold it.
class ShardedCheckpoint {
 public:
  static bool is_sharded(const std::string& step_dir);
  /// Opens sharding.json and every rank's file; throws phi::Error naming what is missing or wrong.
  explicit ShardedCheckpoint(const std::string& step_dir);
  int64_t world_size() const { return static_cast<int64_t>(files_.size()); }
  /// Parameter names and shapes.
  const std::map<std::string, std::vector<int64_t>>& shapes() const { return shapes_; }
  /// `key` is a parameter name or "<parameter>.<state kind>".
  bool contains(const std::string& key) const;
  /// Elements [begin, begin + length) of `key`'s flattened tensor (float32, on the CPU); throws if
  /// the files do not cover them.
  at::Tensor read(const std::string& key, int64_t begin, int64_t length) const;
  /// The whole tensor, shaped as its parameter.
  at::Tensor whole(const std::string& key) const;
  /// The model: model/config.json with every parameter assembled from the slices.
  Transformer model(c10::Device device) const;

 private:
  struct Piece {
    size_t file;
    int64_t begin, length;
  };
  using Pieces = std::map<std::string, std::vector<Piece>>;
  /// The entry of the parameter `key` names (itself, or "<parameter>.<kind>"); null when none.
  const Pieces::value_type* find(const std::string& key) const;
  /// The same, throwing phi::Error naming the key when there is none.
  const Pieces::value_type& entry(const std::string& key) const;
  std::string directory_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  Pieces pieces_;  // by parameter name
  std::map<std::string, std::vector<int64_t>> shapes_;
};

/// The model of a checkpoint directory (step-N): its model/ directory, or a sharded checkpoint's
/// slices assembled; what `phi convert` exports.
Transformer load_checkpoint_model(const std::string& step_dir, c10::Device device = c10::Device(c10::kCPU));

class CheckpointManager {
 public:
  /// `keep`: complete checkpoints kept; `tokenizer_dir`: whose tokenizer files each model copies.
  CheckpointManager(std::string run_dir, int64_t keep, std::string tokenizer_dir = "");

  const std::string& directory() const { return directory_; }
  /// Complete checkpoints (with DONE), oldest first, as paths.
  std::vector<std::string> complete() const;
  /// The newest complete checkpoint ("" if none).
  std::string latest() const;
  /// Removes step-N.tmp directories an interrupted save left behind (logged).
  void remove_stale() const;

  /// Writes step `step`. The caller guarantees a good state (train() never saves non-finite loss
  /// or weights), so keeping the newest `keep` complete ones only deletes checkpoints older than a
  /// newer good one.
  void save(int64_t step, const Transformer& model, const NamedTensors& optimizer_state,
            const nlohmann::json& trainer_state) const;

  /// A sharded checkpoint (a collective: every rank calls it). `slices` are this rank's 1-D slices
  /// of parameters and of their optimizer state ("<name>.<kind>"), `first` the element of each
  /// parameter where its slice starts. Rank 0 adds `shapes` (every parameter's), the model's
  /// config, `extra` (RNG states) and the trainer state, and marks it complete after a barrier.
  void save_sharded(int64_t step, const ModelConfig& config, const std::map<std::string, std::vector<int64_t>>& shapes,
                    const NamedTensors& slices, const std::map<std::string, int64_t>& first,
                    const NamedTensors& extra, const nlohmann::json& trainer_state, Communicator& comm) const;

  struct Loaded {
    std::string path;
    Transformer model;
    nlohmann::json trainer_state;
    TensorStore optimizer_state;                 // whole state and RNG; a sharded one's RNG only
    std::shared_ptr<ShardedCheckpoint> sharded;  // a sharded checkpoint's slices
  };
  /// The newest complete checkpoint that loads (weights finite, trainer state and optimizer state
  /// readable); a corrupted one is skipped with a warning for the one before it.
  std::optional<Loaded> load_newest_usable(c10::Device device) const;

 private:
  std::string directory_;
  int64_t keep_;
  std::string tokenizer_dir_;
};

/// Whether every parameter of the model is finite (one reduction, one read-back).
bool weights_finite(const Transformer& model);

}  // namespace phi
