// phi info --preset NAME | --model DIR [--ranks N] [--json]; phi info --kernels [--json]
#include <iostream>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/model_source.h"
#include "phi/config/model_config.h"
#include "phi/core/error.h"
#include "phi/kernels/cuda_kernels.h"
#include "phi/kernels/verified.h"
#include "phi/models/model_info.h"
#include "phi/models/model_loader.h"
#include "phi/train/trainer.h"

namespace phi::cli {

namespace {
struct InfoOptions {
  ModelSourceOptions source;
  bool json = false;
  bool kernels = false;
  int64_t ranks = 0;  // > 0: the training-state bytes per rank of each strategy on this many ranks
};

// The CUDA kernels' verification table (phi/kernels/verified.h): one tab-separated line each
// (name, verified | unverified, GPU test, what), or JSON; scripts/gpu_check.sh reads it.
int print_kernels(bool json) {
  nlohmann::json table = nlohmann::json::array();
  for (const auto& k : verified::kKernels) {
    if (json) {
      table.push_back({{"name", k.name}, {"verified", k.verified}, {"gpu_test", k.gpu_test}, {"what", k.what}});
    } else {
      std::cout << k.name << '\t' << (k.verified ? "verified" : "unverified") << '\t' << k.gpu_test << '\t' << k.what
                << '\n';
    }
  }
  if (json) std::cout << nlohmann::json{{"cuda_kernels_compiled", cuda_kernels_compiled()}, {"kernels", table}}.dump(2)
                      << std::endl;
  return 0;
}

std::string with_commas(int64_t value) {
  std::string digits = std::to_string(value);
  std::string out;
  int count = 0;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (count && count % 3 == 0 && *it != '-') out.insert(out.begin(), ',');
    out.insert(out.begin(), *it);
    ++count;
  }
  return out;
}

std::string human_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.2f} {}", value, units[unit]);
}

int run_info(const InfoOptions& o) {
  if (o.kernels) return print_kernels(o.json);
  auto config = resolve_model_config(o.source);
  auto info = model_info(config);
  std::optional<TrainingMemoryEstimate> memory;
  if (o.ranks > 0) memory = estimate_training_memory(config, OptimizerConfig{}, o.ranks);
  if (o.json) {
    auto j = model_info_to_json(config, info);
    if (memory) {
      j["training_memory"] = {{"ranks", memory->world},           {"optimizer", "adamw"},
                              {"bytes_per_parameter", memory->bytes_per_parameter},
                              {"ddp_bytes", memory->ddp},         {"zero1_bytes", memory->zero1},
                              {"fsdp_bytes", memory->fsdp},       {"fsdp_gathered_bytes", memory->fsdp_gathered}};
    }
    std::cout << j.dump(2) << std::endl;
    return 0;
  }
  std::cout << fmt::format("model:              {} (family {}, {} block, {}, {})\n", config.name,
                           config.family, to_string(config.block_style),
                           to_string(config.norm), to_string(config.mlp));
  std::cout << fmt::format("layers x hidden:    {} x {} (intermediate {})\n", config.n_layers,
                           config.hidden_size, config.intermediate_size);
  std::cout << fmt::format("heads:              {} query, {} key/value, head_dim {}, rotary {}\n",
                           config.n_heads, config.n_kv_heads, config.head_dim, config.rotary_dim);
  std::cout << fmt::format("vocab / context:    {} / {}\n", config.vocab_size,
                           config.max_position_embeddings);
  std::cout << fmt::format("parameters:         {}\n", with_commas(info.n_parameters));
  std::cout << fmt::format("bytes float32:      {} ({})\n", with_commas(info.bytes(4)), human_bytes(info.bytes(4)));
  std::cout << fmt::format("bytes bf16/f16:     {} ({})\n", with_commas(info.bytes(2)), human_bytes(info.bytes(2)));
  std::cout << fmt::format("KV cache per token: {} bytes bf16/f16, {} bytes float32\n",
                           with_commas(info.kv_cache_bytes_per_token(2)),
                           with_commas(info.kv_cache_bytes_per_token(4)));
  if (memory) {
    auto size = [](double b) { return human_bytes(static_cast<int64_t>(b)); };
    std::cout << fmt::format("training state per rank of {} (AdamW, float32 master weights and gradients; "
                             "activations not counted):\n", memory->world);
    std::cout << fmt::format("  ddp               {}\n", size(memory->ddp));
    std::cout << fmt::format("  zero1             {}\n", size(memory->zero1));
    std::cout << fmt::format("  fsdp              {} + {} gathered at most\n", size(memory->fsdp),
                             size(memory->fsdp_gathered));
  }
  return 0;
}
}  // namespace

void add_info_command(CLI::App& root, Runner& run) {
  auto options = std::make_shared<InfoOptions>();
  auto* cmd = root.add_subcommand("info", "Parameter count, bytes per dtype and KV-cache bytes per token");
  add_model_source_options(cmd, options->source, "--model", "a model directory with config.json", true);
  cmd->add_flag("--json", options->json, "print JSON");
  cmd->add_option("--ranks", options->ranks,
                  "also print the training-state bytes per rank of ddp, zero1 and fsdp on this many ranks")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--kernels", options->kernels,
                "print which CUDA kernels have passed their GPU test (phi/kernels/verified.h) instead");
  cmd->callback([&run, options]() { run = [options]() { return run_info(*options); }; });
}

}  // namespace phi::cli
