#include "phi/train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/sinks/basic_file_sink.h>
#define XXH_INLINE_ALL
#include <xxhash.h>
#include <spdlog/spdlog.h>

#include "core/autocast_guard.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/data/shards.h"
#include "phi/dist/communicator.h"
#include "phi/kernels/kernel_choice.h"
#include "phi/models/family.h"
#include "phi/models/model_info.h"
#include "phi/models/model_loader.h"
#include "phi/train/checkpoint.h"
#include "train/sharded_state.h"
#include "train/gradient_reducer.h"

namespace phi {

namespace {

// SIGTERM (what Slurm sends before preemption, and torchrun / phi launch to stop a job): the
// training loop saves a checkpoint after the current step and returns.
std::atomic<bool> g_stop_requested{false};
void request_stop(int) { g_stop_requested = true; }

}  // namespace

namespace fs = std::filesystem;

std::string latest_checkpoint(const std::string& run_dir) { return CheckpointManager(run_dir, 1).latest(); }

TrainingMemoryEstimate estimate_training_memory(const ModelConfig& model, const OptimizerConfig& optimizer,
                                                int64_t world) {
  auto frozen = [&](const std::string& name) {
    return std::any_of(optimizer.freeze.begin(), optimizer.freeze.end(),
                       [&](const std::string& pattern) { return name.find(pattern) != std::string::npos; });
  };
  TrainingMemoryEstimate e;
  e.world = world;
  e.bytes_per_parameter = optimizer.name == "adamw" ? 16 : optimizer.momentum > 0 ? 12 : 8;
  int64_t embed = 0, head = 0, block = 0;
  for (const auto& [name, shape] : expected_parameters(model)) {
    int64_t numel = 1;
    for (auto d : shape) numel *= d;
    if (frozen(name)) {
      e.frozen += numel;
      continue;
    }
    e.trainable += numel;
    if (name.rfind("embed", 0) == 0) embed += numel;
    else if (name.rfind("layers.0.", 0) == 0) block += numel;
    else if (name.rfind("layers.", 0) != 0) head += numel;
  }
  const double n = static_cast<double>(world), t = static_cast<double>(e.trainable);
  const double per = static_cast<double>(e.bytes_per_parameter), frozen_bytes = 4.0 * static_cast<double>(e.frozen);
  e.ddp = per * t + frozen_bytes;
  // zero1: whole weights and gradients; the optimizer state sharded.
  e.zero1 = 8.0 * t + (per - 8.0) * t / n + frozen_bytes;
  e.fsdp = per * t / n + frozen_bytes;
  e.fsdp_gathered = 4.0 * static_cast<double>(embed + head + std::max(embed, head) + 4 * block);
  return e;
}

namespace {

// The default CUDA generator's state (through the device-generic context: no CUDA headers here).
at::Tensor cuda_rng_state() { return at::globalContext().defaultGenerator(c10::Device(c10::kCUDA)).get_state(); }
void set_cuda_rng_state(const at::Tensor& state) {
  auto generator = at::globalContext().defaultGenerator(c10::Device(c10::kCUDA));  // shares the default's impl
  generator.set_state(state);
}

// The autocast compute dtype of a precision setting (f32: autocast stays off).
at::ScalarType compute_dtype(const std::string& precision) {
  return precision == "f16" ? at::kHalf : at::kBFloat16;
}

// Dynamic loss scaling for f16 (1 and inert otherwise): halve on overflow (the step is skipped),
// double after `window` clean steps.
struct LossScaler {
  double scale = 1;
  int64_t clean_steps = 0;
  int64_t window = 1000;
  bool dynamic = false;
  void update(bool overflow) {
    if (!dynamic) return;
    if (overflow) {
      scale = std::max(1.0, scale / 2);
      clean_steps = 0;
    } else if (++clean_steps >= window) {
      scale *= 2;
      clean_steps = 0;
    }
  }
};

// What one optimizer step did.
struct StepResult {
  double loss = 0;
  double grad_norm = 0;
  bool overflow = false;  // no update: a non-finite gradient
  bool diverged = false;  // a non-finite loss, or an overflow that loss scaling cannot absorb
};

class Trainer {
 public:
  Trainer(const TrainConfig& config, bool resume, const TrainHooks& hooks)
      : config_(config), hooks_(hooks), device_(parse_device(config.training.device)),
        checkpoints_(config.run.dir, config.checkpoint.keep) {
    if (!config.evals.empty() && !hooks.evaluate) {
      throw Error("the recipe names eval tasks but this command cannot run them", config.run.dir);
    }
    join_ranks();
    build(resume);
  }

