// The phi family: phi-1 / phi-1.5 / phi-2 (HF model_type phi, PhiForCausalLM). Weights: separate
// q/k/v projections with biases, one shared input_layernorm per block, final_layernorm, lm_head
// with bias. Config: gelu_new, LayerNorm, partial rotary (default 0.5), no rope scaling.
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include "models/families/registry.h"
#include "phi/config/hf_config.h"
#include "phi/core/error.h"
#include "phi/models/family.h"
#include "phi/models/weight_map.h"

namespace phi {
namespace {

class PhiWeightMap final : public HfWeightMap {
 public:
  ParameterMap load(HfTensorReader& r, const ModelConfig& c) const override {
    ParameterMap p;
    const int64_t H = c.hidden_size, I = c.intermediate_size;
    const int64_t q_rows = c.n_heads * c.head_dim, kv_rows = c.n_kv_heads * c.head_dim;
    p["embed.weight"] = r.take("model.embed_tokens.weight", {c.vocab_size, H});
    for (int64_t i = 0; i < c.n_layers; ++i) {
      p[canonical_layer(i, "attn_norm.weight")] = r.take(hf_layer(i, "input_layernorm.weight"), {H});
      p[canonical_layer(i, "attn_norm.bias")] = r.take(hf_layer(i, "input_layernorm.bias"), {H});
      p[canonical_layer(i, "attn.qkv.weight")] =
          at::cat({r.take(hf_layer(i, "self_attn.q_proj.weight"), {q_rows, H}),
                   r.take(hf_layer(i, "self_attn.k_proj.weight"), {kv_rows, H}),
                   r.take(hf_layer(i, "self_attn.v_proj.weight"), {kv_rows, H})});
      p[canonical_layer(i, "attn.qkv.bias")] =
          at::cat({r.take(hf_layer(i, "self_attn.q_proj.bias"), {q_rows}),
                   r.take(hf_layer(i, "self_attn.k_proj.bias"), {kv_rows}),
                   r.take(hf_layer(i, "self_attn.v_proj.bias"), {kv_rows})});
      p[canonical_layer(i, "attn.out.weight")] = r.take(hf_layer(i, "self_attn.dense.weight"), {H, q_rows});
      p[canonical_layer(i, "attn.out.bias")] = r.take(hf_layer(i, "self_attn.dense.bias"), {H});
      p[canonical_layer(i, "mlp.fc_in.weight")] = r.take(hf_layer(i, "mlp.fc1.weight"), {I, H});
      p[canonical_layer(i, "mlp.fc_in.bias")] = r.take(hf_layer(i, "mlp.fc1.bias"), {I});
      p[canonical_layer(i, "mlp.fc_out.weight")] = r.take(hf_layer(i, "mlp.fc2.weight"), {H, I});
      p[canonical_layer(i, "mlp.fc_out.bias")] = r.take(hf_layer(i, "mlp.fc2.bias"), {H});
    }
    p["final_norm.weight"] = r.take("model.final_layernorm.weight", {H});
    p["final_norm.bias"] = r.take("model.final_layernorm.bias", {H});
    p["lm_head.weight"] = r.take("lm_head.weight", {c.vocab_size, H});
    p["lm_head.bias"] = r.take("lm_head.bias", {c.vocab_size});
    r.ignore_suffix("rotary_emb.inv_freq");
    return p;
  }

  NamedTensors save(const ParameterMap& p, const ModelConfig& c) const override {
    NamedTensors out;
    const int64_t q_rows = c.n_heads * c.head_dim, kv_rows = c.n_kv_heads * c.head_dim;
    out.push_back({"model.embed_tokens.weight", p.at("embed.weight")});
    for (int64_t i = 0; i < c.n_layers; ++i) {
      auto qkv_w = p.at(canonical_layer(i, "attn.qkv.weight")).split_with_sizes({q_rows, kv_rows, kv_rows});
      auto qkv_b = p.at(canonical_layer(i, "attn.qkv.bias")).split_with_sizes({q_rows, kv_rows, kv_rows});
      const char* names[3] = {"q_proj", "k_proj", "v_proj"};
      for (int j = 0; j < 3; ++j) {
        out.push_back({hf_layer(i, std::string("self_attn.") + names[j] + ".weight"), qkv_w[j]});
        out.push_back({hf_layer(i, std::string("self_attn.") + names[j] + ".bias"), qkv_b[j]});
      }
      out.push_back({hf_layer(i, "self_attn.dense.weight"), p.at(canonical_layer(i, "attn.out.weight"))});
      out.push_back({hf_layer(i, "self_attn.dense.bias"), p.at(canonical_layer(i, "attn.out.bias"))});
      out.push_back({hf_layer(i, "mlp.fc1.weight"), p.at(canonical_layer(i, "mlp.fc_in.weight"))});
      out.push_back({hf_layer(i, "mlp.fc1.bias"), p.at(canonical_layer(i, "mlp.fc_in.bias"))});
      out.push_back({hf_layer(i, "mlp.fc2.weight"), p.at(canonical_layer(i, "mlp.fc_out.weight"))});
      out.push_back({hf_layer(i, "mlp.fc2.bias"), p.at(canonical_layer(i, "mlp.fc_out.bias"))});
      out.push_back({hf_layer(i, "input_layernorm.weight"), p.at(canonical_layer(i, "attn_norm.weight"))});
      out.push_back({hf_layer(i, "input_layernorm.bias"), p.at(canonical_layer(i, "attn_norm.bias"))});
    }
    out.push_back({"model.final_layernorm.weight", p.at("final_norm.weight")});
    out.push_back({"model.final_layernorm.bias", p.at("final_norm.bias")});
    out.push_back({"lm_head.weight", p.at("lm_head.weight")});
    out.push_back({"lm_head.bias", p.at("lm_head.bias")});
    return out;
  }
};

}  // namespace

namespace {

void read_config(JsonReader& r, ModelConfig& c) {
  c.block_style = BlockStyle::kParallel;
  c.norm = NormKind::kLayerNorm;
  c.mlp = MlpKind::kGeluNew;
  auto act = r.optional<std::string>("hidden_act", "gelu_new");
  if (act != "gelu_new") r.fail("hidden_act", "\"" + act + "\" is not supported (phi uses gelu_new)");
  read_hf_sizes(r, c, /*head_dim_key=*/true);
  c.intermediate_size = r.required<int64_t>("intermediate_size");
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
}

void write_config(const ModelConfig& c, nlohmann::json& j) {
  j["intermediate_size"] = c.intermediate_size;
  j["hidden_act"] = "gelu_new";
  j["layer_norm_eps"] = c.norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["partial_rotary_factor"] = static_cast<double>(c.rotary_dim) / static_cast<double>(c.head_dim);
  j["qk_layernorm"] = false;
  j["resid_pdrop"] = 0.0;
  j["embd_pdrop"] = 0.0;
  j["attention_dropout"] = 0.0;
}

}  // namespace

const FamilySpec& phi_family() {
  static const PhiWeightMap map;
  static const FamilySpec spec = [] {
    FamilySpec s;
    s.name = "phi";
    s.models = "phi-1, phi-1.5, phi-2";
    s.hf_model_type = "phi";
    s.hf_architecture = "PhiForCausalLM";
    s.read_hf_config = read_config;
    s.write_hf_config = write_config;
    s.weight_map = &map;
    s.chat_template = "phi2";
    return s;
  }();
  return spec;
}
}  // namespace phi
