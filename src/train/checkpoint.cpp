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
#include "phi/models/family.h"
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

std::string step_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%08lld", static_cast<long long>(step));
  return name;
}

std::string shard_file_name(int64_t rank) {
  char name[48];  // room for any int64 rank
  std::snprintf(name, sizeof(name), "rank-%05lld.safetensors", static_cast<long long>(rank));
  return name;
}

// The checkpoint's final directory, then DONE (a checkpoint without it is never resumed from),
// then retention of the newest `keep` complete ones.
void complete_checkpoint(const fs::path& tmp_dir, const fs::path& final_dir, int64_t step) {
  fsync_directory(tmp_dir.string());
  if (fs::exists(final_dir)) fs::remove_all(final_dir);
  fs::rename(tmp_dir, final_dir);
  fsync_directory(final_dir.parent_path().string());
  const std::string done = "step " + std::to_string(step) + "\n";
  write_file_atomic((final_dir / "DONE").string(), done.data(), done.size());
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
  const std::string name = step_name(step);
  const fs::path final_dir = dir / name;
  const fs::path tmp_dir = dir / (name + ".tmp");
  fs::remove_all(tmp_dir);
  fs::create_directories(tmp_dir);
  save_model(model, (tmp_dir / "model").string(), at::kFloat);
  copy_tokenizer_files(tokenizer_dir_, tmp_dir / "model");
  fault_injection_pause();
  save_safetensors((tmp_dir / "optimizer.safetensors").string(), optimizer_state);
  write_json_file_atomic((tmp_dir / "trainer_state.json").string(), trainer_state);
  complete_checkpoint(tmp_dir, final_dir, step);
  const auto all = complete();
  for (size_t i = 0; i + static_cast<size_t>(keep_) < all.size(); ++i) fs::remove_all(all[i]);
}

void CheckpointManager::save_sharded(int64_t step, const ModelConfig& config,
                                     const std::map<std::string, std::vector<int64_t>>& shapes,
                                     const NamedTensors& slices, const std::map<std::string, int64_t>& first,
                                     const NamedTensors& extra, const nlohmann::json& trainer_state,
                                     Communicator& comm) const {
  const fs::path dir(directory_);
  const std::string name = step_name(step);
  const fs::path final_dir = dir / name;
  const fs::path tmp_dir = dir / (name + ".tmp");
  if (comm.rank() == 0) {
    fs::create_directories(dir);
    fs::remove_all(tmp_dir);
    fs::create_directories(tmp_dir / "shards");
  }
  comm.barrier();
  // Every rank writes its slices at once (temporary name, fsync, rename inside the .tmp directory).
  std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                 {"rank", std::to_string(comm.rank())},
                                                 {"world_size", std::to_string(comm.world_size())}};
  for (const auto& [parameter, element] : first) metadata["first." + parameter] = std::to_string(element);
  NamedTensors cpu;
  for (const auto& [key, tensor] : slices) cpu.push_back({key, tensor.detach().to(at::kCPU, at::kFloat).contiguous()});
  save_safetensors((tmp_dir / "shards" / shard_file_name(comm.rank())).string(), cpu, metadata);
  fault_injection_pause();
  comm.barrier();  // every shard is on disk
  if (comm.rank() == 0) {
    fsync_directory((tmp_dir / "shards").string());
    fs::create_directories(tmp_dir / "model");
    write_json_file_atomic((tmp_dir / "model" / "config.json").string(), model_config_to_hf_json(config, "float32"));
    copy_tokenizer_files(tokenizer_dir_, tmp_dir / "model");
    nlohmann::json sharding = {{"format", "phi-sharded"}, {"world_size", comm.world_size()}, {"shapes", shapes}};
    write_json_file_atomic((tmp_dir / "sharding.json").string(), sharding);
    save_safetensors((tmp_dir / "optimizer.safetensors").string(), extra);
    write_json_file_atomic((tmp_dir / "trainer_state.json").string(), trainer_state);
    complete_checkpoint(tmp_dir, final_dir, step);
    const auto all = complete();
    for (size_t i = 0; i + static_cast<size_t>(keep_) < all.size(); ++i) fs::remove_all(all[i]);
  }
  comm.barrier();  // no rank runs ahead of the last complete checkpoint
}

// ---- Sharded checkpoints, read back ----------------------------------------------------------

bool ShardedCheckpoint::is_sharded(const std::string& step_dir) {
  return fs::exists(fs::path(step_dir) / "sharding.json");
}

