#include "phi/models/transformer.h"

#include <unistd.h>

#include <algorithm>
#include <tuple>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <fmt/format.h>

#include "phi/core/error.h"
#include "phi/kernels/attention.h"
#include "phi/kernels/ops.h"
#include "phi/kernels/lm_loss.h"
#include "phi/models/checkpointing.h"
#include "phi/models/rope.h"

namespace phi {

namespace {
std::string layer_name(int64_t i, const std::string& rest) {
  return "layers." + std::to_string(i) + "." + rest;
}
at::Tensor optional_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) { return linear(x, w, b); }
}  // namespace

at::Tensor pad_token_ids(const std::vector<const std::vector<int64_t>*>& sequences, std::vector<int64_t>& lengths) {
  lengths.clear();
  int64_t longest = 0;
  for (const auto* s : sequences) {
    lengths.push_back(static_cast<int64_t>(s->size()));
    longest = std::max(longest, lengths.back());
  }
  auto ids = at::zeros({static_cast<int64_t>(sequences.size()), longest}, at::kLong);
  for (size_t i = 0; i < sequences.size(); ++i) {
    if (lengths[i] > 0) ids[static_cast<int64_t>(i)].narrow(0, 0, lengths[i]).copy_(at::tensor(*sequences[i], at::kLong));
  }
  return ids;
}

at::Tensor last_positions(const std::vector<int64_t>& lengths) {
  std::vector<int64_t> last;
  for (auto n : lengths) last.push_back(std::max<int64_t>(n - 1, 0));
  return at::tensor(last, at::kLong).unsqueeze(1);
}

std::vector<std::pair<std::string, std::vector<int64_t>>> expected_parameters(const ModelConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  const bool norm_bias = c.norm == NormKind::kLayerNorm;
  auto add_norm = [&](const std::string& prefix) {
    out.push_back({prefix + ".weight", {c.hidden_size}});
    if (norm_bias) out.push_back({prefix + ".bias", {c.hidden_size}});
  };
  auto add_linear = [&](const std::string& prefix, int64_t rows, int64_t cols, bool bias) {
    out.push_back({prefix + ".weight", {rows, cols}});
    if (bias) out.push_back({prefix + ".bias", {rows}});
  };
  const int64_t q_width = c.n_heads * c.head_dim;
  const int64_t qkv_rows = q_width + 2 * c.n_kv_heads * c.head_dim;
  const int64_t fc_in_rows = c.mlp == MlpKind::kGeluNew ? c.intermediate_size : 2 * c.intermediate_size;
  out.push_back({"embed.weight", {c.vocab_size, c.hidden_size}});
  for (int64_t i = 0; i < c.n_layers; ++i) {
    add_norm(layer_name(i, "attn_norm"));
    if (c.block_style == BlockStyle::kSequential) add_norm(layer_name(i, "mlp_norm"));
    add_linear(layer_name(i, "attn.qkv"), qkv_rows, c.hidden_size, c.qkv_bias);
    add_linear(layer_name(i, "attn.out"), c.hidden_size, q_width, c.attn_out_bias);
    add_linear(layer_name(i, "mlp.fc_in"), fc_in_rows, c.hidden_size, c.mlp_bias);
    add_linear(layer_name(i, "mlp.fc_out"), c.hidden_size, c.intermediate_size, c.mlp_bias);
  }
  add_norm("final_norm");
  if (!c.tie_embeddings) add_linear("lm_head", c.vocab_size, c.hidden_size, c.lm_head_bias);
  return out;
}

Transformer::Transformer(ModelConfig config, ParameterMap parameters)
    : config_(std::move(config)), parameters_(std::move(parameters)) {
  config_.validate();
  auto expected = expected_parameters(config_);
  for (const auto& [name, shape] : expected) {
    auto it = parameters_.find(name);
    if (it == parameters_.end()) throw Error("model parameter \"" + name + "\" is missing");
    if (it->second.sizes() != at::IntArrayRef(shape)) {
      throw Error("model parameter \"" + name + "\" has shape " + c10::str(it->second.sizes()) +
                  ", the config needs " + c10::str(at::IntArrayRef(shape)));
    }
  }
  if (parameters_.size() != expected.size()) {
    for (const auto& item : parameters_) {
      bool known = false;
      for (const auto& e : expected) known = known || e.first == item.first;
      if (!known) throw Error("unexpected model parameter \"" + item.first + "\"");
    }
  }
  bind();
}

