// The phi3 family: Phi-3-mini, Phi-3-medium, Phi-3.5-mini (HF model_type phi3, Phi3ForCausalLM).
// Weights: fused qkv_proj already in [Q | K | V] order and fused gate_up_proj in [gate | up] order,
// so names map one to one; no biases; RMSNorm weights only; lm_head absent when tied. Config: silu,
// RMSNorm, optional partial rotary, sliding window and LongRoPE (one attention_factor).
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include "models/families/registry.h"
#include "phi/config/hf_config.h"
#include "phi/models/family.h"
#include "phi/models/weight_map.h"

namespace phi {
namespace {

class Phi3WeightMap final : public HfWeightMap {
 public:
  ParameterMap load(HfTensorReader& r, const ModelConfig& c) const override {
    ParameterMap p;
    const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
    const int64_t qkv_rows = (c.n_heads + 2 * c.n_kv_heads) * D;
    p["embed.weight"] = r.take("model.embed_tokens.weight", {c.vocab_size, H});
    for (int64_t i = 0; i < c.n_layers; ++i) {
      p[canonical_layer(i, "attn_norm.weight")] = r.take(hf_layer(i, "input_layernorm.weight"), {H});
      p[canonical_layer(i, "mlp_norm.weight")] = r.take(hf_layer(i, "post_attention_layernorm.weight"), {H});
      p[canonical_layer(i, "attn.qkv.weight")] = r.take(hf_layer(i, "self_attn.qkv_proj.weight"), {qkv_rows, H});
      p[canonical_layer(i, "attn.out.weight")] = r.take(hf_layer(i, "self_attn.o_proj.weight"), {H, c.n_heads * D});
      p[canonical_layer(i, "mlp.fc_in.weight")] = r.take(hf_layer(i, "mlp.gate_up_proj.weight"), {2 * I, H});
      p[canonical_layer(i, "mlp.fc_out.weight")] = r.take(hf_layer(i, "mlp.down_proj.weight"), {H, I});
    }
    p["final_norm.weight"] = r.take("model.norm.weight", {H});
    if (!c.tie_embeddings) {
      p["lm_head.weight"] = r.take("lm_head.weight", {c.vocab_size, H});
    } else if (r.has("lm_head.weight")) {
      r.take("lm_head.weight", {c.vocab_size, H});  // tied: the embedding is used
    }
    r.ignore_suffix("rotary_emb.inv_freq");
    return p;
  }

  NamedTensors save(const ParameterMap& p, const ModelConfig& c) const override {
    NamedTensors out;
    out.push_back({"model.embed_tokens.weight", p.at("embed.weight")});
    for (int64_t i = 0; i < c.n_layers; ++i) {
      out.push_back({hf_layer(i, "self_attn.qkv_proj.weight"), p.at(canonical_layer(i, "attn.qkv.weight"))});
      out.push_back({hf_layer(i, "self_attn.o_proj.weight"), p.at(canonical_layer(i, "attn.out.weight"))});
      out.push_back({hf_layer(i, "mlp.gate_up_proj.weight"), p.at(canonical_layer(i, "mlp.fc_in.weight"))});
      out.push_back({hf_layer(i, "mlp.down_proj.weight"), p.at(canonical_layer(i, "mlp.fc_out.weight"))});
      out.push_back({hf_layer(i, "input_layernorm.weight"), p.at(canonical_layer(i, "attn_norm.weight"))});
      out.push_back({hf_layer(i, "post_attention_layernorm.weight"), p.at(canonical_layer(i, "mlp_norm.weight"))});
    }
    out.push_back({"model.norm.weight", p.at("final_norm.weight")});
    if (!c.tie_embeddings) out.push_back({"lm_head.weight", p.at("lm_head.weight")});
    return out;
  }
};

}  // namespace

namespace {

void read_config(JsonReader& r, ModelConfig& c) {
  c.block_style = BlockStyle::kSequential;
  c.norm = NormKind::kRmsNorm;
  c.mlp = MlpKind::kSwiGlu;
  auto act = r.optional<std::string>("hidden_act", "silu");
  if (act != "silu") r.fail("hidden_act", "\"" + act + "\" is not supported (Phi-3 uses silu)");
  read_hf_sizes(r, c, /*head_dim_key=*/true);
  c.intermediate_size = r.required<int64_t>("intermediate_size");
  c.max_position_embeddings = r.optional<int64_t>("max_position_embeddings", 4096);
  c.norm_eps = r.optional<double>("rms_norm_eps", 1e-5);
  c.sliding_window = r.optional<int64_t>("sliding_window", 0);
  auto original = r.optional<int64_t>("original_max_position_embeddings", c.max_position_embeddings);
  auto rope = read_hf_rope(r, 1.0);
  c.rope_theta = rope.theta;
  c.rotary_dim = rotary_dim_from_factor(c.head_dim, rope.partial_rotary_factor);
  if (!rope.scaling.is_null()) {
    read_hf_long_rope(c, rope.scaling, r.source(), "$.rope_scaling", original, LongRopeScaleRule::kAttentionFactor);
  }
  c.tie_embeddings = r.optional<bool>("tie_word_embeddings", false);
  // Phi-4-mini's config.json carries these; Phi3ForCausalLM has no biases and ignores them all.
  r.ignore({"mlp_bias", "lm_head_bias", "full_attn_mod", "interpolate_factor"});
}

void write_config(const ModelConfig& c, nlohmann::json& j) {
  j["intermediate_size"] = c.intermediate_size;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["partial_rotary_factor"] = static_cast<double>(c.rotary_dim) / static_cast<double>(c.head_dim);
  j["sliding_window"] = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nlohmann::json(nullptr);
  if (c.use_long_rope) {
    j["original_max_position_embeddings"] = c.long_rope.original_max_position_embeddings;
    j["rope_scaling"] = {{"type", "longrope"},
                         {"short_factor", c.long_rope.short_factor},
                         {"long_factor", c.long_rope.long_factor},
                         {"attention_factor", c.long_rope.short_mscale}};
  }
}

}  // namespace

const FamilySpec& phi3_family() {
  static const Phi3WeightMap map;
  static const FamilySpec spec = [] {
    FamilySpec s;
    s.name = "phi3";
    s.models = "Phi-3-mini, Phi-3-medium, Phi-3.5-mini";
    s.hf_model_type = "phi3";
    s.hf_architecture = "Phi3ForCausalLM";
    s.read_hf_config = read_config;
    s.write_hf_config = write_config;
    s.weight_map = &map;
    s.chat_template = "phi3";
    return s;
  }();
  return spec;
}
}  // namespace phi