ShardedCheckpoint::ShardedCheckpoint(const std::string& step_dir) : directory_(step_dir) {
  const auto sharding_path = (fs::path(step_dir) / "sharding.json").string();
  const auto sharding = read_json_file(sharding_path);
  int64_t world = 0;
  try {
    world = sharding.at("world_size").get<int64_t>();
    shapes_ = sharding.at("shapes").get<std::map<std::string, std::vector<int64_t>>>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("malformed sharding map: ") + e.what(), sharding_path);
  }
  if (world < 1) throw Error("world_size must be >= 1", sharding_path);
  for (int64_t rank = 0; rank < world; ++rank) {
    const auto path = (fs::path(step_dir) / "shards" / shard_file_name(rank)).string();
    if (!fs::exists(path)) throw Error("rank " + std::to_string(rank) + "'s shard is missing", path);
    files_.push_back(SafetensorsFile::open(path));
    for (const auto& [key, value] : files_.back()->metadata()) {
      if (key.rfind("first.", 0) != 0) continue;
      const auto parameter = key.substr(6);
      if (!shapes_.count(parameter)) throw Error("slice of unknown parameter " + parameter, path);
      const auto& info = files_.back()->info(parameter);
      const int64_t length = info.shape.empty() ? 1 : info.shape[0];
      pieces_[parameter].push_back({files_.size() - 1, std::stoll(value), length});
    }
  }
}

const ShardedCheckpoint::Pieces::value_type* ShardedCheckpoint::find(const std::string& key) const {
  auto it = pieces_.find(key);
  if (it == pieces_.end() && key.find('.') != std::string::npos) it = pieces_.find(key.substr(0, key.rfind('.')));
  return it == pieces_.end() ? nullptr : &*it;
}

const ShardedCheckpoint::Pieces::value_type& ShardedCheckpoint::entry(const std::string& key) const {
  const auto* found = find(key);
  if (!found) throw Error("the sharded checkpoint holds no " + key, directory_);
  return *found;
}

bool ShardedCheckpoint::contains(const std::string& key) const {
  const auto* found = find(key);
  return found && std::any_of(found->second.begin(), found->second.end(),
                              [&](const Piece& p) { return files_[p.file]->contains(key); });
}

at::Tensor ShardedCheckpoint::read(const std::string& key, int64_t begin, int64_t length) const {
  const auto& [parameter, list] = entry(key);
  auto out = at::empty({length}, at::kFloat);
  int64_t covered = 0;
  for (const auto& p : list) {
    const int64_t from = std::max(begin, p.begin), to = std::min(begin + length, p.begin + p.length);
    if (to <= from) continue;
    const auto& file = *files_[p.file];
    if (!file.contains(key)) throw Error("the shard holding part of " + parameter + " has no " + key, file.path());
    out.narrow(0, from - begin, to - from).copy_(file.tensor(key).reshape({-1}).narrow(0, from - p.begin, to - from));
    covered += to - from;
  }
  if (covered != length) {
    throw Error("the shards cover " + std::to_string(covered) + " of elements [" + std::to_string(begin) + ", " +
                    std::to_string(begin + length) + ") of " + key,
                directory_, "the checkpoint is incomplete: resume from an earlier one");
  }
  return out;
}

at::Tensor ShardedCheckpoint::whole(const std::string& key) const {
  const auto& shape = shapes_.at(entry(key).first);
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  return read(key, 0, numel).view(shape);
}

Transformer ShardedCheckpoint::model(c10::Device device) const {
  auto config = load_directory_config((fs::path(directory_) / "model").string());
  ParameterMap parameters;
  for (const auto& [name, shape] : expected_parameters(config)) {
    if (!shapes_.count(name)) throw Error("the sharded checkpoint has no " + name, directory_);
    parameters.emplace(name, whole(name).to(device));
  }
  return Transformer(config, std::move(parameters));
}

Transformer load_checkpoint_model(const std::string& step_dir, c10::Device device) {
  if (ShardedCheckpoint::is_sharded(step_dir)) return ShardedCheckpoint(step_dir).model(device);
  LoadOptions load;
  load.device = device;
  return load_model((fs::path(step_dir) / "model").string(), load);
}

std::optional<CheckpointManager::Loaded> CheckpointManager::load_newest_usable(c10::Device device) const {
  const auto all = complete();
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      // A sharded checkpoint's files are opened once: for the model and for the optimizer's slices.
      std::shared_ptr<ShardedCheckpoint> sharded;
      if (ShardedCheckpoint::is_sharded(*it)) sharded = std::make_shared<ShardedCheckpoint>(*it);
      auto model = sharded ? sharded->model(device) : load_checkpoint_model(*it, device);
      if (!weights_finite(model)) throw Error("the checkpoint's weights are not all finite", *it);
      auto state = read_json_file((fs::path(*it) / "trainer_state.json").string());
      (void)state.at("step").get<int64_t>();
      (void)state.at("optimizer_steps").get<int64_t>();
      auto optimizer_state = TensorStore::open_file((fs::path(*it) / "optimizer.safetensors").string());
      return Loaded{*it, std::move(model), std::move(state), std::move(optimizer_state), std::move(sharded)};
    } catch (const std::exception& e) {
      spdlog::warn("--resume: checkpoint {} cannot be used ({}); trying the one before it", *it, e.what());
    }
  }
  return std::nullopt;
}

}  // namespace phi
