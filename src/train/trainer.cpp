#include "phi/train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include "core/autocast_guard.h"
#include "core/file_util.h"
#include "phi/config/overrides.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/data/shards.h"
#include "phi/models/model_info.h"
#include "phi/models/model_loader.h"

namespace phi {

namespace fs = std::filesystem;

// ---- config ------------------------------------------------------------------------------------------

TrainConfig train_config_from_json(const nlohmann::json& j, const std::string& source) {
  JsonReader r(j, source);
  TrainConfig c;
  r.ignore({"_comment"});  // recipes explain their numbers here
  if (r.has_value("run")) {
    auto run = r.child("run");
    c.run_dir = run.optional<std::string>("dir", c.run_dir);
    c.seed = static_cast<uint64_t>(run.optional<int64_t>("seed", 0));
    run.finish();
  } else {
    r.ignore({"run"});
  }
  auto model = r.child("model");
  c.model_preset = model.optional<std::string>("preset", "");
  c.model_config = model.optional<std::string>("config", "");
  c.init_from = model.optional<std::string>("init_from", "");
  c.model_overrides = model.optional<std::vector<std::string>>("set", {});
  c.init_std = model.optional<double>("init_std", c.init_std);
  model.finish();
  const int sources = !c.model_preset.empty() + !c.model_config.empty() + !c.init_from.empty();
  if (sources != 1) model.fail("preset", "exactly one of preset, config and init_from must be given");

  auto data = r.child("data");
  const auto& list = data.raw("sources");
  if (!list.is_array() || list.empty()) data.fail("sources", "must be a non-empty array of {path, weight}");
  for (size_t i = 0; i < list.size(); ++i) {
    JsonReader s(list[i], source, "$.data.sources[" + std::to_string(i) + "]");
    DataSource ds;
    ds.path = s.required<std::string>("path");
    ds.weight = s.optional<double>("weight", 1.0);
    if (!(ds.weight > 0)) s.fail("weight", "must be > 0");
    s.finish();
    c.sources.push_back(ds);
  }
  c.valid = data.optional<std::string>("valid", "");
  c.seq_len = data.optional<int64_t>("seq_len", c.seq_len);
  c.pack = data.optional<bool>("pack", c.pack);
  c.document_masks = data.optional<bool>("document_masks", c.document_masks);
  c.special_tokens_in_content = data.optional<bool>("special_tokens_in_content", c.special_tokens_in_content);
  data.finish();

  if (r.has_value("training")) {
    auto t = r.child("training");
    c.batch_size = t.optional<int64_t>("batch_size", c.batch_size);
    c.grad_accum = t.optional<int64_t>("grad_accum", c.grad_accum);
    c.max_steps = t.optional<int64_t>("max_steps", c.max_steps);
    c.precision = t.optional<std::string>("precision", c.precision);
    c.loss_scale = t.optional<double>("loss_scale", c.loss_scale);
    c.loss_scale_window = t.optional<int64_t>("loss_scale_window", c.loss_scale_window);
    c.activation_checkpointing = t.optional<bool>("activation_checkpointing", c.activation_checkpointing);
    c.max_nonfinite_steps = t.optional<int64_t>("max_nonfinite_steps", c.max_nonfinite_steps);
    c.device = t.optional<std::string>("device", c.device);
    c.log_every = t.optional<int64_t>("log_every", c.log_every);
    c.eval_every = t.optional<int64_t>("eval_every", c.eval_every);
    c.eval_batches = t.optional<int64_t>("eval_batches", c.eval_batches);
    t.finish();
    if (c.batch_size <= 0) t.fail("batch_size", "must be > 0");
    if (c.grad_accum <= 0) t.fail("grad_accum", "must be > 0");
    if (c.max_steps <= 0) t.fail("max_steps", "must be > 0");
    if (c.precision != "f32" && c.precision != "bf16" && c.precision != "f16") t.fail("precision", "must be f32, bf16 or f16");
    if (!(c.loss_scale >= 1)) t.fail("loss_scale", "must be >= 1");
    if (c.loss_scale_window <= 0) t.fail("loss_scale_window", "must be > 0");
    if (c.max_nonfinite_steps <= 0) t.fail("max_nonfinite_steps", "must be > 0");
  } else {
    r.ignore({"training"});
  }
  if (r.has_value("checkpoint")) {
    auto ck = r.child("checkpoint");
    c.checkpoint_every = ck.optional<int64_t>("every", 0);
    c.keep_checkpoints = ck.optional<int64_t>("keep", 2);
    ck.finish();
    if (c.keep_checkpoints <= 0) ck.fail("keep", "must be > 0");
  } else {
    r.ignore({"checkpoint"});
  }
  c.optimizer = r.has_value("optimizer") ? optimizer_config_from_json(r.raw("optimizer"), source) : OptimizerConfig{};
  if (!r.has_value("optimizer")) r.ignore({"optimizer"});
  c.schedule = r.has_value("schedule") ? schedule_config_from_json(r.raw("schedule"), source) : ScheduleConfig{};
  if (!r.has_value("schedule")) r.ignore({"schedule"});
  r.finish();
  if (c.seq_len <= 0) throw Error("$.data.seq_len must be > 0", source);
  return c;
}

nlohmann::json train_config_to_json(const TrainConfig& c) {
  nlohmann::json sources = nlohmann::json::array();
  for (const auto& s : c.sources) sources.push_back({{"path", s.path}, {"weight", s.weight}});
  nlohmann::json model = {{"init_std", c.init_std}, {"set", c.model_overrides}};
  if (!c.model_preset.empty()) model["preset"] = c.model_preset;
  if (!c.model_config.empty()) model["config"] = c.model_config;
  if (!c.init_from.empty()) model["init_from"] = c.init_from;
  return {{"run", {{"dir", c.run_dir}, {"seed", static_cast<int64_t>(c.seed)}}},
          {"model", model},
          {"data", {{"sources", sources}, {"valid", c.valid}, {"seq_len", c.seq_len}, {"pack", c.pack},
                    {"document_masks", c.document_masks}, {"special_tokens_in_content", c.special_tokens_in_content}}},
          {"training", {{"batch_size", c.batch_size}, {"grad_accum", c.grad_accum}, {"max_steps", c.max_steps},
                        {"precision", c.precision}, {"loss_scale", c.loss_scale},
                        {"loss_scale_window", c.loss_scale_window},
                        {"activation_checkpointing", c.activation_checkpointing},
                        {"max_nonfinite_steps", c.max_nonfinite_steps}, {"device", c.device}, {"log_every", c.log_every},
                        {"eval_every", c.eval_every}, {"eval_batches", c.eval_batches}}},
          {"checkpoint", {{"every", c.checkpoint_every}, {"keep", c.keep_checkpoints}}},
          {"optimizer", optimizer_config_to_json(c.optimizer)},
          {"schedule", schedule_config_to_json(c.schedule)}};
}

TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides) {
  auto j = read_json_file(path);
  apply_overrides(j, overrides);
  return train_config_from_json(j, path);
}

