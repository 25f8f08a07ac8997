// Phi-3-small (remote-code Phi3SmallForCausalLM): query_key_value is grouped per kv head
// ([q heads of group g | k_g | v_g] for each g) and is regrouped to [Q | K | V]; up_proj interleaves
// gelu (even rows) and linear (odd rows) inputs and is split into [gelu | linear] halves; lm_head is
// tied to the embedding (an lm_head.weight in the file is accepted and ignored).
#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include "phi/models/weight_map.h"

namespace phi {
namespace {

// [G * (per + 2) * D, ...] grouped rows -> [Q (G*per*D) | K (G*D) | V (G*D)] rows.
at::Tensor grouped_to_blocks(const at::Tensor& t, int64_t groups, int64_t per, int64_t D) {
  auto x = t.dim() == 1 ? t.unsqueeze(1) : t;
  auto g = x.reshape({groups, per + 2, D, x.size(1)});
  auto q = g.narrow(1, 0, per).reshape({groups * per * D, x.size(1)});
  auto k = g.select(1, per).reshape({groups * D, x.size(1)});
  auto v = g.select(1, per + 1).reshape({groups * D, x.size(1)});
  auto out = at::cat({q, k, v});
  return t.dim() == 1 ? out.squeeze(1) : out;
}

at::Tensor blocks_to_grouped(const at::Tensor& t, int64_t groups, int64_t per, int64_t D) {
  auto x = t.dim() == 1 ? t.unsqueeze(1) : t;
  const int64_t cols = x.size(1);
  auto parts = x.split_with_sizes({groups * per * D, groups * D, groups * D});
  auto q = parts[0].reshape({groups, per, D, cols});
  auto k = parts[1].reshape({groups, 1, D, cols});
  auto v = parts[2].reshape({groups, 1, D, cols});
  auto out = at::cat({q, k, v}, 1).reshape({groups * (per + 2) * D, cols});
  return t.dim() == 1 ? out.squeeze(1) : out;
}

// Interleaved rows (even: gelu, odd: linear) <-> [gelu | linear] halves.
at::Tensor deinterleave(const at::Tensor& t) {
  return at::cat({t.slice(0, 0, t.size(0), 2), t.slice(0, 1, t.size(0), 2)});
}
at::Tensor interleave(const at::Tensor& t) {
  auto halves = t.chunk(2, 0);
  auto stacked = at::stack({halves[0], halves[1]}, 1);  // [I, 2, ...]
  std::vector<int64_t> shape = {t.size(0)};
  for (int64_t d = 1; d < t.dim(); ++d) shape.push_back(t.size(d));
  return stacked.reshape(shape);
}

class Phi3SmallWeightMap final : public HfWeightMap {
 public:
  ParameterMap load(HfTensorReader& r, const ModelConfig& c) const override {
    ParameterMap p;
    const int64_t H = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
    const int64_t G = c.n_kv_heads, per = c.n_heads / c.n_kv_heads;
    const int64_t qkv_rows = (c.n_heads + 2 * c.n_kv_heads) * D;
    p["embed.weight"] = r.take("model.embed_tokens.weight", {c.vocab_size, H});
    for (int64_t i = 0; i < c.n_layers; ++i) {
      for (const char* suffix : {"weight", "bias"}) {
        const std::string s = suffix;
        p[canonical_layer(i, "attn_norm." + s)] = r.take(hf_layer(i, "input_layernorm." + s), {H});
        p[canonical_layer(i, "mlp_norm." + s)] = r.take(hf_layer(i, "post_attention_layernorm." + s), {H});
      }
      p[canonical_layer(i, "attn.qkv.weight")] =
          grouped_to_blocks(r.take(hf_layer(i, "self_attn.query_key_value.weight"), {qkv_rows, H}), G, per, D);
      p[canonical_layer(i, "attn.qkv.bias")] =
          grouped_to_blocks(r.take(hf_layer(i, "self_attn.query_key_value.bias"), {qkv_rows}), G, per, D);
      p[canonical_layer(i, "attn.out.weight")] = r.take(hf_layer(i, "self_attn.dense.weight"), {H, c.n_heads * D});
      p[canonical_layer(i, "attn.out.bias")] = r.take(hf_layer(i, "self_attn.dense.bias"), {H});
      p[canonical_layer(i, "mlp.fc_in.weight")] = deinterleave(r.take(hf_layer(i, "mlp.up_proj.weight"), {2 * I, H}));
      p[canonical_layer(i, "mlp.fc_in.bias")] = deinterleave(r.take(hf_layer(i, "mlp.up_proj.bias"), {2 * I}));
      p[canonical_layer(i, "mlp.fc_out.weight")] = r.take(hf_layer(i, "mlp.down_proj.weight"), {H, I});
      p[canonical_layer(i, "mlp.fc_out.bias")] = r.take(hf_layer(i, "mlp.down_proj.bias"), {H});
    }
    p["final_norm.weight"] = r.take("model.final_layernorm.weight", {H});
    p["final_norm.bias"] = r.take("model.final_layernorm.bias", {H});
    if (c.tie_embeddings) {
      if (r.has("lm_head.weight")) {
        auto head = r.take("lm_head.weight", {c.vocab_size, H});
        if (!at::equal(head, p["embed.weight"])) {
          spdlog::warn("Phi-3-small lm_head.weight differs from the tied embedding; using the embedding");
        }
      }
    } else {
      p["lm_head.weight"] = r.take("lm_head.weight", {c.vocab_size, H});
    }
    r.ignore_suffix("rotary_emb.inv_freq");
    return p;
  }

