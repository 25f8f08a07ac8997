// Presets are the JSON files in configs/models/; this file finds them and loads configs from disk.
#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "phi/config/model_config.h"
#include "phi/config/overrides.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"

#ifndef PHI_SOURCE_CONFIG_DIR
#define PHI_SOURCE_CONFIG_DIR "configs"
#endif

namespace phi {

std::string preset_directory() {
  if (const char* env = std::getenv("PHI_CONFIG_DIR")) return std::string(env) + "/models";
  return std::string(PHI_SOURCE_CONFIG_DIR) + "/models";
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(preset_directory(), ec)) {
    if (entry.path().extension() == ".json") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string preset_path(const std::string& name) {
  auto path = preset_directory() + "/" + name + ".json";
  if (!std::filesystem::exists(path)) {
    std::string available;
    for (const auto& n : preset_names()) available += (available.empty() ? "" : ", ") + n;
    throw Error("unknown preset \"" + name + "\"", path,
                "available presets: " + (available.empty() ? "(none found; set PHI_CONFIG_DIR)" : available));
  }
  return path;
}

ModelConfig preset_model_config(const std::string& name, const std::vector<std::string>& overrides) {
  return load_model_config(preset_path(name), overrides);
}

ModelConfig load_model_config(const std::string& path, const std::vector<std::string>& overrides) {
  auto document = read_json_file(path);
  apply_overrides(document, overrides);
  if (document.is_object() && document.contains("model_type")) {
    return model_config_from_hf_json(document, path);
  }
  return model_config_from_json(document, path);
}

}  // namespace phi