void Transformer::bind() {
  auto get = [&](const std::string& name) -> at::Tensor {
    auto it = parameters_.find(name);
    return it == parameters_.end() ? at::Tensor() : it->second;
  };
  layers_.clear();
  for (int64_t i = 0; i < config_.n_layers; ++i) {
    Layer l;
    l.attn_norm_w = get(layer_name(i, "attn_norm.weight"));
    l.attn_norm_b = get(layer_name(i, "attn_norm.bias"));
    l.mlp_norm_w = get(layer_name(i, "mlp_norm.weight"));
    l.mlp_norm_b = get(layer_name(i, "mlp_norm.bias"));
    l.qkv_w = get(layer_name(i, "attn.qkv.weight"));
    l.qkv_b = get(layer_name(i, "attn.qkv.bias"));
    l.out_w = get(layer_name(i, "attn.out.weight"));
    l.out_b = get(layer_name(i, "attn.out.bias"));
    l.fc_in_w = get(layer_name(i, "mlp.fc_in.weight"));
    l.fc_in_b = get(layer_name(i, "mlp.fc_in.bias"));
    l.fc_out_w = get(layer_name(i, "mlp.fc_out.weight"));
    l.fc_out_b = get(layer_name(i, "mlp.fc_out.bias"));
    layers_.push_back(std::move(l));
  }
  embed_ = get("embed.weight");
  final_norm_w_ = get("final_norm.weight");
  final_norm_b_ = get("final_norm.bias");
  lm_head_w_ = config_.tie_embeddings ? embed_ : get("lm_head.weight");
  lm_head_b_ = get("lm_head.bias");
  if (!config_.masked_token_ids.empty()) {
    masked_ids_ = at::tensor(config_.masked_token_ids, at::kLong).to(embed_.device());
  }
}

Transformer Transformer::random(const ModelConfig& config, uint64_t seed, c10::ScalarType dtype,
                                double init_std) {
  // The weights are made in float32 on the CPU first: refuse before allocating what cannot fit.
  double numel = 0;
  for (const auto& [name, shape] : expected_parameters(config)) {
    double n = 1;
    for (auto d : shape) n *= static_cast<double>(d);
    numel += n;
  }
  const double bytes = numel * (4.0 + static_cast<double>(c10::elementSize(dtype)));
  const double physical = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  if (physical > 0 && bytes > physical) {
    throw Error(fmt::format("a model of {:.3g} parameters needs about {:.1f} GiB to initialise, more than this machine's "
                            "{:.1f} GiB of memory", numel, bytes / (1 << 30), physical / (1 << 30)),
                config.name, "check hidden_size, intermediate_size, n_layers and vocab_size");
  }
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  ParameterMap params;
  for (const auto& [name, shape] : expected_parameters(config)) {
    at::Tensor t;
    const bool is_bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const bool is_norm = name.find("norm.") != std::string::npos;
    if (is_norm && !is_bias) {
      t = at::ones(shape, at::kFloat);
    } else if (is_bias) {
      t = at::zeros(shape, at::kFloat);
    } else {
      t = at::empty(shape, at::kFloat);
      t.normal_(0.0, init_std, generator);
    }
    params[name] = t.to(dtype);
  }
  return Transformer(config, std::move(params));
}

const at::Tensor& Transformer::parameter(const std::string& name) const {
  auto it = parameters_.find(name);
  if (it == parameters_.end()) throw Error("no model parameter \"" + name + "\"");
  return it->second;
}

c10::ScalarType Transformer::dtype() const { return embed_.scalar_type(); }
c10::Device Transformer::device() const { return embed_.device(); }

void Transformer::to(c10::Device device, c10::ScalarType dtype) {
  for (auto& item : parameters_) item.second = item.second.to(device, dtype);
  bind();
}

at::Tensor Transformer::norm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) const {
  if (config_.norm == NormKind::kRmsNorm) return rms_norm(x, w, config_.norm_eps);
  return layer_norm(x, w, b, config_.norm_eps);
}