// ---- checkpoints -----------------------------------------------------------------------------------

namespace {

// Names of the complete checkpoints (step-N with a DONE marker) under `dir`, oldest first.
std::vector<std::string> complete_checkpoints(const fs::path& dir) {
  std::vector<std::string> names;
  if (!fs::exists(dir)) return names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("step-", 0) == 0 && name.find(".tmp") == std::string::npos && fs::exists(entry.path() / "DONE")) {
      names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

std::string latest_checkpoint(const std::string& run_dir) {
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  const auto names = complete_checkpoints(dir);
  return names.empty() ? "" : (dir / names.back()).string();
}

namespace {

// Fault injection for the crash tests: PHI_FAULT_CHECKPOINT_DELAY_MS pauses in the middle of
// writing a checkpoint so that a test can kill the process there.
void fault_injection_pause() {
  if (const char* ms = std::getenv("PHI_FAULT_CHECKPOINT_DELAY_MS")) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::atoll(ms)));
  }
}

// Tokenizer files travel with every saved model so that a checkpoint is a complete model directory.
void copy_tokenizer_files(const std::string& from, const fs::path& to) {
  if (from.empty() || !fs::is_directory(from)) return;
  for (const auto& entry : fs::directory_iterator(from)) {
    const auto name = entry.path().filename().string();
    const bool tokenizer_file = name == "tokenizer.model" || name == "vocab.json" || name == "merges.txt" ||
                                name == "added_tokens.json" || name == "tokenizer_config.json" ||
                                name == "special_tokens_map.json" || name == "generation_config.json" ||
                                entry.path().extension() == ".tiktoken";
    if (tokenizer_file) fs::copy_file(entry.path(), to / name, fs::copy_options::overwrite_existing);
  }
}

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

