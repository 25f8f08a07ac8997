// Phi-3 mini / medium (HF Phi3ForCausalLM): fused qkv_proj already in [Q | K | V] order and fused
// gate_up_proj in [gate | up] order, so names map one to one; no biases; RMSNorm weights only.
#include <ATen/ATen.h>

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

const HfWeightMap& phi3_weight_map() {
  static const Phi3WeightMap map;
  return map;
}

}  // namespace phi
