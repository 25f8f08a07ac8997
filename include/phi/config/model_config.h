// The model config: one struct describes every phi variant. Family differences are named fields
// (block style, norm, MLP kind, rotary width, LongRoPE, kv heads, muP multipliers, blocksparse),
// never separate model classes. JSON is the source of truth: from_json / to_json / validate.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace phi {

class JsonReader;

/// Parallel attention+MLP sharing one norm (phi-1/1.5/2) or sequential pre-norm (Phi-3).
enum class BlockStyle { kParallel, kSequential };
enum class NormKind { kLayerNorm, kRmsNorm };
/// gelu_new: fc_out(gelu_new(fc_in x)); swiglu: [gate|up] halves, silu(gate)*up;
/// gegelu: Phi-3-small's clamped quick-gelu gate, stored internally as [gelu half | linear half].
enum class MlpKind { kGeluNew, kSwiGlu, kGeGelu };

std::string to_string(BlockStyle value);
std::string to_string(NormKind value);
std::string to_string(MlpKind value);

/// LongRoPE ("su"/"longrope"): per-frequency factors, the short set while the sequence fits the
/// original context, the long set beyond it, each with its own cos/sin magnitude scale.
struct LongRopeConfig {
  std::vector<double> short_factor;  // rotary_dim / 2 values
  std::vector<double> long_factor;   // rotary_dim / 2 values
  int64_t original_max_position_embeddings = 0;
  double short_mscale = 1.0;  // Phi-3 mini/medium: the attention factor; Phi-3-small: 1.0 by default
  double long_mscale = 1.0;
};

/// Phi-3-small's block-sparse attention on some layers (see docs/configs.md for the pattern).
struct BlockSparseConfig {
  int64_t block_size = 64;
  int64_t n_local_blocks = 16;
  int64_t vert_stride = 8;
  bool homo_head = false;
  int64_t dense_every_n_layers = 2;  // layer i is dense iff (i + 1) % n == 0
};

struct ModelConfig {
  std::string name = "custom";
  /// The registered model family (phi/models/family.h: HF config keys, weight names, chat format).
  std::string family = "phi3";
  BlockStyle block_style = BlockStyle::kSequential;
  NormKind norm = NormKind::kRmsNorm;
  MlpKind mlp = MlpKind::kSwiGlu;

  int64_t vocab_size = 0;         // rows of the (padded) embedding
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // MLP inner width (one half of a gated projection)
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;           // 0 in JSON means hidden_size / n_heads
  int64_t rotary_dim = 0;         // 0 in JSON means head_dim (full rotary)
  double rope_theta = 10000.0;
  bool use_long_rope = false;
  LongRopeConfig long_rope;
  int64_t max_position_embeddings = 2048;
  int64_t sliding_window = 0;     // 0: none; else key s visible to query p iff p - s < window
  double norm_eps = 1e-5;
  double gegelu_limit = 20.0;

  bool qkv_bias = false;
  bool attn_out_bias = false;
  bool mlp_bias = false;
  bool lm_head_bias = false;
  bool tie_embeddings = false;

  double embedding_multiplier = 1.0;  // Phi-3-small muP: 10
  double attention_scale = 0.0;       // 0 means 1/sqrt(head_dim); Phi-3-small: 1/head_dim
  double logit_divisor = 1.0;         // Phi-3-small muP: 8
  bool use_blocksparse = false;
  BlockSparseConfig blocksparse;
  /// Vocabulary ids whose logits are forced to the dtype minimum (Phi-3-small's dummy tokens).
  std::vector<int64_t> masked_token_ids;

  // Ids from the checkpoint's config, kept for tokenizers and generation (-1: none).
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;
  int64_t pad_token_id = -1;
  std::string hub_dtype = "float32";  // dtype the checkpoint was stored in

  /// Derived values.
  double resolved_attention_scale() const;
  bool layer_is_blocksparse(int64_t layer) const;

  /// Throws phi::Error naming the JSON path of the first invalid value.
  void validate(const std::string& source = "<config>") const;
};

/// Our own JSON format (configs/models/*.json); unknown keys are errors naming the path. The family
/// name is checked against the registry where configs are loaded (load_model_config).
ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& source);
nlohmann::json model_config_to_json(const ModelConfig& config);

/// Built-in presets (configs/models/*.json): phi-1, phi-1.5, phi-2, phi-3-mini-4k, phi-3-mini-128k,
/// phi-3.5-mini, phi-3-small-8k, phi-3-small-128k, phi-3-medium-4k, phi-3-medium-128k, phi-4-mini,
/// tiny-phi, tiny-phi3, tiny-phi3small. Loading one with overrides: preset_model_config
/// (phi/models/family.h).
std::vector<std::string> preset_names();
/// The preset's JSON file; throws naming the available presets when `name` is unknown.
std::string preset_path(const std::string& name);
/// Directory holding the preset JSON files (configs/models), from PHI_CONFIG_DIR or the build.
std::string preset_directory();

}  // namespace phi