  TrainSummary run();

 private:
  /// The other processes of the job (one process: a local communicator); per-rank logs.
  void join_ranks();
  /// After the first step (when the optimizer state exists): the bytes this rank holds, measured,
  /// against the prediction: its optimizer state (bytes per parameter x the parameters it updates)
  /// and its whole training state (memory_report).
  void report_state_memory() const;
  /// zero1 and fsdp: shards the model's trainable parameters (train/sharded_state.h); the
  /// optimizer steps on this rank's slices.
  void shard_model();
  /// Bytes of training state this rank holds, measured, against the prediction; into summary.json.
  nlohmann::json memory_report() const;
  bool leader() const { return comm_->rank() == 0; }
  void build(bool resume);
  void choose_kernels(bool resume);

  LoaderState restore(const CheckpointManager::Loaded& resumed);
  void describe() const;
  StepResult train_step(int64_t step, double lr);
  double evaluate();
  /// The recipe's eval tasks due at this step, their metrics as "eval/<name>/<metric>" in `row`.
  void run_eval_tasks(int64_t step, bool last, nlohmann::json& row);
  void checkpoint(int64_t step);
  [[noreturn]] void stop_diverged(int64_t step) const;

  const TrainConfig& config_;
  const TrainHooks& hooks_;
  c10::Device device_;
  DistEnv dist_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<GradientReducer> reducer_;  // several ranks only
  std::unique_ptr<ShardedState> sharded_;        // strategy fsdp
  int64_t trainable_total_ = 0, frozen_total_ = 0;  // parameters of the whole model
  double comm_wait_seconds_ = 0;              // this step's all-reduce wait after backward
  CheckpointManager checkpoints_;
  std::optional<Transformer> model_;
  std::optional<Optimizer> optimizer_;
  std::optional<TokenLoader> loader_;
  LossScaler scaler_;
  int64_t start_step_ = 0;
  int64_t nonfinite_run_ = 0;  // consecutive diverged steps
  std::string tokenizer_dir_;
  TrainSummary summary_;
};

void Trainer::shard_model() {
  const auto strategy =
      config_.distributed.strategy == "fsdp" ? ShardedState::Strategy::kFsdp : ShardedState::Strategy::kZero1;
  sharded_ = std::make_unique<ShardedState>(*model_, *comm_, strategy,
                                            config_.distributed.reduce_dtype == "bf16" ? at::kBFloat16 : at::kFloat);
  auto options = config_.optimizer;
  options.freeze.clear();  // frozen parameters are not among the shards
  optimizer_.emplace(sharded_->shards(), options);
  optimizer_->set_norm_reduction([this](double local) {
    auto total = at::full({1}, local, at::kDouble);
    comm_->all_reduce(total);
    return total.item<double>();
  });
  const auto m = sharded_->memory();
  spdlog::info("{}: this rank holds the shards of {} of {} trainable elements ({} padding over {} units); {}",
               config_.distributed.strategy, m.padded_elements / comm_->world_size(), m.sharded_elements,
               m.padded_elements - m.sharded_elements, sharded_->units(),
               strategy == ShardedState::Strategy::kFsdp ? "parameters gathered one block at a time"
                                                         : "weights whole, updated shards all-gathered after each step");
}

nlohmann::json Trainer::memory_report() const {
  // Measured: the bytes of the tensors this rank keeps for training (unique storages of the
  // weights, gradients and optimizer state; zero1 and fsdp: what the sharded state holds, and the
  // most it had whole at once besides). Predicted: estimate_training_memory (docs/distributed.md).
  const auto e = estimate_training_memory(model_->config(), config_.optimizer, comm_->world_size());
  const auto& strategy = config_.distributed.strategy;
  double predicted = e.ddp;
  if (strategy == "zero1" && e.world > 1) predicted = e.zero1;
  if (strategy == "fsdp") predicted = e.fsdp;
  int64_t state = 0;
  for (const auto& entry : optimizer_->state_tensors()) state += entry.second.numel() * entry.second.element_size();
  nlohmann::json report = {{"strategy", sharded_ || e.world > 1 ? strategy : std::string("single")},
                           {"world_size", comm_->world_size()},
                           {"predicted_bytes", static_cast<int64_t>(predicted)},
                           {"optimizer_state_bytes", state}};
  if (sharded_) {
    const auto m = sharded_->memory();
    report["measured_bytes"] = m.held_bytes + m.frozen_bytes + state;
    report["peak_gathered_bytes"] = m.peak_gathered_bytes;
    report["predicted_gathered_bytes"] = static_cast<int64_t>(e.fsdp_gathered);
    report["largest_unit_bytes"] = m.largest_unit_bytes;
    report["padding_elements"] = m.padded_elements - m.sharded_elements;
    report["frozen_bytes"] = m.frozen_bytes;
  } else {
    std::set<const void*> seen;
    int64_t held = state;
    for (const auto& [name, p] : model_->parameters()) {
      if (seen.insert(p.storage().unsafeGetStorageImpl()).second) held += static_cast<int64_t>(p.storage().nbytes());
      if (p.grad().defined() && seen.insert(p.grad().storage().unsafeGetStorageImpl()).second) {
        held += static_cast<int64_t>(p.grad().storage().nbytes());
      }
    }
    report["measured_bytes"] = held;
  }
  return report;
}

void Trainer::report_state_memory() const {
  const auto memory = memory_report();
  int64_t updated = 0;
  for (const auto& [name, numel] : optimizer_->trainable()) updated += numel;
  const int64_t predicted = (optimizer_->state_bytes_per_parameter() - 8) * updated;
  spdlog::info("optimizer state on this rank: {} bytes measured, {} predicted ({} parameters updated here)",
               memory.at("optimizer_state_bytes").get<int64_t>(), predicted, updated);
  spdlog::info("training state on this rank: {} bytes measured, {} predicted ({})",
               memory.at("measured_bytes").get<int64_t>(), memory.at("predicted_bytes").get<int64_t>(),
               memory.at("strategy").get<std::string>());
}

void Trainer::join_ranks() {
  const auto& d = config_.distributed;
  dist_ = read_dist_env();
  CommunicatorOptions options;
  options.backend = d.backend;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(d.timeout_s * 1000));
  options.cuda = device_.is_cuda();
  // Several ranks on CUDA: each takes the GPU of its local rank unless the recipe names one.
  if (device_.is_cuda() && dist_.distributed() && !device_.has_index()) {
    device_ = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(dist_.local_rank));
  }
  comm_ = make_communicator(dist_, options);
  if (!dist_.distributed()) return;
  // Every rank logs to run.dir/logs/rank-R.log; only rank 0 speaks on the console.
  fs::create_directories(fs::path(config_.run.dir) / "logs");
  auto logger = spdlog::default_logger();
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(
      (fs::path(config_.run.dir) / "logs" / ("rank-" + std::to_string(dist_.rank) + ".log")).string(), false);
  if (dist_.rank > 0) {
    for (auto& sink : logger->sinks()) sink->set_level(spdlog::level::warn);
  }
  logger->sinks().push_back(file);
  // Every rank must run the same recipe (a rank started with another file or --set would train
  // something else and corrupt the shared checkpoints).
  const auto recipe = train_config_to_json(config_).dump();
  const auto hash = static_cast<int64_t>(XXH64(recipe.data(), recipe.size(), 0) >> 1);
  auto hashes = at::empty({dist_.world_size}, at::kLong);
  comm_->all_gather(at::full({1}, hash, at::kLong), hashes);
  for (int r = 0; r < dist_.world_size; ++r) {
    if (hashes[r].item<int64_t>() != hash) {
      throw Error("rank " + std::to_string(r) + " runs a different recipe than rank " + std::to_string(dist_.rank),
                  config_.run.dir, "start every rank with the same --config and --set values");
    }
  }
  if (config_.training.batch_size % dist_.world_size != 0) {
    throw Error("training.batch_size " + std::to_string(config_.training.batch_size) + " does not divide among " +
                    std::to_string(dist_.world_size) + " ranks",
                "", "the batch size is global: make it a multiple of the world size");
  }
  spdlog::info("rank {} of {} ({} launch, {} backend, {} via {}:{})", dist_.rank, dist_.world_size, dist_.launcher,
               comm_->backend(), config_.distributed.strategy, dist_.master_addr, dist_.master_port);
}