  NamedTensors save(const ParameterMap& p, const ModelConfig& c) const override {
    NamedTensors out;
    const int64_t G = c.n_kv_heads, per = c.n_heads / c.n_kv_heads, D = c.head_dim;
    out.push_back({"model.embed_tokens.weight", p.at("embed.weight")});
    for (int64_t i = 0; i < c.n_layers; ++i) {
      out.push_back({hf_layer(i, "self_attn.query_key_value.weight"),
                     blocks_to_grouped(p.at(canonical_layer(i, "attn.qkv.weight")), G, per, D)});
      out.push_back({hf_layer(i, "self_attn.query_key_value.bias"),
                     blocks_to_grouped(p.at(canonical_layer(i, "attn.qkv.bias")), G, per, D)});
      out.push_back({hf_layer(i, "self_attn.dense.weight"), p.at(canonical_layer(i, "attn.out.weight"))});
      out.push_back({hf_layer(i, "self_attn.dense.bias"), p.at(canonical_layer(i, "attn.out.bias"))});
      out.push_back({hf_layer(i, "mlp.up_proj.weight"), interleave(p.at(canonical_layer(i, "mlp.fc_in.weight")))});
      out.push_back({hf_layer(i, "mlp.up_proj.bias"), interleave(p.at(canonical_layer(i, "mlp.fc_in.bias")))});
      out.push_back({hf_layer(i, "mlp.down_proj.weight"), p.at(canonical_layer(i, "mlp.fc_out.weight"))});
      out.push_back({hf_layer(i, "mlp.down_proj.bias"), p.at(canonical_layer(i, "mlp.fc_out.bias"))});
      for (const char* suffix : {"weight", "bias"}) {
        const std::string s = suffix;
        out.push_back({hf_layer(i, "input_layernorm." + s), p.at(canonical_layer(i, "attn_norm." + s))});
        out.push_back({hf_layer(i, "post_attention_layernorm." + s), p.at(canonical_layer(i, "mlp_norm." + s))});
      }
    }
    out.push_back({"model.final_layernorm.weight", p.at("final_norm.weight")});
    out.push_back({"model.final_layernorm.bias", p.at("final_norm.bias")});
    if (!c.tie_embeddings) out.push_back({"lm_head.weight", p.at("lm_head.weight")});
    return out;
  }
};

}  // namespace

const HfWeightMap& phi3small_weight_map() {
  static const Phi3SmallWeightMap map;
  return map;
}

}  // namespace phi
