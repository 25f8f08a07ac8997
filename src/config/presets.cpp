// Presets are the JSON files in configs/models/; this file finds them (phi/models/family.h loads them).
#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "phi/config/model_config.h"
#include "phi/core/error.h"

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

}  // namespace phi