// Whether every parameter of the model is finite (one reduction, one read-back).
bool weights_finite(const Transformer& model) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> flags;
  for (const auto& [name, p] : model.parameters()) flags.push_back(at::isfinite(p).all());
  return flags.empty() || at::stack(flags).all().item<bool>();
}

// Checkpoint directories a killed save left behind (step-N.tmp): never complete, removed at start.
void remove_stale_checkpoint_dirs(const fs::path& dir) {
  if (!fs::exists(dir)) return;
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("step-", 0) == 0 && name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) {
      stale.push_back(entry.path());
    }
  }
  for (const auto& p : stale) {
    spdlog::info("removing {} (left by an interrupted checkpoint save)", p.string());
    fs::remove_all(p);
  }
}

void save_checkpoint(const TrainConfig& config, const Transformer& model, const Optimizer& optimizer,
                     const LoaderState& loader, int64_t step, const std::vector<double>& recent_losses,
                     const std::string& tokenizer_dir, const LossScaler& scaler) {
  const fs::path dir = fs::path(config.run_dir) / "checkpoints";
  fs::create_directories(dir);
  char name[32];
  std::snprintf(name, sizeof(name), "step-%08lld", static_cast<long long>(step));
  const fs::path final_dir = dir / name;
  const fs::path tmp_dir = dir / (std::string(name) + ".tmp");
  fs::remove_all(tmp_dir);
  fs::create_directories(tmp_dir);
  save_model(model, (tmp_dir / "model").string(), at::kFloat);
  copy_tokenizer_files(tokenizer_dir, tmp_dir / "model");
  fault_injection_pause();
  NamedTensors state = optimizer.state_tensors();
  state.push_back({"rng.cpu", at::detail::getDefaultCPUGenerator().get_state()});
  if (model.device().is_cuda()) state.push_back({"rng.cuda", cuda_rng_state()});
  save_safetensors((tmp_dir / "optimizer.safetensors").string(), state);
  nlohmann::json trainer_state = {{"step", step}, {"optimizer_steps", optimizer.steps()},
                                  {"loader", loader_state_to_json(loader)}, {"recent_losses", recent_losses},
                                  {"loss_scale", scaler.scale}, {"loss_scale_clean_steps", scaler.clean_steps}};
  write_json_file_atomic((tmp_dir / "trainer_state.json").string(), trainer_state);
  fsync_directory(tmp_dir.string());
  if (fs::exists(final_dir)) fs::remove_all(final_dir);
  fs::rename(tmp_dir, final_dir);
  fsync_directory(dir.string());
  // Marked complete last: a checkpoint without DONE is never resumed from.
  const std::string done = "step " + std::to_string(step) + "\n";
  write_file_atomic((final_dir / "DONE").string(), done.data(), done.size());
  // Keep the newest K complete checkpoints. Every complete checkpoint is a good one (train() never
  // saves non-finite weights or a diverged step), so rotation only deletes checkpoints older than a
  // newer good one.
  const auto complete = complete_checkpoints(dir);
  for (size_t i = 0; i + static_cast<size_t>(config.keep_checkpoints) < complete.size(); ++i) {
    fs::remove_all(dir / complete[i]);
  }
}

double evaluate(const Transformer& model, const TrainConfig& config) {
  at::NoGradGuard no_grad;
  TokenLoader loader({{config.valid, 1.0}}, config.seq_len, config.batch_size, 1234, {}, false, config.pack,
                     config.document_masks);
  AutocastGuard autocast(model.device().type(), config.precision != "f32", compute_dtype(config.precision));
  double total = 0;
  for (int64_t i = 0; i < config.eval_batches; ++i) {
    auto batch = loader.next();
    total += model.loss(batch.inputs, batch.targets, batch.segments).item<double>();
  }
  return total / static_cast<double>(config.eval_batches);
}

}  // namespace

