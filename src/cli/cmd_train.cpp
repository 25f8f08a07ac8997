// phi train --config configs/train/X.json [--set a.b=v ...] [--resume]
#include <iostream>

#include "cli/commands.h"
#include "phi/train/trainer.h"

namespace phi::cli {

namespace {
struct TrainOptions {
  std::string config;
  std::vector<std::string> overrides;
  bool resume = false;
  bool dry_run = false;
};
}  // namespace

void add_train_command(CLI::App& root, Runner& run) {
  auto o = std::make_shared<TrainOptions>();
  auto* cmd = root.add_subcommand("train", "Train or fine-tune from a JSON recipe (configs/train/*.json)");
  cmd->add_option("--config", o->config, "the recipe")->required();
  cmd->add_option("--set", o->overrides, "override a recipe value: --set training.max_steps=10 (repeatable)");
  cmd->add_flag("--resume", o->resume, "continue from the newest complete checkpoint of the run directory");
  cmd->add_flag("--dry-run", o->dry_run, "check the recipe and print it resolved, without training");
  cmd->callback([&run, o]() {
    run = [o]() {
      auto config = load_train_config(o->config, o->overrides);
      if (o->dry_run) {
        std::cout << train_config_to_json(config).dump(2) << std::endl;
        return 0;
      }
      train(config, o->resume);
      return 0;
    };
  });
}

}  // namespace phi::cli