at::Tensor Transformer::mlp(const Layer& layer, const at::Tensor& h, const at::Tensor& residual) const {
  auto inner = optional_linear(h, layer.fc_in_w, layer.fc_in_b);
  switch (config_.mlp) {
    case MlpKind::kGeluNew: inner = gelu_new(inner); break;
    case MlpKind::kSwiGlu: inner = swiglu(inner); break;
    case MlpKind::kGeGelu: inner = gegelu(inner, config_.gegelu_limit); break;
  }
  if (residual.defined() && !layer.fc_out_b.defined()) return linear_add(inner, layer.fc_out_w, residual);
  auto out = optional_linear(inner, layer.fc_out_w, layer.fc_out_b);
  return residual.defined() ? residual + out : out;
}

std::array<at::Tensor, 3> Transformer::project_qkv(const Layer& layer, const at::Tensor& h, const at::Tensor& cos,
                                                   const at::Tensor& sin, bool rotate_k) const {
  const int64_t B = h.size(0), T = h.size(1), D = config_.head_dim;
  const int64_t Hq = config_.n_heads, Hkv = config_.n_kv_heads;
  auto qkv = optional_linear(h, layer.qkv_w, layer.qkv_b);
  auto q = qkv.narrow(-1, 0, Hq * D).view({B, T, Hq, D}).transpose(1, 2);
  auto k = qkv.narrow(-1, Hq * D, Hkv * D).view({B, T, Hkv, D}).transpose(1, 2);
  auto v = qkv.narrow(-1, (Hq + Hkv) * D, Hkv * D).view({B, T, Hkv, D}).transpose(1, 2);
  return {apply_rotary(q, cos, sin), rotate_k ? apply_rotary(k, cos, sin) : k, v};
}

AttentionMaskSpec Transformer::attention_mask(int64_t index, const at::Tensor& positions, const at::Tensor& key_lengths,
                                             BlockSparseLayout& layout) const {
  AttentionMaskSpec mask;
  mask.query_positions = positions;
  mask.key_lengths = key_lengths;
  mask.sliding_window = config_.sliding_window;
  if (config_.layer_is_blocksparse(index)) {
    layout.block_size = config_.blocksparse.block_size;
    layout.n_local_blocks = config_.blocksparse.n_local_blocks;
    layout.vert_stride = config_.blocksparse.vert_stride;
    layout.homo_head = config_.blocksparse.homo_head;
    mask.blocksparse = &layout;
  }
  return mask;
}

at::Tensor Transformer::residual_block(const Layer& layer, const at::Tensor& x,
                                       const std::function<at::Tensor(const at::Tensor&)>& attend) const {
  auto h = norm(x, layer.attn_norm_w, layer.attn_norm_b);
  if (config_.block_style == BlockStyle::kParallel) return x + attend(h) + mlp(layer, h);
  auto [y, y_normed] = add_norm(x, attend(h), layer.mlp_norm_w, layer.mlp_norm_b, config_.norm_eps,
                               config_.norm == NormKind::kRmsNorm);
  return mlp(layer, y_normed, y);
}

at::Tensor Transformer::head_logits(const at::Tensor& x) const {
  auto logits = optional_linear(x, lm_head_w_, lm_head_b_).to(at::kFloat);
  if (config_.logit_divisor != 1.0) logits = logits / config_.logit_divisor;
  if (masked_ids_.defined()) logits.index_fill_(-1, masked_ids_, std::numeric_limits<float>::lowest());
  return logits;
}

// ---- The one decoder loop and its attention inputs -------------------------------------------------

namespace {

// Whole sequences: attention over the keys of this forward.
class SequenceAttention final : public LayerAttention {
 public:
  explicit SequenceAttention(double scale) : scale_(scale) {}
  at::Tensor attend(int64_t, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const AttentionMaskSpec& mask) const override {
    return attention(q, k, v, scale_, mask);
  }

 private:
  double scale_;
};

// A KVStore step (forward_cached): new K/V written at each slot's length, all cached keys read.
class CachedAttention final : public LayerAttention {
 public:
  CachedAttention(KVStore& cache, std::vector<int64_t> slots, std::vector<int64_t> new_lengths, at::Tensor slot_index,
                  int64_t n_keys, double scale)
      : cache_(cache), slots_(std::move(slots)), new_lengths_(std::move(new_lengths)),
        slot_index_(std::move(slot_index)), n_keys_(n_keys), scale_(scale) {}
  at::Tensor attend(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const AttentionMaskSpec& mask) const override {
    cache_.write(layer, k, v, slots_, new_lengths_);
    return cache_.attend(layer, q, slots_, slot_index_, n_keys_, scale_, mask);
  }

