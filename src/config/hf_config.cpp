// Hugging Face config.json <-> ModelConfig. Family quirks of the config files live here:
// rope settings in `rope_scaling` (old) or `rope_parameters` (transformers >= 5), LongRoPE's
// attention factor, Phi-3-small's muP and blocksparse keys.
#include <cmath>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "phi/config/model_config.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"

namespace phi {

namespace {

// Keys that never change the math of inference (dropouts, init, caching, bookkeeping).
void ignore_bookkeeping_keys(JsonReader& r) {
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

void warn_unknown(const JsonReader& r) {
  for (const auto& key : r.unread_keys()) {
    spdlog::warn("{}: Hugging Face config key $.{} is not used by phi-engine", r.source(), key);
  }
}

// The rope settings: transformers >= 5 writes `rope_parameters`, older files `rope_theta`,
// `partial_rotary_factor` and `rope_scaling` at the top level.
struct HfRope {
  double theta = 10000.0;
  double partial_rotary_factor = 1.0;
  nlohmann::json scaling;  // null when none
};

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

int64_t optional_token_id(JsonReader& r, const char* key) {
  if (!r.has_value(key)) {
    r.ignore({key});
    return -1;
  }
  const auto& v = r.raw(key);
  if (v.is_array()) return v.empty() ? -1 : v[0].get<int64_t>();  // generation lists: the first
  if (!v.is_number_integer()) r.fail(key, "must be an integer token id");
  return v.get<int64_t>();
}

// LongRoPE from `rope_scaling` / `rope_parameters`. `phi3small_defaults`: Phi-3-small's remote
// code leaves the short factors unscaled unless short_mscale is given.
void read_long_rope(ModelConfig& c, const nlohmann::json& scaling, const std::string& source,
                    const std::string& path, int64_t top_level_original, bool phi3small_defaults) {
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
  if (phi3small_defaults) {
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

// num_attention_heads, checked before hidden_size is divided by it (a 0 would be a SIGFPE).
int64_t read_head_count(JsonReader& r, int64_t hidden_size) {
  const auto heads = r.required<int64_t>("num_attention_heads");
  if (heads <= 0) r.fail("num_attention_heads", "must be > 0, got " + std::to_string(heads));
  if (hidden_size <= 0) r.fail("hidden_size", "must be > 0, got " + std::to_string(hidden_size));
  if (hidden_size % heads != 0 && !r.has_value("head_dim")) {
    r.fail("num_attention_heads", "(" + std::to_string(heads) + ") must divide hidden_size (" + std::to_string(hidden_size) + ")");
  }
  return heads;
}

int64_t rotary_dim_from_factor(int64_t head_dim, double partial) {
  return static_cast<int64_t>(static_cast<double>(head_dim) * partial);
}

ModelConfig from_hf_phi(JsonReader& r) {
  ModelConfig c;
  c.family = Family::kPhi;
  c.block_style = BlockStyle::kParallel;
  c.norm = NormKind::kLayerNorm;
  c.mlp = MlpKind::kGeluNew;
  auto act = r.optional<std::string>("hidden_act", "gelu_new");
  if (act != "gelu_new") r.fail("hidden_act", "\"" + act + "\" is not supported (phi uses gelu_new)");
  c.vocab_size = r.required<int64_t>("vocab_size");
  c.hidden_size = r.required<int64_t>("hidden_size");
  c.intermediate_size = r.required<int64_t>("intermediate_size");
  c.n_layers = r.required<int64_t>("num_hidden_layers");
  c.n_heads = read_head_count(r, c.hidden_size);
  c.n_kv_heads = r.optional<int64_t>("num_key_value_heads", c.n_heads);
  c.head_dim = r.optional<int64_t>("head_dim", c.hidden_size / c.n_heads);
  c.max_position_embeddings = r.optional<int64_t>("max_position_embeddings", 2048);
  c.norm_eps = r.optional<double>("layer_norm_eps", 1e-5);
  auto rope = read_hf_rope(r, 0.5);
  c.rope_theta = rope.theta;
  c.rotary_dim = rotary_dim_from_factor(c.head_dim, rope.partial_rotary_factor);
  if (!rope.scaling.is_null()) {
    throw Error("rope scaling is not supported for model_type phi", r.source());
  }
  if (r.optional<bool>("qk_layernorm", false)) r.fail("qk_layernorm", "= true is not supported");
  c.qkv_bias = c.attn_out_bias = c.mlp_bias = c.lm_head_bias = true;
  c.tie_embeddings = r.optional<bool>("tie_word_embeddings", false);
  if (c.tie_embeddings) r.fail("tie_word_embeddings", "= true is not supported for phi (lm_head has a bias)");
  return c;
}

ModelConfig from_hf_phi3(JsonReader& r) {
  ModelConfig c;
  c.family = Family::kPhi3;
  c.block_style = BlockStyle::kSequential;
  c.norm = NormKind::kRmsNorm;
  c.mlp = MlpKind::kSwiGlu;
  auto act = r.optional<std::string>("hidden_act", "silu");
  if (act != "silu") r.fail("hidden_act", "\"" + act + "\" is not supported (Phi-3 uses silu)");
  c.vocab_size = r.required<int64_t>("vocab_size");
  c.hidden_size = r.required<int64_t>("hidden_size");
  c.intermediate_size = r.required<int64_t>("intermediate_size");
  c.n_layers = r.required<int64_t>("num_hidden_layers");
  c.n_heads = read_head_count(r, c.hidden_size);
  c.n_kv_heads = r.optional<int64_t>("num_key_value_heads", c.n_heads);
  c.head_dim = r.optional<int64_t>("head_dim", c.hidden_size / c.n_heads);
  c.max_position_embeddings = r.optional<int64_t>("max_position_embeddings", 4096);
  c.norm_eps = r.optional<double>("rms_norm_eps", 1e-5);
  c.sliding_window = r.optional<int64_t>("sliding_window", 0);
  auto original = r.optional<int64_t>("original_max_position_embeddings", c.max_position_embeddings);
  auto rope = read_hf_rope(r, 1.0);
  c.rope_theta = rope.theta;
  c.rotary_dim = rotary_dim_from_factor(c.head_dim, rope.partial_rotary_factor);
  if (!rope.scaling.is_null()) {
    read_long_rope(c, rope.scaling, r.source(), "$.rope_scaling", original, false);
  }
  c.tie_embeddings = r.optional<bool>("tie_word_embeddings", false);
  return c;
}

// The dummy token ids of Phi-3-small's tokenizer whose logits are masked (docs/phi_family.md §7.3).
std::vector<int64_t> phi3small_masked_ids(int64_t vocab_size) {
  std::vector<int64_t> ids = {100256, 100258, 100259, 100260, 100264, 100265};
  for (int64_t id = 100267; id <= 100351; ++id) ids.push_back(id);
  std::vector<int64_t> in_range;
  for (auto id : ids) {
    if (id < vocab_size) in_range.push_back(id);
  }
  return in_range;
}

ModelConfig from_hf_phi3small(JsonReader& r) {
  ModelConfig c;
  c.family = Family::kPhi3Small;
  c.block_style = BlockStyle::kSequential;
  c.norm = NormKind::kLayerNorm;
  c.mlp = MlpKind::kGeGelu;
  auto act = r.optional<std::string>("hidden_act", "gegelu");
  if (act != "gegelu") r.fail("hidden_act", "\"" + act + "\" is not supported (Phi-3-small uses gegelu)");
  c.vocab_size = r.required<int64_t>("vocab_size");
  c.hidden_size = r.required<int64_t>("hidden_size");
  c.intermediate_size = r.required<int64_t>("ff_intermediate_size");
  c.n_layers = r.required<int64_t>("num_hidden_layers");
  c.n_heads = read_head_count(r, c.hidden_size);
  c.n_kv_heads = r.optional<int64_t>("num_key_value_heads", c.n_heads);
  c.head_dim = c.hidden_size / c.n_heads;
  c.max_position_embeddings = r.optional<int64_t>("max_position_embeddings", 8192);
  c.norm_eps = r.optional<double>("layer_norm_epsilon", 1e-5);
  c.rope_theta = r.optional<double>("rope_embedding_base", 1e6);
  c.rotary_dim = c.head_dim;
  double position_scale = r.optional<double>("rope_position_scale", 1.0);
  if (position_scale != 1.0) r.fail("rope_position_scale", "other than 1.0 is not supported");
  if (r.has_value("rope_scaling")) {
    read_long_rope(c, r.raw("rope_scaling"), r.source(), "$.rope_scaling", 0, true);
  } else {
    r.ignore({"rope_scaling"});
  }
  c.gegelu_limit = r.optional<double>("gegelu_limit", 20.0);
  c.qkv_bias = c.attn_out_bias = c.mlp_bias = true;
  c.lm_head_bias = false;
  c.tie_embeddings = r.optional<bool>("tie_word_embeddings", true);
  bool mup = r.optional<bool>("mup_use_scaling", true);
  double attn_multiplier = r.optional<double>("mup_attn_multiplier", 1.0);
  c.embedding_multiplier = r.optional<double>("mup_embedding_multiplier", 10.0);
  c.logit_divisor = r.optional<double>("mup_width_multiplier", 8.0);
  c.attention_scale = mup ? attn_multiplier / static_cast<double>(c.head_dim) : 0.0;
  c.use_blocksparse = true;
  c.blocksparse.block_size = r.optional<int64_t>("blocksparse_block_size", 64);
  c.blocksparse.n_local_blocks = r.optional<int64_t>("blocksparse_num_local_blocks", 16);
  c.blocksparse.vert_stride = r.optional<int64_t>("blocksparse_vert_stride", 8);
  c.blocksparse.homo_head = r.optional<bool>("blocksparse_homo_head_pattern", false);
  c.blocksparse.dense_every_n_layers = r.optional<int64_t>("dense_attention_every_n_layers", 2);
  c.masked_token_ids = phi3small_masked_ids(c.vocab_size);
  return c;
}

}  // namespace

ModelConfig model_config_from_hf_json(const nlohmann::json& j, const std::string& source) {
  JsonReader r(j, source);
  auto model_type = r.required<std::string>("model_type");
  ModelConfig c;
  if (model_type == "phi") {
    c = from_hf_phi(r);
  } else if (model_type == "phi3") {
    c = from_hf_phi3(r);
  } else if (model_type == "phi3small") {
    c = from_hf_phi3small(r);
  } else {
    r.fail("model_type", "\"" + model_type + "\" is not a phi model (expected phi, phi3 or phi3small)");
  }
  c.name = r.optional<std::string>("_name_or_path", model_type);
  if (c.name.empty()) c.name = model_type;
  c.bos_token_id = optional_token_id(r, "bos_token_id");
  c.eos_token_id = optional_token_id(r, "eos_token_id");
  c.pad_token_id = optional_token_id(r, "pad_token_id");
  c.hub_dtype = r.optional<std::string>("torch_dtype", r.optional<std::string>("dtype", "float32"));
  ignore_bookkeeping_keys(r);
  warn_unknown(r);
  c.validate(source);
  return c;
}

nlohmann::json model_config_to_hf_json(const ModelConfig& c, const std::string& torch_dtype) {
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
  const double partial = static_cast<double>(c.rotary_dim) / static_cast<double>(c.head_dim);
  switch (c.family) {
    case Family::kPhi:
      j["model_type"] = "phi";
      j["architectures"] = {"PhiForCausalLM"};
      j["intermediate_size"] = c.intermediate_size;
      j["hidden_act"] = "gelu_new";
      j["layer_norm_eps"] = c.norm_eps;
      j["rope_theta"] = c.rope_theta;
      j["partial_rotary_factor"] = partial;
      j["qk_layernorm"] = false;
      j["resid_pdrop"] = 0.0;
      j["embd_pdrop"] = 0.0;
      j["attention_dropout"] = 0.0;
      break;
    case Family::kPhi3:
      j["model_type"] = "phi3";
      j["architectures"] = {"Phi3ForCausalLM"};
      j["intermediate_size"] = c.intermediate_size;
      j["hidden_act"] = "silu";
      j["rms_norm_eps"] = c.norm_eps;
      j["rope_theta"] = c.rope_theta;
      j["partial_rotary_factor"] = partial;
      j["sliding_window"] = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nlohmann::json(nullptr);
      if (c.use_long_rope) {
        j["original_max_position_embeddings"] = c.long_rope.original_max_position_embeddings;
        j["rope_scaling"] = {{"type", "longrope"},
                             {"short_factor", c.long_rope.short_factor},
                             {"long_factor", c.long_rope.long_factor},
                             {"attention_factor", c.long_rope.short_mscale}};
      }
      break;
    case Family::kPhi3Small:
      j["model_type"] = "phi3small";
      j["architectures"] = {"Phi3SmallForCausalLM"};
      j["ff_intermediate_size"] = c.intermediate_size;
      j["hidden_act"] = "gegelu";
      j["gegelu_limit"] = c.gegelu_limit;
      j["layer_norm_epsilon"] = c.norm_eps;
      j["rope_embedding_base"] = c.rope_theta;
      j["rope_position_scale"] = 1.0;
      j["mup_use_scaling"] = true;
      j["mup_attn_multiplier"] = c.resolved_attention_scale() * static_cast<double>(c.head_dim);
      j["mup_embedding_multiplier"] = c.embedding_multiplier;
      j["mup_width_multiplier"] = c.logit_divisor;
      j["blocksparse_block_size"] = c.blocksparse.block_size;
      j["blocksparse_num_local_blocks"] = c.blocksparse.n_local_blocks;
      j["blocksparse_vert_stride"] = c.blocksparse.vert_stride;
      j["blocksparse_homo_head_pattern"] = c.blocksparse.homo_head;
      j["dense_attention_every_n_layers"] = c.blocksparse.dense_every_n_layers;
      if (c.use_long_rope) {
        j["rope_scaling"] = {{"type", "longrope"},
                             {"short_factor", c.long_rope.short_factor},
                             {"long_factor", c.long_rope.long_factor},
                             {"original_max_position_embeddings", c.long_rope.original_max_position_embeddings},
                             {"short_mscale", c.long_rope.short_mscale},
                             {"long_mscale", c.long_rope.long_mscale}};
      }
      break;
  }
  return j;
}

}  // namespace phi
