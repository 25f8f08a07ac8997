// The shared mechanics of Hugging Face config.json files, used by every model family's reader and
// writer (src/models/families/): rope settings in `rope_scaling` (old) or `rope_parameters`
// (transformers >= 5), LongRoPE, head counts checked before division, token ids, bookkeeping keys.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "phi/config/model_config.h"
#include "phi/core/json_reader.h"

namespace phi {

/// Marks the keys that never change the math of inference (dropouts, init, caching, bookkeeping).
void ignore_hf_bookkeeping_keys(JsonReader& r);
/// Logs a warning for each key no reader used.
void warn_unused_hf_keys(const JsonReader& r);

/// Rope settings: transformers >= 5 writes `rope_parameters`, older files `rope_theta`,
/// `partial_rotary_factor` and `rope_scaling` at the top level.
struct HfRope {
  double theta = 10000.0;
  double partial_rotary_factor = 1.0;
  nlohmann::json scaling;  // null when none
};
HfRope read_hf_rope(JsonReader& r, double default_partial_rotary_factor);

/// How a family's remote code fills in LongRoPE magnitudes that the file leaves out.
enum class LongRopeScaleRule {
  kAttentionFactor,  // Phi-3 mini/medium (transformers): one `attention_factor` for both sets
  kShortLongMscale,  // Phi-3-small: short_mscale 1, long_mscale by the formula, unless given
};
/// LongRoPE from `scaling` (a `rope_scaling` / `rope_parameters` object at `path`) into `c`;
/// c.rotary_dim and c.max_position_embeddings must be set.
void read_hf_long_rope(ModelConfig& c, const nlohmann::json& scaling, const std::string& source,
                       const std::string& path, int64_t top_level_original, LongRopeScaleRule rule);

/// The sizes every family's config.json names alike: vocab_size, hidden_size, num_hidden_layers,
/// num_attention_heads, num_key_value_heads (default: the heads) and, when `head_dim_key`, head_dim
/// (default and otherwise: hidden_size / heads). The MLP width and context keys differ by family.
void read_hf_sizes(JsonReader& r, ModelConfig& c, bool head_dim_key);
/// num_attention_heads, checked before hidden_size is divided by it (a 0 would be a SIGFPE).
int64_t read_hf_head_count(JsonReader& r, int64_t hidden_size);
int64_t rotary_dim_from_factor(int64_t head_dim, double partial_rotary_factor);
/// A token id key: an integer, a list (generation configs: the first) or null (-1).
int64_t read_hf_token_id(JsonReader& r, const char* key);
/// The keys every family writes the same way (sizes, token ids, dtype, tying).
nlohmann::json hf_common_keys(const ModelConfig& c, const std::string& torch_dtype);

}  // namespace phi