 private:
  KVStore& cache_;
  std::vector<int64_t> slots_, new_lengths_;
  at::Tensor slot_index_;  // int64 [n] on the model's device
  int64_t n_keys_;         // longest key length after the write (known on the host: no sync)
  double scale_;
};

// The fixed-shape dense step: k rotated and appended at `positions` in one kernel (append_kv_step),
// attention over the whole cache up to each row's position.
class FixedShapeAttention final : public LayerAttention {
 public:
  FixedShapeAttention(KVCache& cache, const at::Tensor& positions, const at::Tensor& cos, const at::Tensor& sin,
                      double scale)
      : cache_(cache), positions_(positions), cos_(cos), sin_(sin), scale_(scale) {}
  bool rotates_keys() const override { return false; }
  at::Tensor attend(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const AttentionMaskSpec& mask) const override {
    append_kv_step(k, v, cos_, sin_, cache_.keys(layer), cache_.values(layer), positions_);  // k rotated there
    return attention(q, cache_.keys(layer), cache_.values(layer), scale_, mask);
  }

 private:
  KVCache& cache_;
  const at::Tensor &positions_, &cos_, &sin_;
  double scale_;
};

// The fixed-shape paged step: K/V copied into their pool rows, attention read through the table.
class PagedFixedShapeAttention final : public LayerAttention {
 public:
  PagedFixedShapeAttention(PagedKVCache& cache, const at::Tensor& page_table, at::Tensor rows, int64_t n_keys,
                           const ModelConfig& config)
      : cache_(cache), page_table_(page_table), rows_(std::move(rows)), n_keys_(n_keys), config_(config) {}
  at::Tensor attend(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const AttentionMaskSpec& mask) const override {
    const int64_t n = q.size(0), Hkv = config_.n_kv_heads, D = config_.head_dim;
    auto& key_pool = cache_.key_pool(layer);
    auto& value_pool = cache_.value_pool(layer);
    key_pool.view({-1, Hkv, D}).index_copy_(0, rows_, k.reshape({n, Hkv, D}).to(key_pool.scalar_type()));
    value_pool.view({-1, Hkv, D}).index_copy_(0, rows_, v.reshape({n, Hkv, D}).to(value_pool.scalar_type()));
    return paged_attention(q, PagedKV{key_pool, value_pool, page_table_, cache_.page_size()}, n_keys_,
                           config_.resolved_attention_scale(), mask);
  }

 private:
  PagedKVCache& cache_;
  const at::Tensor& page_table_;
  at::Tensor rows_;  // int64 [n]: the pool row of each new token
  int64_t n_keys_;
  const ModelConfig& config_;
};

}  // namespace

at::Tensor Transformer::attention_block(int64_t index, const at::Tensor& h, const DecoderInputs& in,
                                        const LayerAttention& kv) const {
  const auto& layer = layers_[index];
  const int64_t B = h.size(0), T = h.size(1), Hq = config_.n_heads, D = config_.head_dim;
  auto [q, k, v] = project_qkv(layer, h, in.cos, in.sin, kv.rotates_keys());
  BlockSparseLayout layout;
  auto mask = attention_mask(index, in.positions, in.key_lengths, layout);
  mask.segments = in.segments;
  mask.queries_are_rows = in.query_layout == QueryLayout::kRows;
  mask.no_padding = in.query_layout == QueryLayout::kRows && in.no_padding;
  mask.queries_end_at_lengths = in.query_layout == QueryLayout::kEndAtLengths;
  auto out = kv.attend(index, q, k, v, mask);
  out = out.transpose(1, 2).reshape({B, T, Hq * D});
  return optional_linear(out, layer.out_w, layer.out_b);
}

at::Tensor Transformer::block(int64_t i, const at::Tensor& x, const DecoderInputs& in, const LayerAttention& kv) const {
  return residual_block(layers_[i], x, [&](const at::Tensor& h) { return attention_block(i, h, in, kv); });
}

