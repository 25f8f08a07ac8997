// The family-independent mechanics of Hugging Face config.json files (phi/config/hf_config.h).
// Each family's own keys are read and written in its file under src/models/families/.
#include "phi/config/hf_config.h"

#include <cmath>

#include <spdlog/spdlog.h>

#include "phi/core/error.h"

namespace phi {

void ignore_hf_bookkeeping_keys(JsonReader& r) {
  r.ignore({"architectures", "auto_map", "transformers_version", "torch_dtype", "dtype", "use_cache",
            "initializer_range", "attention_dropout", "resid_pdrop", "embd_pdrop", "model_type",
            "_name_or_path", "return_dict", "output_attentions", "output_hidden_states",
            "tokenizer_class", "pruned_heads", "chunk_size_feed_forward", "is_encoder_decoder",
            "id2label", "label2id", "problem_type", "embedding_dropout_prob",
            "attention_dropout_prob", "ffn_dropout_prob", "layer_norm_epsilon_unused",
            "reorder_and_upcast_attn", "pad_sequence_to_multiple_of_64",
            "blocksparse_triton_kernel_block_size", "initializer_range", "ff_dim_multiplier",
            "gegelu_pad_to_256", "attention_bias", "qk_layernorm", "rope_position_scale",
            "mup_use_scaling", "lm_head_bias_unused", "quantization_config"});
}

void warn_unused_hf_keys(const JsonReader& r) {
  for (const auto& key : r.unread_keys()) {
    spdlog::warn("{}: Hugging Face config key $.{} is not used by phi-engine", r.source(), key);
  }
}

HfRope read_hf_rope(JsonReader& r, double default_partial) {
  HfRope rope;
  rope.partial_rotary_factor = default_partial;
  if (r.has_value("rope_parameters")) {
    auto p = r.child("rope_parameters");
    rope.theta = p.optional<double>("rope_theta", rope.theta);
    rope.partial_rotary_factor = p.optional<double>("partial_rotary_factor", rope.partial_rotary_factor);
    std::string type = p.optional<std::string>("rope_type", p.optional<std::string>("type", "default"));
    if (type != "default") rope.scaling = r.raw("rope_parameters");
  } else {
    r.ignore({"rope_parameters"});
  }
  rope.theta = r.optional<double>("rope_theta", rope.theta);
  rope.partial_rotary_factor = r.optional<double>("partial_rotary_factor", rope.partial_rotary_factor);
  if (r.has_value("rope_scaling")) {
    rope.scaling = r.raw("rope_scaling");
  } else {
    r.ignore({"rope_scaling"});
  }
  return rope;
}

int64_t read_hf_token_id(JsonReader& r, const char* key) {
  if (!r.has_value(key)) {
    r.ignore({key});
    return -1;
  }
  const auto& v = r.raw(key);
  if (v.is_array()) return v.empty() ? -1 : v[0].get<int64_t>();  // generation lists: the first
  if (!v.is_number_integer()) r.fail(key, "must be an integer token id");
  return v.get<int64_t>();
}

void read_hf_long_rope(ModelConfig& c, const nlohmann::json& scaling, const std::string& source,
                       const std::string& path, int64_t top_level_original, LongRopeScaleRule rule) {
  JsonReader s(scaling, source, path);
  std::string type = s.optional<std::string>("rope_type", s.optional<std::string>("type", ""));
  if (type != "longrope" && type != "su") {
    s.fail("rope_type", "\"" + type + "\" is not supported (phi models use longrope / su)");
  }
  c.use_long_rope = true;
  c.long_rope.short_factor = s.required<std::vector<double>>("short_factor");
  c.long_rope.long_factor = s.required<std::vector<double>>("long_factor");
  const size_t half = static_cast<size_t>(c.rotary_dim / 2);
  for (const char* key : {"short_factor", "long_factor"}) {
    const auto& factors = std::string(key) == "short_factor" ? c.long_rope.short_factor : c.long_rope.long_factor;
    if (factors.size() != half) {
      s.fail(key, "must have rotary_dim/2 = " + std::to_string(half) + " values, got " +
                      std::to_string(factors.size()));
    }
  }
  c.long_rope.original_max_position_embeddings =
      s.optional<int64_t>("original_max_position_embeddings", top_level_original);
  if (c.long_rope.original_max_position_embeddings <= 0) {
    s.fail("original_max_position_embeddings", "is required for LongRoPE");
  }
  const double original = static_cast<double>(c.long_rope.original_max_position_embeddings);
  double factor = s.optional<double>("factor", static_cast<double>(c.max_position_embeddings) / original);
  double formula = factor <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(factor) / std::log(original));
  s.ignore({"rope_theta", "partial_rotary_factor"});
  if (rule == LongRopeScaleRule::kShortLongMscale) {
    double short_mscale = s.optional<double>("short_mscale", -1.0);
    double long_mscale = s.optional<double>("long_mscale", -1.0);
    c.long_rope.short_mscale = short_mscale > 0 ? short_mscale : 1.0;
    c.long_rope.long_mscale = long_mscale > 0 ? long_mscale : formula;
  } else {
    double attention_factor = s.optional<double>("attention_factor", formula);
    c.long_rope.short_mscale = attention_factor;
    c.long_rope.long_mscale = attention_factor;
  }
  for (const auto& key : s.unread_keys()) {
    spdlog::warn("{}: {}.{} is not used by phi-engine", source, path, key);
  }
}

int64_t read_hf_head_count(JsonReader& r, int64_t hidden_size) {
  const auto heads = r.required<int64_t>("num_attention_heads");
  if (heads <= 0) r.fail("num_attention_heads", "must be > 0, got " + std::to_string(heads));
  if (hidden_size <= 0) r.fail("hidden_size", "must be > 0, got " + std::to_string(hidden_size));
  if (hidden_size % heads != 0 && !r.has_value("head_dim")) {
    r.fail("num_attention_heads", "(" + std::to_string(heads) + ") must divide hidden_size (" + std::to_string(hidden_size) + ")");
  }
  return heads;
}

void read_hf_sizes(JsonReader& r, ModelConfig& c, bool head_dim_key) {
  c.vocab_size = r.required<int64_t>("vocab_size");
  c.hidden_size = r.required<int64_t>("hidden_size");
  c.n_layers = r.required<int64_t>("num_hidden_layers");
  c.n_heads = read_hf_head_count(r, c.hidden_size);
  c.n_kv_heads = r.optional<int64_t>("num_key_value_heads", c.n_heads);
  c.head_dim = head_dim_key ? r.optional<int64_t>("head_dim", c.hidden_size / c.n_heads) : c.hidden_size / c.n_heads;
}

int64_t rotary_dim_from_factor(int64_t head_dim, double partial) {
  return static_cast<int64_t>(static_cast<double>(head_dim) * partial);
}

nlohmann::json hf_common_keys(const ModelConfig& c, const std::string& torch_dtype) {
  nlohmann::json j;
  auto token = [](int64_t id) { return id < 0 ? nlohmann::json(nullptr) : nlohmann::json(id); };
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["bos_token_id"] = token(c.bos_token_id);
  j["eos_token_id"] = token(c.eos_token_id);
  j["pad_token_id"] = token(c.pad_token_id);
  j["torch_dtype"] = torch_dtype;
  j["tie_word_embeddings"] = c.tie_embeddings;
  return j;
}

}  // namespace phi
