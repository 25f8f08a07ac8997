// Training checkpoints of one run directory: RUN/checkpoints/step-NNNNNNNN/ holding the model (a
// Hugging Face directory with the tokenizer files), optimizer.safetensors (optimizer state and RNG
// states) and trainer_state.json. Written under step-N.tmp/, fsynced, renamed, and marked complete
// last by a DONE file; only complete checkpoints are resumed from or counted for retention.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "phi/io/safetensors.h"
#include "phi/models/transformer.h"

namespace phi {

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

  struct Loaded {
    std::string path;
    Transformer model;
    nlohmann::json trainer_state;
    TensorStore optimizer_state;
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
