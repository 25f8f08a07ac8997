// Training from one JSON recipe (configs/train/*.json, include/phi/train/train_config.h): model
// (preset, config file or a Hugging Face directory to start from), data (token shards with mixture
// weights), optimizer, schedule, batch and accumulation, checkpoints, logging, validation, seed.
// `phi train` and `phi finetune` drive it.
//
// Inside, a Trainer has named steps: build (model, optimizer, data, resumed state), train_step
// (micro-batches -> gradients -> the reduction point -> optimizer update), evaluate, checkpoint
// (through a CheckpointManager). Data parallelism goes at the reduction point of train_step.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "phi/train/optimizer.h"
#include "phi/train/train_config.h"

namespace phi {

class Transformer;

struct TrainSummary {
  int64_t steps = 0;
  double final_loss = 0;
  double final_valid_loss = -1;
  double tokens_per_second = 0;
  int64_t skipped_steps = 0;   // steps without an update (f16 overflow, diverged steps)
  double loss_scale = 1;       // the final loss scale (f16)
  std::vector<double> losses;  // per step run in this process
  bool interrupted = false;    // stopped by SIGTERM after a checkpoint (resume with --resume)
};

/// What a caller adds to a run: `evaluate` runs one of the recipe's eval tasks on the model being
/// trained (no gradients) and returns its metrics ({"acc": ..., ...}); the trainer calls it every
/// task.every steps and at the end, and writes the numbers into metrics.jsonl.
struct TrainHooks {
  std::function<nlohmann::json(const Transformer& model, const EvalTaskSection& task)> evaluate;
};

/// Runs (or with `resume`, continues from the newest usable complete checkpoint in run.dir) the
/// job. Throws phi::Error when training diverges (training.max_nonfinite_steps), leaving the last
/// good checkpoints in place. A recipe with eval tasks needs hooks.evaluate.
TrainSummary train(const TrainConfig& config, bool resume, const TrainHooks& hooks = {});

/// The newest checkpoint directory with its DONE marker under run_dir/checkpoints ("" if none).
std::string latest_checkpoint(const std::string& run_dir);

/// Bytes per rank of the training state (float32 master weights, their gradients, the optimizer's
/// state; activations not counted) for each strategy on `world` ranks: what a run's start-up
/// summary prints and summary.json's "memory" measures (docs/distributed.md).
struct TrainingMemoryEstimate {
  int64_t world = 1;
  int64_t trainable = 0, frozen = 0;  // parameters
  int64_t bytes_per_parameter = 16;   // weights + gradients + state of one trainable parameter
  double ddp = 0, zero1 = 0, fsdp = 0;
  /// fsdp's most held whole at once besides: the embedding and head weights, the gradient of the
  /// larger of them, and two blocks' weights and gradients (one computing, one gathering).
  double fsdp_gathered = 0;
};
TrainingMemoryEstimate estimate_training_memory(const ModelConfig& model, const OptimizerConfig& optimizer,
                                                int64_t world);

}  // namespace phi
