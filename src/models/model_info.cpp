#include "phi/models/model_info.h"

#include <nlohmann/json.hpp>

#include "phi/models/transformer.h"

namespace phi {

ModelInfo model_info(const ModelConfig& config) {
  ModelInfo info;
  for (const auto& [name, shape] : expected_parameters(config)) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    info.n_parameters += n;
    if (name == "embed.weight" || name == "lm_head.weight") info.n_embedding_parameters += n;
  }
  info.kv_cache_values_per_token = 2 * config.n_layers * config.n_kv_heads * config.head_dim;
  return info;
}

nlohmann::json model_info_to_json(const ModelConfig& config, const ModelInfo& info) {
  nlohmann::json j;
  j["name"] = config.name;
  j["family"] = config.family;
  j["parameters"] = info.n_parameters;
  j["embedding_parameters"] = info.n_embedding_parameters;
  j["bytes"] = {{"float32", info.bytes(4)}, {"float16", info.bytes(2)}, {"bfloat16", info.bytes(2)}};
  j["kv_cache_bytes_per_token"] = {{"float32", info.kv_cache_bytes_per_token(4)},
                                   {"float16", info.kv_cache_bytes_per_token(2)},
                                   {"bfloat16", info.kv_cache_bytes_per_token(2)}};
  j["config"] = model_config_to_json(config);
  return j;
}

}  // namespace phi
