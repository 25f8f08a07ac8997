// phi-1 / phi-1.5 / phi-2 (HF PhiForCausalLM): separate q/k/v projections with biases, one shared
// input_layernorm per block, final_layernorm, lm_head with bias.
#include <ATen/ATen.h>

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

const HfWeightMap& phi_weight_map() {
  static const PhiWeightMap map;
  return map;
}

}  // namespace phi
