// The phi3small family: Phi-3-small (HF model_type phi3small, remote-code Phi3SmallForCausalLM).
// Weights: query_key_value is grouped per kv head
// ([q heads of group g | k_g | v_g] for each g) and is regrouped to [Q | K | V]; up_proj interleaves
// gelu (even rows) and linear (odd rows) inputs and is split into [gelu | linear] halves; lm_head is
// tied to the embedding (an lm_head.weight in the file is accepted and ignored).
#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "models/families/registry.h"
#include "phi/config/hf_config.h"
#include "phi/models/family.h"
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

namespace {

// The dummy token ids of Phi-3-small's tokenizer whose logits are masked (docs/phi_family.md §7.3).
std::vector<int64_t> masked_ids(int64_t vocab_size) {
  std::vector<int64_t> ids = {100256, 100258, 100259, 100260, 100264, 100265};
  for (int64_t id = 100267; id <= 100351; ++id) ids.push_back(id);
  std::vector<int64_t> in_range;
  for (auto id : ids) {
    if (id < vocab_size) in_range.push_back(id);
  }
  return in_range;
}

void read_config(JsonReader& r, ModelConfig& c) {
  c.block_style = BlockStyle::kSequential;
  c.norm = NormKind::kLayerNorm;
  c.mlp = MlpKind::kGeGelu;
  auto act = r.optional<std::string>("hidden_act", "gegelu");
  if (act != "gegelu") r.fail("hidden_act", "\"" + act + "\" is not supported (Phi-3-small uses gegelu)");
  read_hf_sizes(r, c, /*head_dim_key=*/false);  // the remote code derives head_dim
  c.intermediate_size = r.required<int64_t>("ff_intermediate_size");
  c.max_position_embeddings = r.optional<int64_t>("max_position_embeddings", 8192);
  c.norm_eps = r.optional<double>("layer_norm_epsilon", 1e-5);
  c.rope_theta = r.optional<double>("rope_embedding_base", 1e6);
  c.rotary_dim = c.head_dim;
  double position_scale = r.optional<double>("rope_position_scale", 1.0);
  if (position_scale != 1.0) r.fail("rope_position_scale", "other than 1.0 is not supported");
  if (r.has_value("rope_scaling")) {
    read_hf_long_rope(c, r.raw("rope_scaling"), r.source(), "$.rope_scaling", 0, LongRopeScaleRule::kShortLongMscale);
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
  c.masked_token_ids = masked_ids(c.vocab_size);
}

void write_config(const ModelConfig& c, nlohmann::json& j) {
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
}

// Its tokenizer adds these to cl100k_base (docs/phi_family.md §7.3); the ranks file has none.
std::vector<SpecialToken> tiktoken_specials() {
  std::vector<SpecialToken> specials = {
      {"<|endoftext|>", 100257}, {"<|fim_prefix|>", 100258}, {"<|fim_middle|>", 100259}, {"<|fim_suffix|>", 100260},
      {"<|system|>", 100261},    {"<|user|>", 100262},       {"<|assistant|>", 100263},  {"<|dummy_id_0|>", 100264},
      {"<|dummy_id_1|>", 100265}, {"<|end|>", 100266},       {"<|endofprompt|>", 100276}, {"<|dummy_id_2|>", 100256}};
  for (int64_t i = 3; i <= 11; ++i) specials.push_back({"<|dummy_id_" + std::to_string(i) + "|>", 100264 + i});
  for (int64_t i = 12; i <= 86; ++i) specials.push_back({"<|dummy_id_" + std::to_string(i) + "|>", 100265 + i});
  return specials;
}

}  // namespace

const FamilySpec& phi3small_family() {
  static const Phi3SmallWeightMap map;
  static const FamilySpec spec = [] {
    FamilySpec s;
    s.name = "phi3small";
    s.models = "Phi-3-small";
    s.hf_model_type = "phi3small";
    s.hf_architecture = "Phi3SmallForCausalLM";
    s.read_hf_config = read_config;
    s.write_hf_config = write_config;
    s.weight_map = &map;
    s.chat_template = "phi3-small";
    s.tiktoken_specials = tiktoken_specials();
    s.tiktoken_bos_eos = 100257;
    return s;
  }();
  return spec;
}
}  // namespace phi
