// The family registry and the reading of configs through it.
#include "phi/models/family.h"

#include <nlohmann/json.hpp>

#include "models/families/registry.h"
#include "phi/config/hf_config.h"
#include "phi/config/overrides.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"

namespace phi {

const std::vector<const FamilySpec*>& registered_families() {
#define PHI_FAMILY_ADDRESS(function) &function(),
  static const std::vector<const FamilySpec*> families = {PHI_FAMILIES(PHI_FAMILY_ADDRESS)};
#undef PHI_FAMILY_ADDRESS
  return families;
}

std::string family_names() {
  std::string names;
  for (const auto* f : registered_families()) names += (names.empty() ? "" : ", ") + f->name;
  return names;
}

namespace {
const FamilySpec* find_family(const std::string& name) {
  for (const auto* f : registered_families()) {
    if (f->name == name) return f;
  }
  return nullptr;
}
}  // namespace

const FamilySpec& family_spec(const std::string& name) {
  if (const auto* f = find_family(name)) return *f;
  throw Error("unknown model family \"" + name + "\"", "", "registered families: " + family_names());
}

ModelConfig model_config_from_hf_json(const nlohmann::json& j, const std::string& source) {
  JsonReader r(j, source);
  auto model_type = r.required<std::string>("model_type");
  const FamilySpec* family = nullptr;
  for (const auto* f : registered_families()) {
    if (f->hf_model_type == model_type && (!f->claims_hf_config || f->claims_hf_config(j))) {
      family = f;
      break;
    }
  }
  if (!family) {
    std::string types;
    for (const auto* f : registered_families()) {
      if (types.find(f->hf_model_type) == std::string::npos) types += (types.empty() ? "" : ", ") + f->hf_model_type;
    }
    r.fail("model_type", "\"" + model_type + "\" is not a phi model (expected " + types + ")");
  }
  ModelConfig c;
  c.family = family->name;
  family->read_hf_config(r, c);
  c.name = r.optional<std::string>("_name_or_path", model_type);
  if (c.name.empty()) c.name = model_type;
  c.bos_token_id = read_hf_token_id(r, "bos_token_id");
  c.eos_token_id = read_hf_token_id(r, "eos_token_id");
  c.pad_token_id = read_hf_token_id(r, "pad_token_id");
  c.hub_dtype = r.optional<std::string>("torch_dtype", r.optional<std::string>("dtype", "float32"));
  ignore_hf_bookkeeping_keys(r);
  warn_unused_hf_keys(r);
  c.validate(source);
  return c;
}

nlohmann::json model_config_to_hf_json(const ModelConfig& c, const std::string& torch_dtype) {
  const auto& family = family_spec(c.family);
  auto j = hf_common_keys(c, torch_dtype);
  j["model_type"] = family.hf_model_type;
  j["architectures"] = {family.hf_architecture};
  family.write_hf_config(c, j);
  return j;
}

ModelConfig load_model_config(const std::string& path, const std::vector<std::string>& overrides) {
  auto document = read_json_file(path);
  apply_overrides(document, overrides);
  if (document.is_object() && document.contains("model_type")) {
    return model_config_from_hf_json(document, path);
  }
  auto config = model_config_from_json(document, path);
  if (!find_family(config.family)) {
    throw Error("invalid model config: $.family has unknown value \"" + config.family + "\" (allowed: " +
                    family_names() + ")",
                path);
  }
  return config;
}

ModelConfig preset_model_config(const std::string& name, const std::vector<std::string>& overrides) {
  return load_model_config(preset_path(name), overrides);
}

}  // namespace phi