// build: the model (fresh, from init_from, or from the newest usable checkpoint), the optimizer,
// the loss scaler, the data loader and the resumed state.
void Trainer::build(bool resume) {
  const auto& c = config_;
  fs::create_directories(c.run.dir);
  if (c.training.precision != "f32" && !at::autocast::is_autocast_available(device_.type())) {
    throw Error("precision " + c.training.precision + " needs autocast on " + c.training.device + ", which this build lacks");
  }
  if (leader()) checkpoints_.remove_stale();
  comm_->barrier();
  choose_kernels(resume);
  std::optional<CheckpointManager::Loaded> resumed;
  if (resume) {
    resumed = checkpoints_.load_newest_usable(device_);
    if (!resumed) spdlog::warn("--resume: no usable complete checkpoint in {}; starting fresh", c.run.dir);
  }
  if (resumed) {
    model_.emplace(std::move(resumed->model));
  } else if (!c.model.init_from.empty()) {
    LoadOptions load;
    load.device = device_;
    load.config_overrides = c.model.overrides;
    model_.emplace(load_model(c.model.init_from, load));
  } else {
    auto mc = c.model.preset.empty() ? load_model_config(c.model.config, c.model.overrides)
                                     : preset_model_config(c.model.preset, c.model.overrides);
    model_.emplace(Transformer::random(mc, c.run.seed, at::kFloat, c.model.init_std));
    model_->to(device_, at::kFloat);
  }
  auto& model = *model_;
  if (model.dtype() != at::kFloat) model.to(device_, at::kFloat);  // master weights are float32
  model.set_activation_checkpointing(c.training.activation_checkpointing);
  // Every rank starts from rank 0's weights (the same seed gives the same ones; a broadcast makes sure).
  for (auto& [name, p] : model.mutable_parameters()) {
    at::NoGradGuard no_grad;
    comm_->broadcast(p, 0);
  }
  optimizer_.emplace(model.mutable_parameters(), c.optimizer);
  trainable_total_ = optimizer_->trainable_parameters();
  frozen_total_ = optimizer_->frozen_parameters();
  // zero1 on one process is plain training; fsdp on one still gathers and frees block by block.
  if ((c.distributed.strategy == "zero1" && comm_->world_size() > 1) || c.distributed.strategy == "fsdp") {
    shard_model();
  }
  if (c.training.precision == "f16") {
    scaler_.dynamic = true;
    scaler_.scale = c.training.loss_scale;
    scaler_.window = c.training.loss_scale_window;
  }

  const LoaderState loader_state = resumed ? restore(*resumed) : LoaderState{};
  const int64_t rows = c.training.batch_size / comm_->world_size();
  loader_.emplace(c.data.sources, c.data.seq_len, c.training.batch_size, c.run.seed, loader_state, true, c.data.pack,
                  c.data.document_masks, comm_->rank() * rows, rows);
  if (comm_->backend() != "local" && !sharded_) {  // a process group (NCCL asked for by name may have one rank)
    reducer_ = std::make_unique<GradientReducer>(model.mutable_parameters(), *comm_, c.distributed.bucket_mb,
                                                 c.distributed.overlap,
                                                 c.distributed.reduce_dtype == "bf16" ? at::kBFloat16 : at::kFloat);
  }
  tokenizer_dir_ = !c.model.init_from.empty() ? c.model.init_from : read_manifest(c.data.sources[0].path).tokenizer;
  checkpoints_ = CheckpointManager(c.run.dir, c.checkpoint.keep, tokenizer_dir_);
  if (c.data.seq_len > model.config().max_position_embeddings) {
    throw Error("$.data.seq_len " + std::to_string(c.data.seq_len) + " is longer than the model's context (" +
                    std::to_string(model.config().max_position_embeddings) + " positions)",
                "", "lower data.seq_len, or raise the model's max_position_embeddings");
  }
  if (loader_->vocab_size() > model.config().vocab_size) {
    throw Error("the data's vocabulary (" + std::to_string(loader_->vocab_size()) + ") is larger than the model's (" +
                std::to_string(model.config().vocab_size) + ")", c.data.sources[0].path);
  }

  describe();
}