// ---- the job -----------------------------------------------------------------------------------------

TrainSummary train(const TrainConfig& config, bool resume) {
  fs::create_directories(config.run_dir);
  const auto device = parse_device(config.device);
  if (config.precision != "f32" && !at::autocast::is_autocast_available(device.type())) {
    throw Error("precision " + config.precision + " needs autocast on " + config.device + ", which this build lacks");
  }
  const fs::path checkpoint_dir = fs::path(config.run_dir) / "checkpoints";
  remove_stale_checkpoint_dirs(checkpoint_dir);
  if (!resume) {
    write_json_file_atomic((fs::path(config.run_dir) / "config.json").string(), train_config_to_json(config));
  }

  // Resume from the newest complete checkpoint that loads; a corrupted one (truncated tensors, bad
  // JSON, non-finite weights) is skipped with a warning for the one before it.
  std::string checkpoint;
  std::optional<Transformer> resumed_model;
  nlohmann::json resumed_state;
  if (resume) {
    const auto names = complete_checkpoints(checkpoint_dir);
    for (auto it = names.rbegin(); it != names.rend() && checkpoint.empty(); ++it) {
      const std::string candidate = (checkpoint_dir / *it).string();
      try {
        LoadOptions load;
        load.device = device;
        auto m = load_model((fs::path(candidate) / "model").string(), load);
        if (!weights_finite(m)) throw Error("the checkpoint's weights are not all finite", candidate);
        resumed_state = read_json_file((fs::path(candidate) / "trainer_state.json").string());
        (void)resumed_state.at("step").get<int64_t>();
        (void)resumed_state.at("optimizer_steps").get<int64_t>();
        (void)TensorStore::open_file((fs::path(candidate) / "optimizer.safetensors").string());
        resumed_model.emplace(std::move(m));
        checkpoint = candidate;
      } catch (const std::exception& e) {
        spdlog::warn("--resume: checkpoint {} cannot be used ({}); trying the one before it", candidate, e.what());
      }
    }
    if (checkpoint.empty()) spdlog::warn("--resume: no usable complete checkpoint in {}; starting fresh", config.run_dir);
  }

  // Model.
  Transformer model = [&] {
    if (resumed_model) return std::move(*resumed_model);
    if (!config.init_from.empty()) {
      LoadOptions load;
      load.device = device;
      load.config_overrides = config.model_overrides;
      return load_model(config.init_from, load);
    }
    auto mc = config.model_preset.empty() ? load_model_config(config.model_config, config.model_overrides)
                                          : preset_model_config(config.model_preset, config.model_overrides);
    auto m = Transformer::random(mc, config.seed, at::kFloat, config.init_std);
    m.to(device, at::kFloat);
    return m;
  }();
  if (model.dtype() != at::kFloat) model.to(device, at::kFloat);  // master weights are float32
  model.set_activation_checkpointing(config.activation_checkpointing);
  Optimizer optimizer(model.mutable_parameters(), config.optimizer);
  LossScaler scaler;
  if (config.precision == "f16") {
    scaler.dynamic = true;
    scaler.scale = config.loss_scale;
    scaler.window = config.loss_scale_window;
  }

  // Data and state.
  LoaderState loader_state;
  int64_t start_step = 0;
  if (!checkpoint.empty()) {
    const auto& state = resumed_state;
    start_step = state.at("step").get<int64_t>();
    loader_state = loader_state_from_json(state.at("loader"), checkpoint);
    auto store = TensorStore::open_file((fs::path(checkpoint) / "optimizer.safetensors").string());
    optimizer.load_state(store, state.at("optimizer_steps").get<int64_t>());
    if (store.contains("rng.cpu")) {
      auto generator = at::detail::getDefaultCPUGenerator();
      generator.set_state(store.tensor("rng.cpu").clone());
    }
    if (store.contains("rng.cuda") && device.is_cuda()) set_cuda_rng_state(store.tensor("rng.cuda").clone());
    if (scaler.dynamic && state.contains("loss_scale")) {
      scaler.scale = state.at("loss_scale").get<double>();
      scaler.clean_steps = state.at("loss_scale_clean_steps").get<int64_t>();
    }
    spdlog::info("resumed from {} (step {})", checkpoint, start_step);
  }
  TokenLoader loader(config.sources, config.seq_len, config.batch_size, config.seed, loader_state, true, config.pack,
                     config.document_masks);
  const std::string tokenizer_dir = !config.init_from.empty() ? config.init_from : read_manifest(config.sources[0].path).tokenizer;
  if (config.seq_len > model.config().max_position_embeddings) {
    throw Error("$.data.seq_len " + std::to_string(config.seq_len) + " is longer than the model's context (" +
                    std::to_string(model.config().max_position_embeddings) + " positions)",
                "", "lower data.seq_len, or raise the model's max_position_embeddings");
  }
  if (loader.vocab_size() > model.config().vocab_size) {
    throw Error("the data's vocabulary (" + std::to_string(loader.vocab_size()) + ") is larger than the model's (" +
                std::to_string(model.config().vocab_size) + ")", config.sources[0].path);
  }

  const auto info = model_info(model.config());
  const int64_t trainable = optimizer.trainable_parameters();
  spdlog::info("model {}: {} parameters ({} trainable, {} frozen)", model.config().name, info.n_parameters, trainable,
               optimizer.frozen_parameters());
  spdlog::info("optimizer {}: {} bytes/parameter of weights+gradients+state, ~{:.1f} MiB", config.optimizer.name,
               optimizer.state_bytes_per_parameter(),
               (optimizer.state_bytes_per_parameter() * trainable + 4 * optimizer.frozen_parameters()) / 1048576.0);
  spdlog::info("precision {} ({}), activation checkpointing {}, {} on {}", config.precision,
               config.precision == "f32" ? "float32 throughout"
                                         : "autocast compute, float32 master weights" +
                                               std::string(scaler.dynamic ? ", dynamic loss scaling" : ""),
               config.activation_checkpointing ? "on" : "off", model.config().name, device.str());

  std::ofstream metrics(fs::path(config.run_dir) / "metrics.jsonl", std::ios::app);
  TrainSummary summary;
  const int64_t tokens_per_step = config.batch_size * config.grad_accum * config.seq_len;
  const auto start = std::chrono::steady_clock::now();
  const bool tty = isatty(STDERR_FILENO);
  double loss_value = 0;
  int64_t nonfinite_run = 0;  // consecutive diverged steps
  for (int64_t step = start_step; step < config.max_steps; ++step) {
    const double lr = scheduled_lr(config.schedule, config.optimizer.lr, step);
    loss_value = 0;
    for (int64_t micro = 0; micro < config.grad_accum; ++micro) {
      auto batch = loader.next();
      at::Tensor loss;
      {
        AutocastGuard autocast(device.type(), config.precision != "f32", compute_dtype(config.precision));
        loss = model.loss(batch.inputs, batch.targets, batch.segments);
      }
      (loss * (scaler.scale / static_cast<double>(config.grad_accum))).backward();
      loss_value += loss.item<double>() / static_cast<double>(config.grad_accum);
    }
    // (Data parallelism reduces gradients here.)
    const double grad_norm = optimizer.step(lr, scaler.scale);
    const bool overflow = !std::isfinite(grad_norm);
    // A skipped step is for the rare f16 overflow that a smaller loss scale absorbs; a non-finite
    // loss, or a non-finite gradient with no scale left to lower, means the run is diverging.
    const bool diverged = !std::isfinite(loss_value) || (overflow && !(scaler.dynamic && scaler.scale > 1));
    if (overflow) {
      ++summary.skipped_steps;
      if (scaler.dynamic && !diverged) {
        spdlog::warn("step {}: gradient overflow at loss scale {}; step skipped", step + 1, scaler.scale);
      } else {
        spdlog::warn("step {}: non-finite {} (loss {}); step skipped", step + 1, overflow ? "gradient" : "loss", loss_value);
      }
    }
    scaler.update(overflow);
    nonfinite_run = diverged ? nonfinite_run + 1 : 0;
    if (nonfinite_run >= config.max_nonfinite_steps) {
      const auto last_good = latest_checkpoint(config.run_dir);
      throw Error("training diverged: " + std::to_string(nonfinite_run) + " consecutive steps (to step " +
                      std::to_string(step + 1) + ") had a non-finite loss or gradient",
                  config.run_dir,
                  "lower optimizer.lr or raise schedule warmup; no checkpoint was written for the diverged steps" +
                      (last_good.empty() ? std::string() : "; the last good checkpoint is " + last_good) +
                      " (training.max_nonfinite_steps sets how many are tolerated)");
    }
    summary.losses.push_back(loss_value);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double tokens_per_second = static_cast<double>((step + 1 - start_step) * tokens_per_step) / std::max(elapsed, 1e-9);
    nlohmann::json row = {{"step", step + 1}, {"loss", loss_value}, {"lr", lr},
                          {"grad_norm", overflow ? nlohmann::json(nullptr) : nlohmann::json(grad_norm)},
                          {"tokens_per_s", tokens_per_second}, {"elapsed_s", elapsed}};
    if (scaler.dynamic) row["loss_scale"] = scaler.scale;
    const bool last = step + 1 == config.max_steps;
    if (!config.valid.empty() && ((config.eval_every > 0 && (step + 1) % config.eval_every == 0) || last)) {
      const double valid_loss = evaluate(model, config);
      row["valid_loss"] = valid_loss;
      row["valid_ppl"] = std::exp(valid_loss);
      summary.final_valid_loss = valid_loss;
    }
    metrics << row.dump() << "\n" << std::flush;
    if (tty) {
      const double eta = elapsed / static_cast<double>(step + 1 - start_step) * static_cast<double>(config.max_steps - step - 1);
      std::fprintf(stderr, "\rstep %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  ETA %.0fs   ", static_cast<long long>(step + 1),
                   static_cast<long long>(config.max_steps), loss_value, lr, tokens_per_second, eta);
    } else if (config.log_every > 0 && ((step + 1) % config.log_every == 0 || last)) {
      spdlog::info("step {}/{} loss {:.4f} lr {:.2e} {:.0f} tok/s", step + 1, config.max_steps, loss_value, lr, tokens_per_second);
    }
    if ((config.checkpoint_every > 0 && (step + 1) % config.checkpoint_every == 0) || last) {
      // Never a checkpoint of a diverged state: it could rotate out the good ones.
      if (!std::isfinite(loss_value) || !weights_finite(model)) {
        throw Error("training diverged at step " + std::to_string(step + 1) + ": " +
                        (std::isfinite(loss_value) ? "the weights are" : "the loss is") + " not finite; no checkpoint written",
                    config.run_dir, "lower optimizer.lr; the last good checkpoint is " +
                                        (latest_checkpoint(config.run_dir).empty() ? std::string("(none)") : latest_checkpoint(config.run_dir)));
      }
      save_checkpoint(config, model, optimizer, loader.state(), step + 1, summary.losses, tokenizer_dir, scaler);
    }
    summary.tokens_per_second = tokens_per_second;
  }
  if (tty) std::fprintf(stderr, "\n");
  summary.steps = config.max_steps;
  summary.final_loss = loss_value;
  summary.loss_scale = scaler.scale;
  nlohmann::json final_summary = {{"steps", summary.steps}, {"final_loss", summary.final_loss},
                                  {"skipped_steps", summary.skipped_steps}, {"precision", config.precision},
                                  {"final_valid_loss", summary.final_valid_loss},
                                  {"tokens_per_s", summary.tokens_per_second}};
  write_json_file_atomic((fs::path(config.run_dir) / "summary.json").string(), final_summary);
  spdlog::info("done: {} steps, loss {:.4f}{}", summary.steps, summary.final_loss,
               summary.final_valid_loss >= 0 ? fmt::format(", valid loss {:.4f}", summary.final_valid_loss) : "");
  return summary;
}

}  // namespace phi
