// A training recipe (configs/train/*.json) as one struct per section, each with from_json /
// to_json / validate: run, model, data, training, checkpoint, optimizer, schedule. Unknown keys
// anywhere are errors naming the JSON path; the resolved recipe is saved in the run directory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "phi/core/json_reader.h"
#include "phi/data/loader.h"
#include "phi/train/optimizer.h"

namespace phi {

struct RunSection {
  std::string dir = "runs/train";
  uint64_t seed = 0;
  static RunSection from_json(JsonReader& r);
  nlohmann::json to_json() const;
  void validate(const JsonReader&) const {}
};

struct ModelSection {
  std::string preset;                  // exactly one of preset / config / init_from
  std::string config;                  // a model config file
  std::string init_from;               // a Hugging Face directory to start from
  std::vector<std::string> overrides;  // "key=value" (the recipe's "set")
  double init_std = 0.02;
  static ModelSection from_json(JsonReader& r);
  nlohmann::json to_json() const;
  void validate(const JsonReader& r) const;
};

struct DataSection {
  std::vector<DataSource> sources;
  std::string mixture;  // "sources" given as a data recipe's mixture.json (read by load_mixture_sources)
  std::string valid;    // a dataset directory for validation ("" = none)
  int64_t seq_len = 128;
  bool pack = true;                        // false: one document per sequence (padded)
  bool document_masks = false;             // packed: attention stays inside each document
  bool special_tokens_in_content = false;  // finetune .jsonl chats: special-token text in message
                                           // content becomes control tokens (default: plain text)
  static DataSection from_json(JsonReader& r);
  nlohmann::json to_json() const;
  void validate(const std::string& source) const;
};

/// The sources of data.mixture when they were not read with the recipe (the file was not there
/// yet); an error naming the file when it is still missing. A no-op for listed sources.
void load_mixture_sources(DataSection& data);

struct TrainingSection {
  int64_t batch_size = 8;
  int64_t grad_accum = 1;
  int64_t max_steps = 100;
  std::string precision = "f32";          // f32 | bf16 | f16: compute dtype under autocast; weights,
                                          // gradients and optimizer states stay float32 (master)
  double loss_scale = 65536;              // f16: initial dynamic loss scale
  int64_t loss_scale_window = 1000;       // f16: overflow-free steps before the scale doubles
  bool activation_checkpointing = false;  // recompute each block in the backward pass
  int64_t max_nonfinite_steps = 5;        // consecutive diverged steps (non-finite loss, or a non-finite
                                          // gradient that loss scaling cannot absorb) that stop the run
  std::string device = "cpu";
  int64_t log_every = 10;
  int64_t eval_every = 0;  // 0: only at the end (when data.valid is set)
  int64_t eval_batches = 4;
  static TrainingSection from_json(JsonReader& r);
  nlohmann::json to_json() const;
  void validate(const JsonReader& r) const;
};

struct CheckpointSection {
  int64_t every = 0;  // 0: only at the end
  int64_t keep = 2;   // complete checkpoints kept
  static CheckpointSection from_json(JsonReader& r);
  nlohmann::json to_json() const;
  void validate(const JsonReader& r) const;
};

/// Which kernels the run uses (include/phi/kernels/kernel_choice.h). Empty: not set by the recipe;
/// then a resumed run keeps what it recorded, a new one takes the environment aliases / defaults.
struct KernelSection {
  std::string attention;     // aten | fused
  std::string elementwise;   // aten | fused
  std::string flash_kernel;  // wmma | mma
  static KernelSection from_json(JsonReader& r);
  nlohmann::json to_json() const;
  void validate(const JsonReader& r) const;
};

/// Several processes (launched by torchrun, srun or `phi launch`; phi/dist): how they train together.
struct DistributedSection {
  std::string backend = "auto";  // auto (nccl on CUDA, gloo on CPU), gloo, nccl
  std::string strategy =
      "ddp";              // ddp, zero1 (optimizer state sharded) or fsdp (everything sharded); docs/distributed.md
  double bucket_mb = 25;  // gradients are all-reduced in buckets of this size
  bool overlap = true;    // a bucket's all-reduce starts during backward as soon as it is full
  std::string reduce_dtype = "f32";  // f32, or bf16 (half the traffic; the sum rounded to bf16)
  double timeout_s = 60;             // a collective waiting longer fails the run (a rank died or hangs)
  static DistributedSection from_json(JsonReader& r);
  nlohmann::json to_json() const;
  void validate(const JsonReader& r) const;
};

/// An evaluation run during training every `every` steps (and at the end); its metrics go into
/// metrics.jsonl as "eval/<name>/<metric>". The tasks themselves live in phi/eval; the command that
/// runs the job wires them in (train and eval sit on one rung of the module ladder).
struct EvalTaskSection {
  std::string task;       // "perplexity" or "mmlu"
  std::string name;       // the key in metrics.jsonl (default: the task)
  int64_t every = 0;      // steps between runs (0: only at the end)
  std::string tokenizer;  // a tokenizer / model directory (default: model.init_from)
  // perplexity
  std::string input;  // a text file or a token-shard dataset
  int64_t seq_len = 0, stride = 0, max_tokens = 0;
  // mmlu
  std::string data;  // the directory holding dev/ and test/
  std::vector<std::string> subjects;
  int64_t shots = 5, limit = 0, batch_size = 16;
  static EvalTaskSection from_json(JsonReader& r);
  nlohmann::json to_json() const;
  void validate(const JsonReader& r) const;
};

struct TrainConfig {
  RunSection run;
  ModelSection model;
  DataSection data;
  TrainingSection training;
  CheckpointSection checkpoint;
  KernelSection kernels;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  std::vector<EvalTaskSection> evals;
  DistributedSection distributed;
};

/// Reads a recipe; unknown keys anywhere are errors naming the JSON path.
TrainConfig train_config_from_json(const nlohmann::json& j, const std::string& source);
nlohmann::json train_config_to_json(const TrainConfig& config);
/// Reads a recipe file and applies `--set section.key=value` overrides first.
TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides = {});

}  // namespace phi