at::Tensor Transformer::decode(const DecoderInputs& in, const LayerAttention& kv, bool allow_recompute,
                               bool hidden_only) const {
  auto x = at::embedding(embed_, in.ids);
  if (config_.embedding_multiplier != 1.0) x = x * config_.embedding_multiplier;
  const bool recompute = allow_recompute && checkpoint_blocks_ && at::GradMode::is_enabled();
  for (int64_t i = 0; i < config_.n_layers; ++i) {
    if (block_hooks_) block_hooks_->before_block(i);
    if (recompute) {
      // The backward recomputes the block after this call returns: the lambda owns what it reads
      // (whole-sequence attention keeps no state, so a fresh one serves).
      x = checkpointed(
          [this, i, in](const at::Tensor& xi) {
            return block(i, xi, in, SequenceAttention(config_.resolved_attention_scale()));
          },
          x);
    } else {
      x = block(i, x, in, kv);
    }
    if (block_hooks_) x = block_hooks_->after_block(i, x);
  }
  x = norm(x, final_norm_w_, final_norm_b_);
  return hidden_only ? x : head_logits(x);
}

Transformer::DecoderInputs Transformer::checked_inputs(const at::Tensor& ids, const at::Tensor& positions,
                                                       const at::Tensor& key_lengths, const std::vector<bool>& long_rope,
                                                       const at::Tensor& rope_positions) const {
  PHI_CHECK(ids.dim() == 2, "token ids must be [batch, length], got ", ids.sizes());
  const int64_t min_id = ids.numel() ? ids.min().item<int64_t>() : 0;
  const int64_t max_id = ids.numel() ? ids.max().item<int64_t>() : 0;
  if (min_id < 0 || max_id >= config_.vocab_size) {
    throw Error("token id " + std::to_string(min_id < 0 ? min_id : max_id) +
                    " is outside the vocabulary [0, " + std::to_string(config_.vocab_size) + ")",
                "", "check that the ids come from this model's tokenizer");
  }
  DecoderInputs in;
  in.ids = ids.to(device());
  in.positions = positions;
  in.key_lengths = key_lengths;
  // cos/sin per row: one table when every row uses the same LongRoPE factor set.
  const bool all_long = std::all_of(long_rope.begin(), long_rope.end(), [](bool b) { return b; });
  const bool any_long = std::any_of(long_rope.begin(), long_rope.end(), [](bool b) { return b; });
  const at::Tensor& rotary_positions = rope_positions.defined() ? rope_positions : positions;
  std::tie(in.cos, in.sin) = rope_cos_sin(config_, rotary_positions, all_long);
  if (any_long && !all_long) {
    auto [cos_long, sin_long] = rope_cos_sin(config_, rotary_positions, true);
    std::vector<uint8_t> flags(long_rope.begin(), long_rope.end());
    auto rows = at::tensor(flags, at::kByte).to(at::kBool).to(in.cos.device()).view({-1, 1, 1});
    in.cos = at::where(rows, cos_long, in.cos);
    in.sin = at::where(rows, sin_long, in.sin);
  }
  return in;
}

Transformer::DecoderInputs Transformer::fixed_shape_inputs(const at::Tensor& ids, const at::Tensor& positions,
                                                           const at::Tensor& inv_freq, double mscale) const {
  const int64_t n = ids.size(0);
  DecoderInputs in;
  in.ids = ids;
  in.positions = positions.view({n, 1});
  std::tie(in.cos, in.sin) = rope_tables(in.positions, inv_freq, mscale);
  in.key_lengths = positions + 1;
  in.query_layout = QueryLayout::kEndAtLengths;
  return in;
}

Transformer::SequenceInputs Transformer::sequence_inputs(const at::Tensor& ids, const at::Tensor& lengths,
                                                        const at::Tensor& segments) const {
  const int64_t B = ids.size(0), T = ids.size(1);
  auto long_options = at::TensorOptions().dtype(at::kLong).device(device());
  SequenceInputs in;
  in.positions = at::arange(T, long_options).unsqueeze(0).expand({B, T});
  in.key_lengths = lengths.defined() ? lengths.to(long_options) : at::full({B}, T, long_options);
  if (segments.defined()) {
    PHI_CHECK(segments.sizes() == ids.sizes(), "segments must have the shape of ids ", ids.sizes(), ", got ",
              segments.sizes());
    in.segments = segments.to(long_options);
    in.rope_positions = positions_within_segments(in.segments);
  }
  return in;
}