// Kernels: the recipe's choice; where it says nothing, what a resumed run recorded; else the
// environment aliases and defaults. The effective choice is recorded with the resolved recipe.
void Trainer::choose_kernels(bool resume) {
  const auto& c = config_;
  KernelChoice kernels{c.kernels.attention, c.kernels.elementwise, c.kernels.flash_kernel};
  const auto saved_config = fs::path(c.run.dir) / "config.json";
  if (resume && fs::exists(saved_config)) {
    const auto saved = read_json_file(saved_config.string());
    if (saved.contains("kernels") && saved["kernels"].is_object()) {
      const auto& k = saved["kernels"];
      auto fill = [&](std::string& field, const char* key) {
        if (field.empty() && k.contains(key) && k[key].is_string()) field = k[key].get<std::string>();
      };
      fill(kernels.attention, "attention");
      fill(kernels.elementwise, "elementwise");
      fill(kernels.flash_kernel, "flash_kernel");
    }
  }
  kernels.apply();
  const auto effective = KernelChoice::current();
  spdlog::info("kernels: attention {}, elementwise {}, flash kernel {}", effective.attention, effective.elementwise,
               effective.flash_kernel);
  if (!resume && leader()) {
    auto resolved = train_config_to_json(c);
    resolved["kernels"] = effective.to_json();
    write_json_file_atomic(saved_config.string(), resolved);
  }

}

