// The options that say which model config a command uses: --preset NAME or a path, plus --set.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "phi/config/model_config.h"

namespace phi::cli {

struct ModelSourceOptions {
  std::string preset;
  std::string path;        // a model directory (with config.json) or a config file
  bool path_is_directory = true;
  std::string path_flag;   // "--model" or "--config", for messages
  std::vector<std::string> overrides;
};

/// Adds --preset and `path_flag` (mutually exclusive) and --set to `cmd`.
void add_model_source_options(CLI::App* cmd, ModelSourceOptions& options, const std::string& path_flag,
                              const std::string& path_help, bool path_is_directory);

/// The config the options name, overrides applied; an error when neither source was given.
ModelConfig resolve_model_config(const ModelSourceOptions& options);

}  // namespace phi::cli