at::Tensor Transformer::forward(const at::Tensor& ids, const at::Tensor& lengths, const at::Tensor& segments) const {
  const int64_t B = ids.size(0), T = ids.size(1);
  auto seq = sequence_inputs(ids, lengths, segments);
  const int64_t longest = lengths.defined() && B > 0 ? seq.key_lengths.max().item<int64_t>() : T;
  std::vector<bool> long_rope(static_cast<size_t>(B), rope_uses_long_factors(config_, longest));
  auto in = checked_inputs(ids, seq.positions, seq.key_lengths, long_rope, seq.rope_positions);
  in.segments = seq.segments;
  in.no_padding = !lengths.defined();
  auto logits = decode(in, SequenceAttention(config_.resolved_attention_scale()), true, false);
  if (lengths.defined()) {
    auto valid = seq.positions.lt(seq.key_lengths.unsqueeze(1)).unsqueeze(-1);
    logits = logits.masked_fill(valid.logical_not(), 0.0f);
  }
  return logits;
}

at::Tensor Transformer::hidden_states(const at::Tensor& ids, const at::Tensor& lengths) const {
  const int64_t B = ids.size(0), T = ids.size(1);
  auto seq = sequence_inputs(ids, lengths, {});
  const int64_t longest = lengths.defined() && B > 0 ? seq.key_lengths.max().item<int64_t>() : T;
  std::vector<bool> long_rope(static_cast<size_t>(B), rope_uses_long_factors(config_, longest));
  auto in = checked_inputs(ids, seq.positions, seq.key_lengths, long_rope, seq.rope_positions);
  in.no_padding = !lengths.defined();
  auto hidden = decode(in, SequenceAttention(config_.resolved_attention_scale()), true, true);
  if (lengths.defined()) {
    auto valid = seq.positions.lt(seq.key_lengths.unsqueeze(1)).unsqueeze(-1);
    hidden = hidden.masked_fill(valid.logical_not(), 0.0);
  }
  return hidden;
}

at::Tensor Transformer::loss(const at::Tensor& ids, const at::Tensor& targets, const at::Tensor& segments,
                             int64_t chunk_rows) const {
  const int64_t B = ids.size(0), T = ids.size(1);
  PHI_CHECK(targets.sizes() == ids.sizes(), "targets must have the shape of ids ", ids.sizes(), ", got ", targets.sizes());
  auto seq = sequence_inputs(ids, {}, segments);
  std::vector<bool> long_rope(static_cast<size_t>(B), rope_uses_long_factors(config_, T));
  auto in = checked_inputs(ids, seq.positions, seq.key_lengths, long_rope, seq.rope_positions);
  in.segments = seq.segments;
  in.no_padding = true;
  auto hidden = decode(in, SequenceAttention(config_.resolved_attention_scale()), true, true);
  LmHead head;
  head.weight = lm_head_w_;
  head.bias = lm_head_b_;
  head.logit_divisor = config_.logit_divisor;
  head.masked_ids = masked_ids_;
  return chunked_lm_loss(hidden.reshape({B * T, hidden.size(-1)}), head, targets.reshape({-1}), chunk_rows);
}