// restore: the optimizer state, RNG states, loss scale and data position of a checkpoint.
LoaderState Trainer::restore(const CheckpointManager::Loaded& resumed) {
  const auto& state = resumed.trainer_state;
  start_step_ = state.at("step").get<int64_t>();
  auto loader_state = loader_state_from_json(state.at("loader"), resumed.path);
  const auto optimizer_steps = state.at("optimizer_steps").get<int64_t>();
  if (resumed.sharded) {
    // A sharded checkpoint: this rank's slice of each state (fsdp, any world size), or the whole.
    const auto& checkpoint = *resumed.sharded;
    optimizer_->load_state(
        [&](const std::string& key) {
          if (!checkpoint.contains(key)) return at::Tensor();
          if (!sharded_) return checkpoint.whole(key);
          const auto [first, count] = sharded_->range_of(key.substr(0, key.rfind('.')));
          return count > 0 ? checkpoint.read(key, first, count) : at::Tensor();
        },
        optimizer_steps, resumed.path);
  } else if (sharded_) {
    const auto& store = resumed.optimizer_state;
    optimizer_->load_state(
        [&](const std::string& key) {
          if (!store.contains(key)) return at::Tensor();
          return sharded_->slice_of(key.substr(0, key.rfind('.')), store.tensor(key));
        },
        optimizer_steps, resumed.path);
  } else {
    optimizer_->load_state(resumed.optimizer_state, optimizer_steps);
  }
  if (resumed.optimizer_state.contains("rng.cpu")) {
    auto generator = at::detail::getDefaultCPUGenerator();
    generator.set_state(resumed.optimizer_state.tensor("rng.cpu").clone());
  }
  if (resumed.optimizer_state.contains("rng.cuda") && device_.is_cuda()) {
    set_cuda_rng_state(resumed.optimizer_state.tensor("rng.cuda").clone());
  }
  if (scaler_.dynamic && state.contains("loss_scale")) {
    scaler_.scale = state.at("loss_scale").get<double>();
    scaler_.clean_steps = state.at("loss_scale_clean_steps").get<int64_t>();
  }
  spdlog::info("resumed from {} (step {})", resumed.path, start_step_);
  return loader_state;
}

// The start-up summary: parameters, optimizer bytes, precision.
void Trainer::describe() const {
  const auto& c = config_;
  const auto& model = *model_;
  const auto info = model_info(model.config());
  const int64_t trainable = trainable_total_;
  spdlog::info("model {}: {} parameters ({} trainable, {} frozen)", model.config().name, info.n_parameters, trainable,
               frozen_total_);
  spdlog::info("optimizer {}: {} bytes/parameter of weights+gradients+state, ~{:.1f} MiB", c.optimizer.name,
               optimizer_->state_bytes_per_parameter(),
               (optimizer_->state_bytes_per_parameter() * trainable + 4 * frozen_total_) / 1048576.0);
  spdlog::info("precision {} ({}), activation checkpointing {}, {} on {}", c.training.precision,
               c.training.precision == "f32" ? "float32 throughout"
                                             : "autocast compute, float32 master weights" +
                                                   std::string(scaler_.dynamic ? ", dynamic loss scaling" : ""),
               c.training.activation_checkpointing ? "on" : "off", model.config().name, device_.str());
  if (comm_->world_size() > 1 || sharded_) {
    // Weights + gradients + optimizer state per rank, activations not counted (docs/distributed.md).
    const auto e = estimate_training_memory(model.config(), c.optimizer, comm_->world_size());
    auto size = [](double b) {
      return b >= 1073741824.0 ? fmt::format("{:.2f} GiB", b / 1073741824.0) : fmt::format("{:.1f} MiB", b / 1048576.0);
    };
    spdlog::info("weights+gradients+optimizer state per rank of {}: ddp {}, zero1 {}, fully sharded {} + {} gathered "
                 "at most (this run: {})",
                 comm_->world_size(), size(e.ddp), size(e.zero1), size(e.fsdp), size(e.fsdp_gathered),
                 c.distributed.strategy);
  }
}

