// phi init --preset NAME | --config FILE --output DIR [--seed N] [--dtype f32] [--set k=v]
// Writes a freshly initialised model as a Hugging Face checkpoint directory.
#include <cstdint>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/model_source.h"
#include "phi/core/error.h"
#include "phi/models/model_info.h"
#include "phi/models/model_loader.h"
#include "phi/models/transformer.h"

namespace phi::cli {

namespace {
struct InitOptions {
  ModelSourceOptions source;
  std::string output;
  uint64_t seed = 0;
  double init_std = 0.02;
  std::string dtype = "f32";
};

int run_init(const InitOptions& o) {
  auto config = resolve_model_config(o.source);
  const auto dtype = parse_dtype(o.dtype);
  auto model = Transformer::random(config, o.seed, at::kFloat, o.init_std);
  save_model(model, o.output, dtype);
  spdlog::info("wrote {} ({} parameters, seed {}) to {}", config.name, model_info(config).n_parameters, o.seed,
               o.output);
  return 0;
}
}  // namespace

void add_init_command(CLI::App& root, Runner& run) {
  auto o = std::make_shared<InitOptions>();
  auto* cmd = root.add_subcommand("init", "Write a randomly initialised model as a Hugging Face checkpoint");
  add_model_source_options(cmd, o->source, "--config", "a model config file (engine JSON or HF config.json)",
                           false);
  cmd->add_option("--output", o->output, "output model directory")->required();
  cmd->add_option("--seed", o->seed, "initialisation seed")->capture_default_str();
  cmd->add_option("--init-std", o->init_std, "standard deviation of the normal init")->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "stored dtype: f32, f16, bf16")->capture_default_str();
  cmd->callback([&run, o]() { run = [o]() { return run_init(*o); }; });
}

}  // namespace phi::cli
