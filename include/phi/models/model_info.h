// Sizes of a model: parameter count, bytes per dtype, KV-cache bytes per token.
#pragma once

#include <cstdint>

#include <nlohmann/json_fwd.hpp>

#include "phi/config/model_config.h"

namespace phi {

struct ModelInfo {
  int64_t n_parameters = 0;            // unique parameters (a tied lm_head counts once)
  int64_t n_embedding_parameters = 0;  // embedding (+ untied lm_head)
  int64_t kv_cache_values_per_token = 0;  // 2 * layers * kv_heads * head_dim
  int64_t bytes(int64_t bytes_per_value) const { return n_parameters * bytes_per_value; }
  int64_t kv_cache_bytes_per_token(int64_t bytes_per_value) const {
    return kv_cache_values_per_token * bytes_per_value;
  }
};

/// Computed from the config alone (the same shapes the model allocates).
ModelInfo model_info(const ModelConfig& config);
nlohmann::json model_info_to_json(const ModelConfig& config, const ModelInfo& info);

}  // namespace phi