// train_step: grad_accum micro-batches (forward under autocast, scaled backward), then the
// gradient reduction point (the identity on one process), then the optimizer update.
StepResult Trainer::train_step(int64_t step, double lr) {
  const auto& t = config_.training;
  StepResult result;
  // Each micro-step's loss is the mean over the scored tokens of the whole global batch: a rank
  // weights its own mean by its share of them (ranks may score different counts: padding, masks),
  // so that the gradients summed over the ranks are the one-process gradient.
  std::vector<Batch> batches;
  comm_wait_seconds_ = 0;
  auto counts = at::zeros({t.grad_accum}, at::kDouble);
  for (int64_t micro = 0; micro < t.grad_accum; ++micro) {
    batches.push_back(loader_->next());
    counts[micro] = batches.back().targets.ne(-100).sum().item<double>();
  }
  auto global_counts = counts.clone();
  comm_->all_reduce(global_counts);
  auto sums = at::zeros({t.grad_accum}, at::kDouble);
  for (int64_t micro = 0; micro < t.grad_accum; ++micro) {
    const auto& batch = batches[static_cast<size_t>(micro)];
    const double local = counts[micro].item<double>(), global = global_counts[micro].item<double>();
    const bool idle = local == 0 && global > 0;  // nothing scored here: this rank adds a zero gradient
    if (micro + 1 == t.grad_accum) {  // only the last backward communicates (fsdp: every one)
      if (reducer_) reducer_->arm();  // a skipped one too: finish() then sends its zeros
      if (sharded_) sharded_->arm();
    }
    if (idle && !sharded_) continue;
    // zero1 and fsdp: every rank takes part in every unit's reduce-scatter (and fsdp's gathers),
    // so an idle rank runs the micro-step with weight 0 on one stand-in target.
    at::Tensor targets = batch.targets;
    if (idle) {
      targets = batch.targets.clone();
      targets.view({-1})[0] = 0;
    }
    at::Tensor loss;
    {
      if (sharded_) sharded_->gather_root();
      AutocastGuard autocast(device_.type(), t.precision != "f32", compute_dtype(t.precision));
      loss = model_->loss(batch.inputs, targets, batch.segments);
    }
    const double share = idle ? 0.0 : global > 0 ? local / global : 1.0;
    (loss * (scaler_.scale * share / static_cast<double>(t.grad_accum))).backward();
    if (sharded_ && sharded_->reduces_this_backward()) comm_wait_seconds_ += sharded_->finish();
    const double mean = idle ? 0.0 : loss.item<double>();
    if (comm_->world_size() == 1) {
      result.loss += mean / static_cast<double>(t.grad_accum);
    } else {
      sums[micro] = global > 0 ? mean * local : mean;
    }
  }
  if (comm_->world_size() > 1) {
    comm_->all_reduce(sums);
    for (int64_t micro = 0; micro < t.grad_accum; ++micro) {
      const double global = global_counts[micro].item<double>();
      result.loss += (global > 0 ? sums[micro].item<double>() / global : sums[micro].item<double>()) /
                     static_cast<double>(t.grad_accum);
    }
  }
  if (reducer_) comm_wait_seconds_ = reducer_->finish();
  result.grad_norm = optimizer_->step(lr, scaler_.scale);
  if (sharded_) sharded_->share_updated_weights();
  if (step == start_step_) report_state_memory();
  result.overflow = !std::isfinite(result.grad_norm);
  // A skipped step is for the rare f16 overflow that a smaller loss scale absorbs; a non-finite
  // loss, or a non-finite gradient with no scale left to lower, means the run is diverging.
  result.diverged = !std::isfinite(result.loss) || (result.overflow && !(scaler_.dynamic && scaler_.scale > 1));
  if (result.overflow) {
    ++summary_.skipped_steps;
    if (scaler_.dynamic && !result.diverged) {
      spdlog::warn("step {}: gradient overflow at loss scale {}; step skipped", step + 1, scaler_.scale);
    } else {
      spdlog::warn("step {}: non-finite {} (loss {}); step skipped", step + 1, result.overflow ? "gradient" : "loss",
                   result.loss);
    }
  }
  scaler_.update(result.overflow);
  return result;
}

// evaluate: the mean loss over eval_batches of the validation set (always the same batches).
double Trainer::evaluate() {
  const auto& c = config_;
  at::NoGradGuard no_grad;
  TokenLoader loader({{c.data.valid, 1.0}}, c.data.seq_len, c.training.batch_size, 1234, {}, false, c.data.pack,
                     c.data.document_masks);
  if (sharded_) sharded_->gather_root();
  AutocastGuard autocast(model_->device().type(), c.training.precision != "f32", compute_dtype(c.training.precision));
  double total = 0;
  for (int64_t i = 0; i < c.training.eval_batches; ++i) {
    auto batch = loader.next();
    total += model_->loss(batch.inputs, batch.targets, batch.segments).item<double>();
  }
  if (sharded_) sharded_->release_root();
  return total / static_cast<double>(c.training.eval_batches);
}