at::Tensor Transformer::forward_cached(const at::Tensor& ids, const std::vector<int64_t>& new_lengths,
                                       KVStore& cache, const std::vector<int64_t>& slots,
                                       const at::Tensor& logit_positions) const {
  const int64_t B = ids.size(0), T = ids.size(1);
  if (logit_positions.defined()) {
    PHI_CHECK(logit_positions.dim() == 2 && logit_positions.size(0) == B && logit_positions.scalar_type() == at::kLong,
              "logit_positions must be int64 [", B, ", K]");
    PHI_CHECK(logit_positions.numel() == 0 ||
                  (logit_positions.min().item<int64_t>() >= 0 && logit_positions.max().item<int64_t>() < T),
              "logit_positions must lie in [0, ", T, ")");
  }
  std::vector<int64_t> step_slots;
  if (slots.empty()) {
    PHI_CHECK(B == cache.batch_size(), "ids batch ", B, " != cache batch ", cache.batch_size());
    for (int64_t b = 0; b < B; ++b) step_slots.push_back(b);
  } else {
    PHI_CHECK(static_cast<int64_t>(slots.size()) == B, "slots needs ", B, " entries");
    for (auto s : slots) PHI_CHECK(s >= 0 && s < cache.batch_size(), "slot ", s, " outside the cache");
    step_slots = slots;
  }
  PHI_CHECK(static_cast<int64_t>(new_lengths.size()) == B, "new_lengths needs ", B, " entries");
  const bool all_full = std::all_of(new_lengths.begin(), new_lengths.end(), [T](int64_t n) { return n == T; });
  int64_t n_keys = 1;
  for (size_t i = 0; i < step_slots.size(); ++i) n_keys = std::max(n_keys, cache.length(step_slots[i]) + new_lengths[i]);
  for (auto n : new_lengths) PHI_CHECK(n >= 0 && n <= T, "new length ", n, " outside [0, ", T, "]");
  cache.prepare(step_slots, new_lengths, T);
  auto long_options = at::TensorOptions().dtype(at::kLong).device(device());
  std::vector<int64_t> starts;
  std::vector<bool> long_rope;
  for (auto s : step_slots) {
    starts.push_back(cache.length(s));
    long_rope.push_back(cache.long_rope(s));
  }
  auto slot_index = at::tensor(step_slots, at::kLong).to(device());
  auto start = at::tensor(starts, at::kLong).to(device());
  auto positions = start.unsqueeze(1) + at::arange(T, long_options).unsqueeze(0);
  auto new_len = at::tensor(new_lengths, at::kLong).to(device());
  auto in = checked_inputs(ids, positions, start + new_len, long_rope);
  in.query_layout = all_full ? QueryLayout::kEndAtLengths : QueryLayout::kAtPositions;
  CachedAttention kv(cache, step_slots, new_lengths, slot_index, n_keys, config_.resolved_attention_scale());
  const bool selected = logit_positions.defined();
  auto out = decode(in, kv, false, selected);
  cache.advance(step_slots, new_lengths);
  if (selected) {
    auto index = logit_positions.to(device()).unsqueeze(-1).expand({B, logit_positions.size(1), out.size(-1)});
    return head_logits(out.gather(1, index));
  }
  auto logits = out;
  auto valid = at::arange(T, long_options).unsqueeze(0).lt(new_len.unsqueeze(1)).unsqueeze(-1);
  return logits.masked_fill(valid.logical_not(), 0.0f);
}

at::Tensor Transformer::decode_step_fixed_shape(const at::Tensor& ids, const at::Tensor& positions,
                                                const at::Tensor& inv_freq, double mscale, KVCache& cache) const {
  const int64_t n = ids.size(0);
  PHI_CHECK(ids.dim() == 2 && ids.size(1) == 1 && positions.dim() == 1 && positions.size(0) == n,
            "decode_step_fixed_shape takes ids [n, 1] and positions [n]");
  PHI_CHECK(n == cache.batch_size(), "decode_step_fixed_shape runs every cache row: ", n, " != ", cache.batch_size());
  auto in = fixed_shape_inputs(ids, positions, inv_freq, mscale);
  return decode(in, FixedShapeAttention(cache, positions, in.cos, in.sin, config_.resolved_attention_scale()), false,
                false);
}

at::Tensor Transformer::decode_step_paged(const at::Tensor& ids, const at::Tensor& positions, const at::Tensor& page_table,
                                          const at::Tensor& inv_freq, double mscale, PagedKVCache& cache) const {
  const int64_t n = ids.size(0);
  PHI_CHECK(ids.dim() == 2 && ids.size(1) == 1 && positions.dim() == 1 && positions.size(0) == n &&
                page_table.dim() == 2 && page_table.size(0) == n && page_table.scalar_type() == at::kInt,
            "decode_step_paged takes ids [n, 1], positions [n] and an int32 page table [n, W]");
  const int64_t page = cache.page_size(), n_keys = page_table.size(1) * page;
  auto in = fixed_shape_inputs(ids, positions, inv_freq, mscale);
  // The pool row of each new token: its page from the table, its offset in the page.
  auto rows = page_table.gather(1, at::div(in.positions, page, "floor")).view({n}).to(at::kLong) * page +
              positions.remainder(page);
  return decode(in, PagedFixedShapeAttention(cache, page_table, rows, n_keys, config_), false, false);
}

KVCache Transformer::make_cache(int64_t batch_size, int64_t capacity, int64_t planned_length) const {
  return KVCache(config_, batch_size, capacity, planned_length, dtype(), device());
}

PagedKVCache Transformer::make_paged_cache(int64_t max_sequences, int64_t n_pages, int64_t page_size,
                                           int64_t planned_length) const {
  return PagedKVCache(config_, max_sequences, n_pages, page_size, planned_length, dtype(), device());
}

}  // namespace phi
