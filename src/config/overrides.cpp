#include "phi/config/overrides.h"

#include <nlohmann/json.hpp>

#include "phi/core/error.h"

namespace phi {

void apply_overrides(nlohmann::json& document, const std::vector<std::string>& assignments) {
  for (const auto& assignment : assignments) {
    auto eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw Error("malformed override \"" + assignment + "\"", "--set",
                  "write overrides as --set path.to.key=value");
    }
    std::string path = assignment.substr(0, eq);
    std::string text = assignment.substr(eq + 1);
    nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) value = text;

    nlohmann::json* node = &document;
    std::string walked = "$";
    size_t start = 0;
    while (true) {
      auto dot = path.find('.', start);
      std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (key.empty()) {
        throw Error("malformed override path \"" + path + "\" (empty key)", "--set " + assignment);
      }
      if (!node->is_object()) {
        throw Error(walked + " is not an object, cannot set " + walked + "." + key,
                    "--set " + assignment);
      }
      walked += "." + key;
      if (dot == std::string::npos) {
        (*node)[key] = value;
        break;
      }
      if (!node->contains(key)) {
        throw Error("no such section " + walked, "--set " + assignment,
                    "check the key path against docs/configs.md");
      }
      node = &(*node)[key];
      start = dot + 1;
    }
  }
}

}  // namespace phi
