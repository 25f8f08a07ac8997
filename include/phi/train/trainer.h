// Training from one JSON recipe (configs/train/*.json): model (preset, config file or a Hugging
// Face directory to start from), data (token shards with mixture weights), optimizer, schedule,
// batch and accumulation, checkpoints, logging, validation, seed. `phi train` drives it.
//
// The step is written so that data parallelism can go under it: a step is (micro-batches ->
// gradients) then (gradient reduction, here the identity) then (optimizer update on the local
// parameters).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "phi/data/loader.h"
#include "phi/train/optimizer.h"

namespace phi {

struct TrainConfig {
  // run
  std::string run_dir = "runs/train";
  uint64_t seed = 0;
  // model
  std::string model_preset;             // one of preset / model_config / init_from
  std::string model_config;
  std::string init_from;
  std::vector<std::string> model_overrides;
  double init_std = 0.02;
  // data
  std::vector<DataSource> sources;
  std::string valid;                    // a dataset directory for validation ("" = none)
  int64_t seq_len = 128;
  bool pack = true;                     // false: one document per sequence (padded)
  bool document_masks = false;          // packed: attention stays inside each document
  bool special_tokens_in_content = false;  // finetune .jsonl chats: special-token text in message
                                           // content becomes control tokens (default: plain text)
  // training
  int64_t batch_size = 8;
  int64_t grad_accum = 1;
  int64_t max_steps = 100;
  std::string precision = "f32";        // f32 | bf16 | f16: compute dtype under autocast; weights,
                                        // gradients and optimizer states stay float32 (master)
  double loss_scale = 65536;            // f16: initial dynamic loss scale
  int64_t loss_scale_window = 1000;     // f16: overflow-free steps before the scale doubles
  bool activation_checkpointing = false;  // recompute each block in the backward pass
  int64_t max_nonfinite_steps = 5;      // consecutive diverged steps (non-finite loss, or a non-finite
                                        // gradient that loss scaling cannot absorb) that stop the run
  std::string device = "cpu";
  int64_t log_every = 10;
  int64_t eval_every = 0;               // 0: only at the end (when valid is set)
  int64_t eval_batches = 4;
  // checkpoints
  int64_t checkpoint_every = 0;         // 0: only at the end
  int64_t keep_checkpoints = 2;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
};

/// Reads a recipe; unknown keys anywhere are errors naming the JSON path.
TrainConfig train_config_from_json(const nlohmann::json& j, const std::string& source);
nlohmann::json train_config_to_json(const TrainConfig& config);
TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides = {});

struct TrainSummary {
  int64_t steps = 0;
  double final_loss = 0;
  double final_valid_loss = -1;
  double tokens_per_second = 0;
  int64_t skipped_steps = 0;   // f16 overflow steps (no update)
  double loss_scale = 1;       // the final loss scale (f16)
  std::vector<double> losses;  // per step run in this process
};

/// Runs (or with `resume`, continues from the newest complete checkpoint in run_dir) the job.
TrainSummary train(const TrainConfig& config, bool resume);

/// The newest checkpoint directory with its DONE marker under run_dir/checkpoints ("" if none).
std::string latest_checkpoint(const std::string& run_dir);

}  // namespace phi
