#include "cli/model_source.h"

#include "phi/core/error.h"
#include "phi/models/family.h"
#include "phi/models/model_loader.h"

namespace phi::cli {

void add_model_source_options(CLI::App* cmd, ModelSourceOptions& options, const std::string& path_flag,
                              const std::string& path_help, bool path_is_directory) {
  options.path_flag = path_flag;
  options.path_is_directory = path_is_directory;
  auto* preset = cmd->add_option("--preset", options.preset, "a built-in preset (configs/models/NAME.json)");
  auto* path = cmd->add_option(path_flag, options.path, path_help);
  preset->excludes(path);
  cmd->add_option("--set", options.overrides, "override a config value: --set key=value (repeatable)");
}

ModelConfig resolve_model_config(const ModelSourceOptions& options) {
  if (!options.preset.empty()) return preset_model_config(options.preset, options.overrides);
  if (options.path.empty()) {
    throw Error("no model given", "", "pass --preset NAME or " + options.path_flag + " PATH");
  }
  return options.path_is_directory ? load_directory_config(options.path, options.overrides)
                                   : load_model_config(options.path, options.overrides);
}

}  // namespace phi::cli