[[noreturn]] void Trainer::stop_diverged(int64_t step) const {
  const auto last_good = checkpoints_.latest();
  throw Error("training diverged: " + std::to_string(nonfinite_run_) + " consecutive steps (to step " +
                  std::to_string(step + 1) + ") had a non-finite loss or gradient",
              config_.run.dir,
              "lower optimizer.lr or raise schedule warmup; no checkpoint was written for the diverged steps" +
                  (last_good.empty() ? std::string() : "; the last good checkpoint is " + last_good) +
                  " (training.max_nonfinite_steps sets how many are tolerated)");
}

void Trainer::run_eval_tasks(int64_t step, bool last, nlohmann::json& row) {
  for (const auto& task : config_.evals) {
    if (!last && !(task.every > 0 && (step + 1) % task.every == 0)) continue;
    at::NoGradGuard no_grad;
    const auto start = std::chrono::steady_clock::now();
    if (sharded_) sharded_->gather_root();
    const auto metrics = hooks_.evaluate(*model_, task);
    if (sharded_) sharded_->release_root();
    for (const auto& [key, value] : metrics.items()) row["eval/" + task.name + "/" + key] = value;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    spdlog::info("step {}: eval {} {} ({:.1f} s)", step + 1, task.name, metrics.dump(), seconds);
  }
}

// checkpoint: never of a diverged state (it could rotate out the good ones).
void Trainer::checkpoint(int64_t step) {
  const double last_loss = summary_.losses.empty() ? 0.0 : summary_.losses.back();
  if (!std::isfinite(last_loss) || !(sharded_ ? sharded_->finite() : weights_finite(*model_))) {
    const auto last_good = checkpoints_.latest();
    throw Error("training diverged at step " + std::to_string(step) + ": " +
                    (std::isfinite(last_loss) ? "the weights are" : "the loss is") + " not finite; no checkpoint written",
                config_.run.dir, "lower optimizer.lr; the last good checkpoint is " + (last_good.empty() ? "(none)" : last_good));
  }
  NamedTensors rng = {{"rng.cpu", at::detail::getDefaultCPUGenerator().get_state()}};
  if (model_->device().is_cuda()) rng.push_back({"rng.cuda", cuda_rng_state()});
  const nlohmann::json trainer_state = {{"step", step},
                                        {"optimizer_steps", optimizer_->steps()},
                                        {"loader", loader_state_to_json(loader_->state())},
                                        {"recent_losses", summary_.losses},
                                        {"loss_scale", scaler_.scale},
                                        {"loss_scale_clean_steps", scaler_.clean_steps}};
  if (sharded_) {
    // Every rank writes its own slices at once; frozen parameters (whole on every rank) go with rank 0's.
    std::map<std::string, int64_t> first;
    auto slices = sharded_->local_slices(*optimizer_, first);
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const auto& [name, p] : model_->parameters()) {
      shapes[name] = p.sizes().vec();
      if (!p.requires_grad() && leader()) {
        slices.push_back({name, p.reshape({-1})});
        first[name] = 0;
      }
    }
    checkpoints_.save_sharded(step, model_->config(), shapes, slices, first, rng, trainer_state, *comm_);
    return;
  }
  NamedTensors state = optimizer_->state_tensors();
  state.insert(state.end(), rng.begin(), rng.end());
  // Data parallelism keeps every rank's state identical: rank 0 writes it, the others wait until it
  // is complete (DONE), so that no rank runs ahead of the last checkpoint.
  if (leader()) checkpoints_.save(step, *model_, state, trainer_state);
  comm_->barrier();
}

