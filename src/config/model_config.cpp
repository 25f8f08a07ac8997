#include "phi/config/model_config.h"

#include <cstdint>
#include <cmath>

#include "phi/core/error.h"
#include "phi/core/json_reader.h"

namespace phi {

namespace {

template <typename Enum, size_t N>
Enum parse_enum(JsonReader& reader, const std::string& key, Enum fallback,
                const std::pair<const char*, Enum> (&table)[N]) {
  if (!reader.has_value(key)) {
    reader.ignore({key.c_str()});
    return fallback;
  }
  auto text = reader.required<std::string>(key);
  std::string allowed;
  for (const auto& entry : table) {
    if (text == entry.first) return entry.second;
    allowed += (allowed.empty() ? "" : ", ") + std::string(entry.first);
  }
  reader.fail(key, "has unknown value \"" + text + "\" (allowed: " + allowed + ")");
}

const std::pair<const char*, BlockStyle> kBlockStyles[] = {{"parallel", BlockStyle::kParallel},
                                                           {"sequential", BlockStyle::kSequential}};
const std::pair<const char*, NormKind> kNorms[] = {{"layernorm", NormKind::kLayerNorm},
                                                   {"rmsnorm", NormKind::kRmsNorm}};
const std::pair<const char*, MlpKind> kMlps[] = {
    {"gelu_new", MlpKind::kGeluNew}, {"swiglu", MlpKind::kSwiGlu}, {"gegelu", MlpKind::kGeGelu}};

template <typename Enum, size_t N>
std::string enum_name(Enum value, const std::pair<const char*, Enum> (&table)[N]) {
  for (const auto& entry : table) {
    if (entry.second == value) return entry.first;
  }
  return "?";
}

[[noreturn]] void invalid(const std::string& source, const std::string& path,
                          const std::string& message) {
  throw Error("invalid model config: $." + path + " " + message, source);
}

}  // namespace

std::string to_string(BlockStyle value) { return enum_name(value, kBlockStyles); }
std::string to_string(NormKind value) { return enum_name(value, kNorms); }
std::string to_string(MlpKind value) { return enum_name(value, kMlps); }

double ModelConfig::resolved_attention_scale() const {
  return attention_scale > 0 ? attention_scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

bool ModelConfig::layer_is_blocksparse(int64_t layer) const {
  return use_blocksparse && (layer + 1) % blocksparse.dense_every_n_layers != 0;
}

void ModelConfig::validate(const std::string& source) const {
  auto positive = [&](const char* key, int64_t value) {
    if (value <= 0) invalid(source, key, "must be > 0, got " + std::to_string(value));
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("n_layers", n_layers);
  positive("n_heads", n_heads);
  positive("n_kv_heads", n_kv_heads);
  positive("head_dim", head_dim);
  positive("max_position_embeddings", max_position_embeddings);
  // Upper bounds far beyond any real model, so that size arithmetic cannot overflow and a typo
  // (hidden_size=1e12) is named here rather than failing in the allocator.
  auto at_most = [&](const char* key, int64_t value, int64_t limit) {
    if (value > limit) invalid(source, key, "must be at most " + std::to_string(limit) + ", got " + std::to_string(value));
  };
  at_most("vocab_size", vocab_size, int64_t{1} << 24);
  at_most("hidden_size", hidden_size, int64_t{1} << 18);
  at_most("intermediate_size", intermediate_size, int64_t{1} << 20);
  at_most("n_layers", n_layers, 4096);
  at_most("n_heads", n_heads, 4096);
  at_most("n_kv_heads", n_kv_heads, 4096);
  at_most("head_dim", head_dim, 4096);
  at_most("max_position_embeddings", max_position_embeddings, int64_t{1} << 24);
  if (n_heads % n_kv_heads != 0) {
    invalid(source, "n_kv_heads", "must divide n_heads (" + std::to_string(n_heads) + "), got " +
                                      std::to_string(n_kv_heads));
  }
  if (rotary_dim <= 0 || rotary_dim > head_dim || rotary_dim % 2 != 0) {
    invalid(source, "rotary_dim",
            "must be even and in (0, head_dim=" + std::to_string(head_dim) + "], got " +
                std::to_string(rotary_dim));
  }
  if (!(rope_theta > 0)) invalid(source, "rope_theta", "must be > 0");
  if (!(norm_eps > 0)) invalid(source, "norm_eps", "must be > 0");
  if (sliding_window < 0) invalid(source, "sliding_window", "must be >= 0");
  if (!(embedding_multiplier > 0)) invalid(source, "embedding_multiplier", "must be > 0");
  if (attention_scale < 0) invalid(source, "attention_scale", "must be >= 0 (0: 1/sqrt(head_dim))");
  if (!(logit_divisor > 0)) invalid(source, "logit_divisor", "must be > 0");
  if (mlp == MlpKind::kGeGelu && !(gegelu_limit > 0)) {
    invalid(source, "gegelu_limit", "must be > 0");
  }
  if (block_style == BlockStyle::kParallel && tie_embeddings && lm_head_bias) {
    invalid(source, "lm_head_bias", "cannot be true with tie_embeddings");
  }
  if (use_long_rope) {
    const size_t half = static_cast<size_t>(rotary_dim / 2);
    if (long_rope.short_factor.size() != half) {
      invalid(source, "long_rope.short_factor",
              "must have rotary_dim/2 = " + std::to_string(half) + " values, got " +
                  std::to_string(long_rope.short_factor.size()));
    }
    if (long_rope.long_factor.size() != half) {
      invalid(source, "long_rope.long_factor",
              "must have rotary_dim/2 = " + std::to_string(half) + " values, got " +
                  std::to_string(long_rope.long_factor.size()));
    }
    if (long_rope.original_max_position_embeddings <= 0) {
      invalid(source, "long_rope.original_max_position_embeddings", "must be > 0");
    }
    if (!(long_rope.short_mscale > 0) || !(long_rope.long_mscale > 0)) {
      invalid(source, "long_rope.short_mscale", "and long_mscale must be > 0");
    }
  }
  if (use_blocksparse) {
    if (blocksparse.block_size <= 0) invalid(source, "blocksparse.block_size", "must be > 0");
    if (blocksparse.n_local_blocks <= 0) invalid(source, "blocksparse.n_local_blocks", "must be > 0");
    if (blocksparse.vert_stride <= 0) invalid(source, "blocksparse.vert_stride", "must be > 0");
    if (blocksparse.dense_every_n_layers <= 0) {
      invalid(source, "blocksparse.dense_every_n_layers", "must be > 0");
    }
  }
  for (size_t i = 0; i < masked_token_ids.size(); ++i) {
    if (masked_token_ids[i] < 0 || masked_token_ids[i] >= vocab_size) {
      invalid(source, "masked_token_ids[" + std::to_string(i) + "]",
              "must be in [0, vocab_size=" + std::to_string(vocab_size) + "), got " +
                  std::to_string(masked_token_ids[i]));
    }
  }
}

ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& source) {
  JsonReader r(j, source);
  ModelConfig c;
  c.name = r.optional<std::string>("name", c.name);
  c.family = r.optional<std::string>("family", c.family);
  if (c.family.empty()) r.fail("family", "must name a model family");
  c.block_style = parse_enum(r, "block_style", c.block_style, kBlockStyles);
  c.norm = parse_enum(r, "norm", c.norm, kNorms);
  c.mlp = parse_enum(r, "mlp", c.mlp, kMlps);
  c.vocab_size = r.required<int64_t>("vocab_size");
  c.hidden_size = r.required<int64_t>("hidden_size");
  c.intermediate_size = r.required<int64_t>("intermediate_size");
  c.n_layers = r.required<int64_t>("n_layers");
  c.n_heads = r.required<int64_t>("n_heads");
  c.n_kv_heads = r.optional<int64_t>("n_kv_heads", c.n_heads);
  c.head_dim = r.optional<int64_t>("head_dim", 0);
  if (c.head_dim == 0 && c.n_heads > 0) c.head_dim = c.hidden_size / c.n_heads;
  c.rotary_dim = r.optional<int64_t>("rotary_dim", 0);
  if (c.rotary_dim == 0) c.rotary_dim = c.head_dim;
  c.rope_theta = r.optional<double>("rope_theta", c.rope_theta);
  if (r.has_value("long_rope")) {
    auto lr = r.child("long_rope");
    c.use_long_rope = true;
    c.long_rope.short_factor = lr.required<std::vector<double>>("short_factor");
    c.long_rope.long_factor = lr.required<std::vector<double>>("long_factor");
    c.long_rope.original_max_position_embeddings =
        lr.required<int64_t>("original_max_position_embeddings");
    c.long_rope.short_mscale = lr.optional<double>("short_mscale", 1.0);
    c.long_rope.long_mscale = lr.optional<double>("long_mscale", 1.0);
    lr.finish();
  } else {
    r.ignore({"long_rope"});
  }
  c.max_position_embeddings = r.optional<int64_t>("max_position_embeddings", c.max_position_embeddings);
  c.sliding_window = r.optional<int64_t>("sliding_window", 0);
  c.norm_eps = r.optional<double>("norm_eps", c.norm_eps);
  c.gegelu_limit = r.optional<double>("gegelu_limit", c.gegelu_limit);
  c.qkv_bias = r.optional<bool>("qkv_bias", false);
  c.attn_out_bias = r.optional<bool>("attn_out_bias", false);
  c.mlp_bias = r.optional<bool>("mlp_bias", false);
  c.lm_head_bias = r.optional<bool>("lm_head_bias", false);
  c.tie_embeddings = r.optional<bool>("tie_embeddings", false);
  c.embedding_multiplier = r.optional<double>("embedding_multiplier", 1.0);
  c.attention_scale = r.optional<double>("attention_scale", 0.0);
  c.logit_divisor = r.optional<double>("logit_divisor", 1.0);
  if (r.has_value("blocksparse")) {
    auto bs = r.child("blocksparse");
    c.use_blocksparse = true;
    c.blocksparse.block_size = bs.required<int64_t>("block_size");
    c.blocksparse.n_local_blocks = bs.required<int64_t>("n_local_blocks");
    c.blocksparse.vert_stride = bs.required<int64_t>("vert_stride");
    c.blocksparse.homo_head = bs.optional<bool>("homo_head", false);
    c.blocksparse.dense_every_n_layers = bs.required<int64_t>("dense_every_n_layers");
    bs.finish();
  } else {
    r.ignore({"blocksparse"});
  }
  c.masked_token_ids = r.optional<std::vector<int64_t>>("masked_token_ids", {});
  c.bos_token_id = r.optional<int64_t>("bos_token_id", -1);
  c.eos_token_id = r.optional<int64_t>("eos_token_id", -1);
  c.pad_token_id = r.optional<int64_t>("pad_token_id", -1);
  c.hub_dtype = r.optional<std::string>("hub_dtype", c.hub_dtype);
  r.finish();
  c.validate(source);
  return c;
}

nlohmann::json model_config_to_json(const ModelConfig& c) {
  nlohmann::json j;
  j["name"] = c.name;
  j["family"] = c.family;
  j["block_style"] = to_string(c.block_style);
  j["norm"] = to_string(c.norm);
  j["mlp"] = to_string(c.mlp);
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["n_layers"] = c.n_layers;
  j["n_heads"] = c.n_heads;
  j["n_kv_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_dim;
  j["rotary_dim"] = c.rotary_dim;
  j["rope_theta"] = c.rope_theta;
  if (c.use_long_rope) {
    j["long_rope"] = {{"short_factor", c.long_rope.short_factor},
                      {"long_factor", c.long_rope.long_factor},
                      {"original_max_position_embeddings", c.long_rope.original_max_position_embeddings},
                      {"short_mscale", c.long_rope.short_mscale},
                      {"long_mscale", c.long_rope.long_mscale}};
  }
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["sliding_window"] = c.sliding_window;
  j["norm_eps"] = c.norm_eps;
  if (c.mlp == MlpKind::kGeGelu) j["gegelu_limit"] = c.gegelu_limit;
  j["qkv_bias"] = c.qkv_bias;
  j["attn_out_bias"] = c.attn_out_bias;
  j["mlp_bias"] = c.mlp_bias;
  j["lm_head_bias"] = c.lm_head_bias;
  j["tie_embeddings"] = c.tie_embeddings;
  j["embedding_multiplier"] = c.embedding_multiplier;
  j["attention_scale"] = c.attention_scale;
  j["logit_divisor"] = c.logit_divisor;
  if (c.use_blocksparse) {
    j["blocksparse"] = {{"block_size", c.blocksparse.block_size},
                        {"n_local_blocks", c.blocksparse.n_local_blocks},
                        {"vert_stride", c.blocksparse.vert_stride},
                        {"homo_head", c.blocksparse.homo_head},
                        {"dense_every_n_layers", c.blocksparse.dense_every_n_layers}};
  }
  if (!c.masked_token_ids.empty()) j["masked_token_ids"] = c.masked_token_ids;
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] = c.eos_token_id;
  j["pad_token_id"] = c.pad_token_id;
  j["hub_dtype"] = c.hub_dtype;
  return j;
}

}  // namespace phi
