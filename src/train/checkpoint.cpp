#include "phi/train/checkpoint.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include "core/file_util.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/models/model_loader.h"

namespace phi {

namespace fs = std::filesystem;

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

bool is_tmp(const std::string& name) {
  return name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0;
}

}  // namespace

bool weights_finite(const Transformer& model) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> flags;
  for (const auto& [name, p] : model.parameters()) flags.push_back(at::isfinite(p).all());
  return flags.empty() || at::stack(flags).all().item<bool>();
}

CheckpointManager::CheckpointManager(std::string run_dir, int64_t keep, std::string tokenizer_dir)
    : directory_((fs::path(run_dir) / "checkpoints").string()), keep_(keep), tokenizer_dir_(std::move(tokenizer_dir)) {}

std::vector<std::string> CheckpointManager::complete() const {
  std::vector<std::string> names;
  if (!fs::exists(directory_)) return names;
  for (const auto& entry : fs::directory_iterator(directory_)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("step-", 0) == 0 && !is_tmp(name) && fs::exists(entry.path() / "DONE")) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  for (auto& name : names) name = (fs::path(directory_) / name).string();
  return names;
}

std::string CheckpointManager::latest() const {
  const auto all = complete();
  return all.empty() ? "" : all.back();
}

void CheckpointManager::remove_stale() const {
  if (!fs::exists(directory_)) return;
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(directory_)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("step-", 0) == 0 && is_tmp(name)) stale.push_back(entry.path());
  }
  for (const auto& p : stale) {
    spdlog::info("removing {} (left by an interrupted checkpoint save)", p.string());
    fs::remove_all(p);
  }
}

void CheckpointManager::save(int64_t step, const Transformer& model, const NamedTensors& optimizer_state,
                             const nlohmann::json& trainer_state) const {
  const fs::path dir(directory_);
  fs::create_directories(dir);
  char name[32];
  std::snprintf(name, sizeof(name), "step-%08lld", static_cast<long long>(step));
  const fs::path final_dir = dir / name;
  const fs::path tmp_dir = dir / (std::string(name) + ".tmp");
  fs::remove_all(tmp_dir);
  fs::create_directories(tmp_dir);
  save_model(model, (tmp_dir / "model").string(), at::kFloat);
  copy_tokenizer_files(tokenizer_dir_, tmp_dir / "model");
  fault_injection_pause();
  save_safetensors((tmp_dir / "optimizer.safetensors").string(), optimizer_state);
  write_json_file_atomic((tmp_dir / "trainer_state.json").string(), trainer_state);
  fsync_directory(tmp_dir.string());
  if (fs::exists(final_dir)) fs::remove_all(final_dir);
  fs::rename(tmp_dir, final_dir);
  fsync_directory(dir.string());
  // Marked complete last: a checkpoint without DONE is never resumed from.
  const std::string done = "step " + std::to_string(step) + "\n";
  write_file_atomic((final_dir / "DONE").string(), done.data(), done.size());
  const auto all = complete();
  for (size_t i = 0; i + static_cast<size_t>(keep_) < all.size(); ++i) fs::remove_all(all[i]);
}

std::optional<CheckpointManager::Loaded> CheckpointManager::load_newest_usable(c10::Device device) const {
  const auto all = complete();
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      LoadOptions load;
      load.device = device;
      auto model = load_model((fs::path(*it) / "model").string(), load);
      if (!weights_finite(model)) throw Error("the checkpoint's weights are not all finite", *it);
      auto state = read_json_file((fs::path(*it) / "trainer_state.json").string());
      (void)state.at("step").get<int64_t>();
      (void)state.at("optimizer_steps").get<int64_t>();
      auto optimizer_state = TensorStore::open_file((fs::path(*it) / "optimizer.safetensors").string());
      return Loaded{*it, std::move(model), std::move(state), std::move(optimizer_state)};
    } catch (const std::exception& e) {
      spdlog::warn("--resume: checkpoint {} cannot be used ({}); trying the one before it", *it, e.what());
    }
  }
  return std::nullopt;
}

}  // namespace phi
