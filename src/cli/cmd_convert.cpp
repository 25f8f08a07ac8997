// phi convert --from DIR --to DIR [--dtype bf16] [--max-shard-size 2GB]
// DIR may also be a training checkpoint (RUN/checkpoints/step-N), whole or sharded by ranks.
#include <cstdint>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "phi/core/error.h"
#include "phi/models/model_loader.h"
#include "phi/train/checkpoint.h"

namespace phi::cli {

namespace {
struct ConvertOptions {
  std::string from;
  std::string to;
  std::string dtype;
  std::string max_shard_size = "0";
};

// "0", "123", "500MB", "2GB", "64KiB" -> bytes.
uint64_t parse_size(const std::string& text) {
  size_t pos = 0;
  uint64_t value = 0;
  try {
    value = std::stoull(text, &pos);
  } catch (const std::exception&) {
    throw Error("malformed size \"" + text + "\"", "--max-shard-size", "write e.g. 2GB, 500MB or 0");
  }
  std::string unit = text.substr(pos);
  const std::pair<const char*, uint64_t> units[] = {
      {"", 1}, {"B", 1}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000ull * 1000 * 1000},
      {"KiB", 1024}, {"MiB", 1024 * 1024}, {"GiB", 1024ull * 1024 * 1024}};
  for (const auto& [name, scale] : units) {
    if (unit == name) return value * scale;
  }
  throw Error("unknown size unit \"" + unit + "\"", "--max-shard-size", "use B, KB, MB, GB, KiB, MiB or GiB");
}

// Files a model directory carries besides weights and config.json.
const char* kCompanionFiles[] = {"generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                 "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
                                 "vocab.json", "merges.txt"};

int run_convert(const ConvertOptions& o) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(o.to) && fs::equivalent(o.from, o.to, ec)) {
    throw Error("--to is the same directory as --from", o.to, "write the converted model elsewhere");
  }
  // A training checkpoint: its model directory, or (sharded by ranks) its slices assembled.
  const bool checkpoint = fs::exists(fs::path(o.from) / "trainer_state.json");
  const auto model_dir = checkpoint ? (fs::path(o.from) / "model").string() : o.from;
  LoadOptions load;
  auto config = load_directory_config(model_dir);
  load.dtype = parse_dtype(o.dtype.empty() ? config.hub_dtype : o.dtype);
  auto model = checkpoint ? load_checkpoint_model(o.from) : load_model(o.from, load);
  save_model(model, o.to, load.dtype, parse_size(o.max_shard_size));
  for (const char* name : kCompanionFiles) {
    auto source = fs::path(model_dir) / name;
    if (fs::exists(source)) fs::copy_file(source, fs::path(o.to) / name, fs::copy_options::overwrite_existing);
  }
  spdlog::info("converted {} -> {} ({})", o.from, o.to, dtype_name(load.dtype));
  return 0;
}
}  // namespace

void add_convert_command(CLI::App& root, Runner& run) {
  auto o = std::make_shared<ConvertOptions>();
  auto* cmd = root.add_subcommand("convert", "Re-write a Hugging Face checkpoint (dtype, sharding) through the engine");
  cmd->add_option("--from", o->from, "source model directory, or a training checkpoint (step-N)")->required();
  cmd->add_option("--to", o->to, "output model directory (created)")->required();
  cmd->add_option("--dtype", o->dtype, "f32, f16 or bf16 (default: the checkpoint's dtype)");
  cmd->add_option("--max-shard-size", o->max_shard_size, "shard past this size, e.g. 2GB (0: one file)")
      ->capture_default_str();
  cmd->callback([&run, o]() { run = [o]() { return run_convert(*o); }; });
}

}  // namespace phi::cli