TrainSummary Trainer::run() {
  const auto& c = config_;
  std::ofstream metrics;
  if (leader()) metrics.open(fs::path(c.run.dir) / "metrics.jsonl", std::ios::app);
  const int64_t tokens_per_step = c.training.batch_size * c.training.grad_accum * c.data.seq_len;
  const auto start = std::chrono::steady_clock::now();
  const bool tty = isatty(STDERR_FILENO) && leader();
  double loss_value = 0;
  g_stop_requested = false;
  const auto previous_handler = std::signal(SIGTERM, request_stop);
  for (int64_t step = start_step_; step < c.training.max_steps; ++step) {
    const double lr = scheduled_lr(c.schedule, c.optimizer.lr, step);
    const auto result = train_step(step, lr);
    loss_value = result.loss;
    nonfinite_run_ = result.diverged ? nonfinite_run_ + 1 : 0;
    if (nonfinite_run_ >= c.training.max_nonfinite_steps) stop_diverged(step);
    summary_.losses.push_back(loss_value);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double tokens_per_second =
        static_cast<double>((step + 1 - start_step_) * tokens_per_step) / std::max(elapsed, 1e-9);
    nlohmann::json row = {{"step", step + 1}, {"loss", loss_value}, {"lr", lr},
                          {"grad_norm", result.overflow ? nlohmann::json(nullptr) : nlohmann::json(result.grad_norm)},
                          {"tokens_per_s", tokens_per_second}, {"elapsed_s", elapsed}};
    if (scaler_.dynamic) row["loss_scale"] = scaler_.scale;
    if (sharded_) row["reduce_scatter_wait_s"] = comm_wait_seconds_;
    if (reducer_) {
      row["allreduce_wait_s"] = comm_wait_seconds_;
      row["buckets"] = reducer_->buckets();
      row["buckets_started_in_backward"] = reducer_->started_in_backward();
    }
    const bool last = step + 1 == c.training.max_steps;
    if (!c.data.valid.empty() && ((c.training.eval_every > 0 && (step + 1) % c.training.eval_every == 0) || last)) {
      const double valid_loss = evaluate();
      row["valid_loss"] = valid_loss;
      row["valid_ppl"] = std::exp(valid_loss);
      summary_.final_valid_loss = valid_loss;
    }
    run_eval_tasks(step, last, row);
    if (leader()) metrics << row.dump() << "\n" << std::flush;
    if (tty) {
      const double eta = elapsed / static_cast<double>(step + 1 - start_step_) *
                         static_cast<double>(c.training.max_steps - step - 1);
      std::fprintf(stderr, "\rstep %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  ETA %.0fs   ", static_cast<long long>(step + 1),
                   static_cast<long long>(c.training.max_steps), loss_value, lr, tokens_per_second, eta);
    } else if (c.training.log_every > 0 && ((step + 1) % c.training.log_every == 0 || last)) {
      spdlog::info("step {}/{} loss {:.4f} lr {:.2e} {:.0f} tok/s", step + 1, c.training.max_steps, loss_value, lr,
                   tokens_per_second);
    }
    const bool saved = (c.checkpoint.every > 0 && (step + 1) % c.checkpoint.every == 0) || last;
    if (saved) checkpoint(step + 1);
    summary_.tokens_per_second = tokens_per_second;
    // A stop asked of any rank stops every rank at the same step, after a checkpoint.
    auto stop = at::full({1}, g_stop_requested ? 1.0 : 0.0, at::kDouble);
    comm_->all_reduce(stop, ReduceOp::kMax);
    if (stop.item<double>() > 0 && !last) {
      if (!saved) checkpoint(step + 1);
      if (tty) std::fprintf(stderr, "\n");
      spdlog::warn("stopped by SIGTERM after step {}: checkpoint saved; resume with --resume", step + 1);
      summary_.steps = step + 1;
      summary_.final_loss = loss_value;
      summary_.interrupted = true;
      std::signal(SIGTERM, previous_handler);
      return summary_;
    }
  }
  std::signal(SIGTERM, previous_handler);
  if (tty) std::fprintf(stderr, "\n");
  summary_.steps = c.training.max_steps;
  summary_.final_loss = loss_value;
  summary_.loss_scale = scaler_.scale;
  nlohmann::json final_summary = {{"steps", summary_.steps}, {"final_loss", summary_.final_loss},
                                  {"skipped_steps", summary_.skipped_steps}, {"precision", c.training.precision},
                                  {"final_valid_loss", summary_.final_valid_loss},
                                  {"tokens_per_s", summary_.tokens_per_second},
                                  {"memory", memory_report()}};
  if (leader()) write_json_file_atomic((fs::path(c.run.dir) / "summary.json").string(), final_summary);
  spdlog::info("done: {} steps, loss {:.4f}{}", summary_.steps, summary_.final_loss,
               summary_.final_valid_loss >= 0 ? fmt::format(", valid loss {:.4f}", summary_.final_valid_loss) : "");
  return summary_;
}

}  // namespace

TrainSummary train(const TrainConfig& config, bool resume, const TrainHooks& hooks) {
  Trainer trainer(config, resume, hooks);
  return trainer.run();
}

}  // namespace phi
