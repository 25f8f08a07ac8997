// Model families. What differs between phi-1/1.5/2, Phi-3 mini/medium, Phi-3-small, Phi-4-mini...
// beyond the numbers of ModelConfig (the HF config.json keys, the weight names, the default chat
// format, tokenizer extras) is one spec per family in its own file, src/models/families/<f>.cpp,
// and one line in the registry, src/models/families/registry.h. Configs are read through it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "phi/config/model_config.h"

namespace phi {

class JsonReader;
class HfWeightMap;

struct SpecialToken {
  std::string content;
  int64_t id = -1;
};

struct FamilySpec {
  std::string name;             // ModelConfig::family; "family" in the engine's JSON
  std::string models;           // the checkpoints it covers, for messages and `phi info`
  std::string hf_model_type;    // config.json "model_type"
  std::string hf_architecture;  // config.json "architectures"[0]
  /// For a family that shares its hf_model_type with another: true when a config.json of that
  /// type is this family's. Null: every config of the type not claimed by a family listed first.
  bool (*claims_hf_config)(const nlohmann::json& config) = nullptr;
  /// Reads the family's keys of a config.json (names, ids, dtype are read for every family).
  void (*read_hf_config)(JsonReader& r, ModelConfig& c) = nullptr;
  /// Writes the family's keys (model_type, architectures and hf_common_keys() are written for it).
  void (*write_hf_config)(const ModelConfig& c, nlohmann::json& j) = nullptr;
  /// Hugging Face weight names <-> canonical parameters (phi/models/weight_map.h).
  const HfWeightMap* weight_map = nullptr;
  /// The built-in chat format (phi/infer/chat_template.h) for checkpoints that carry none.
  std::string chat_template;
  /// Special tokens added to a bare tiktoken ranks file (which lists none), and the id that is
  /// both bos and eos; empty for families whose tokenizer files declare their specials.
  std::vector<SpecialToken> tiktoken_specials;
  int64_t tiktoken_bos_eos = -1;
};

/// The registered families, in lookup order.
const std::vector<const FamilySpec*>& registered_families();
/// The family named `name`; throws naming the registered families.
const FamilySpec& family_spec(const std::string& name);
/// Comma-separated names of the registered families (for messages and help).
std::string family_names();

/// Reads a Hugging Face config.json: the family is chosen by model_type (and, for families that
/// share one, the family's claim); keys that do not change the math are accepted, keys the engine
/// does not know are logged as warnings.
ModelConfig model_config_from_hf_json(const nlohmann::json& j, const std::string& source);
/// Writes a Hugging Face config.json that transformers loads back (phi3small without its
/// remote-code class).
nlohmann::json model_config_to_hf_json(const ModelConfig& config, const std::string& torch_dtype);

/// Loads a config from a file: the engine's format, or a Hugging Face config.json (detected by
/// model_type); `--set` overrides are applied to the JSON first; the family must be registered.
ModelConfig load_model_config(const std::string& path, const std::vector<std::string>& overrides = {});
/// A preset (configs/models/NAME.json) with `--set` overrides applied to its JSON.
ModelConfig preset_model_config(const std::string& name, const std::vector<std::string>& overrides = {});

}  // namespace phi
