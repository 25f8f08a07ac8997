// One decoder-only transformer for the whole phi family; family differences are ModelConfig flags.
//
// Parameters use engine-wide canonical names (the Hugging Face names are mapped in
// models/families/*.cpp):
//   embed.weight                          [V, H]
//   layers.{i}.attn_norm.{weight,bias}    the block's first norm (phi-1/2: the one shared norm)
//   layers.{i}.mlp_norm.{weight,bias}     sequential blocks only
//   layers.{i}.attn.qkv.{weight,bias}     [(Hq + 2 Hkv) D, H] as [Q | K | V], head-major
//   layers.{i}.attn.out.{weight,bias}     [H, Hq D]
//   layers.{i}.mlp.fc_in.{weight,bias}    [I, H] (gelu_new) or [2I, H] as [gate | up] halves
//   layers.{i}.mlp.fc_out.{weight,bias}   [H, I]
//   final_norm.{weight,bias}
//   lm_head.{weight,bias}                 absent when tied to embed.weight
// Biases and LayerNorm biases exist only where the config says so.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "phi/config/model_config.h"
#include "phi/models/kv_cache.h"

namespace phi {

struct AttentionMaskSpec;
struct BlockSparseLayout;

using ParameterMap = std::map<std::string, at::Tensor>;

/// Right-pads id sequences (with 0) into one int64 [n, longest] tensor on the CPU; `lengths`
/// receives each sequence's length (the new_lengths / lengths the forwards take).
at::Tensor pad_token_ids(const std::vector<const std::vector<int64_t>*>& sequences, std::vector<int64_t>& lengths);
/// int64 [n, 1]: each sequence's last position (length - 1; 0 for an empty one), the logit
/// positions of a prefill that samples from the end of each prompt.
at::Tensor last_positions(const std::vector<int64_t>& lengths);

/// The canonical parameter names and shapes that `config` needs.
std::vector<std::pair<std::string, std::vector<int64_t>>> expected_parameters(const ModelConfig& config);

/// Where a layer's keys and values live: attention takes the KV variant as an input (the whole
/// sequence, a KVStore step, the fixed-shape dense or paged step). transformer.cpp has the four.
class LayerAttention {
 public:
  virtual ~LayerAttention() = default;
  /// False when the cache write rotates k itself (the fused KV-append kernel).
  virtual bool rotates_keys() const { return true; }
  /// Writes the new k, v where this variant keeps them and attends q over its keys; [n, Hq, T, D].
  virtual at::Tensor attend(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const AttentionMaskSpec& mask) const = 0;
};

/// What a caller runs around each decoder block of a forward (fully sharded training gathers the
/// block's parameters before it and frees them after). The blocks recomputed by activation
/// checkpointing in the backward pass do not call it.
class BlockHooks {
 public:
  virtual ~BlockHooks() = default;
  virtual void before_block(int64_t index) = 0;
  /// Returns the block's output (the same tensor; a hook may be registered on it for the backward).
  virtual at::Tensor after_block(int64_t index, const at::Tensor& output) = 0;
};

class Transformer {
 public:
  /// Checks that `parameters` holds exactly the expected names with the expected shapes.
  Transformer(ModelConfig config, ParameterMap parameters);

  /// A model with freshly initialised weights: N(0, init_std) for matrices and embeddings, ones
  /// and zeros for norms, zeros for biases; reproducible from `seed`.
  static Transformer random(const ModelConfig& config, uint64_t seed, c10::ScalarType dtype,
                            double init_std = 0.02);

  const ModelConfig& config() const { return config_; }
  const ParameterMap& parameters() const { return parameters_; }
  /// Mutable access for training: the tensors are the ones the model computes with (an optimizer
  /// updates them in place).
  ParameterMap& mutable_parameters() { return parameters_; }
  const at::Tensor& parameter(const std::string& name) const;
  c10::ScalarType dtype() const;
  c10::Device device() const;
  /// Moves/casts every parameter.
  void to(c10::Device device, c10::ScalarType dtype);

  /// Training/scoring forward over whole sequences: ids int64 [B, T]; `lengths` int64 [B] (optional,
  /// right padding) marks each sequence's real tokens; `segments` int64 [B, T] (optional, packed
  /// documents, non-decreasing along T) keeps attention inside a document and restarts positions at
  /// each document's first token. Logits float32 [B, T, V] with padding rows 0.
  at::Tensor forward(const at::Tensor& ids, const at::Tensor& lengths = {}, const at::Tensor& segments = {}) const;

  /// The final-normed hidden states [B, T, hidden] (the model's dtype) of the same forward, the
  /// head not applied; padding rows 0. Features for classifiers (data/quality_classifier.h).
  at::Tensor hidden_states(const at::Tensor& ids, const at::Tensor& lengths = {}) const;

  /// Mean next-token cross-entropy of the whole-sequence forward against targets [B, T] (int64, -100
  /// ignored) through the chunked head (kernels/lm_loss.h): the [B T, V] float32 logits are never
  /// formed. segments as in forward().
  at::Tensor loss(const at::Tensor& ids, const at::Tensor& targets, const at::Tensor& segments = {},
                  int64_t chunk_rows = 4096) const;

  /// Recompute each block's activations in the backward pass instead of keeping them (activation
  /// checkpointing, per block); gradients are unchanged.
  void set_activation_checkpointing(bool on) { checkpoint_blocks_ = on; }
  bool activation_checkpointing() const { return checkpoint_blocks_; }
  /// Hooks around every block of every forward (null: none). Not owned; must outlive their use.
  void set_block_hooks(BlockHooks* hooks) { block_hooks_ = hooks; }

  /// Incremental forward over a KV cache: row i of ids [n, T] is appended to cache slot slots[i]
  /// (all slots in order when `slots` is empty) at the slot's length; new_lengths[i] <= T says how
  /// many of the T tokens are real (prefill of unequal prompts). Returns float32 logits [n, T, V]
  /// (positions past new_lengths[i] are 0). With `logit_positions` (int64 [n, K], each in [0, T))
  /// only those positions' logits are computed: [n, K, V] (the head is the largest matrix of a
  /// small model; scoring and prefill need a few positions, not every one).
  at::Tensor forward_cached(const at::Tensor& ids, const std::vector<int64_t>& new_lengths, KVStore& cache,
                            const std::vector<int64_t>& slots = {}, const at::Tensor& logit_positions = {}) const;

  /// One decode step for cache rows 0..n-1 with every input on the device and no host reads, so
  /// that it can be captured in a CUDA graph (infer/decode_graph.h): ids int64 [n, 1]; positions
  /// int64 [n] (each row's current length: where the new K/V go); inv_freq float32 (rope.h's
  /// rope_inverse_frequencies on the device) and mscale for the rotary tables. Attention covers keys
  /// [0, positions] of the whole cache (the decode kernel with the fused backend). The caller
  /// advances the cache's host lengths. Returns float32 logits [n, 1, V].
  at::Tensor decode_step_fixed_shape(const at::Tensor& ids, const at::Tensor& positions, const at::Tensor& inv_freq,
                                     double mscale, KVCache& cache) const;

  /// One decode step over a paged cache with fixed shapes and every input on the device, so that it
  /// can be captured in a CUDA graph (infer/paged_decode_graph.h): ids int64 [n, 1]; positions int64
  /// [n] (each row's current length: where its K/V go); page_table int32 [n, W] from
  /// PagedKVCache::page_table (a row's pages, then the scratch page; padding rows are all scratch
  /// and have position 0); inv_freq and mscale as in decode_step_fixed_shape (one LongRoPE factor set
  /// for every row). Attention covers keys [0, positions] read through the table. The caller takes
  /// the pages before (PagedKVCache::allocate) and advances the lengths after. Returns float32
  /// logits [n, 1, V].
  at::Tensor decode_step_paged(const at::Tensor& ids, const at::Tensor& positions, const at::Tensor& page_table,
                               const at::Tensor& inv_freq, double mscale, PagedKVCache& cache) const;

  /// A KV cache for this model in its dtype and on its device.
  KVCache make_cache(int64_t batch_size, int64_t capacity, int64_t planned_length) const;
  /// A paged KV cache for this model in its dtype and on its device: `max_sequences` slots sharing
  /// `n_pages` pages of `page_size` tokens, LongRoPE's factor set chosen from `planned_length`.
  PagedKVCache make_paged_cache(int64_t max_sequences, int64_t n_pages, int64_t page_size,
                                int64_t planned_length) const;

 private:
  struct Layer {
    at::Tensor attn_norm_w, attn_norm_b, mlp_norm_w, mlp_norm_b;
    at::Tensor qkv_w, qkv_b, out_w, out_b, fc_in_w, fc_in_b, fc_out_w, fc_out_b;
  };
  void bind();
  at::Tensor norm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) const;
  /// The MLP of h; with `residual`, residual + MLP(h) (the sum fused into the last GEMV where it can be).
  at::Tensor mlp(const Layer& layer, const at::Tensor& h, const at::Tensor& residual = {}) const;
  /// How the queries of one forward sit against its keys (the attention mask's hints).
  enum class QueryLayout {
    kRows,          // whole sequences: query t is key t (with key_lengths for right padding)
    kEndAtLengths,  // cached steps whose rows are all full: the queries are each row's last keys
    kAtPositions,   // cached prefill of unequal rows: the query positions say where each query is
  };
  /// Everything the one decoder loop (decode()) takes besides the weights: token ids on the device,
  /// absolute query positions (masks), the rotary tables, key lengths, optional segment ids.
  struct DecoderInputs {
    at::Tensor ids, positions, cos, sin, key_lengths, segments;
    QueryLayout query_layout = QueryLayout::kRows;
    bool no_padding = false;  // kRows: key_lengths are all T
  };
  /// The decoder: embed, every block (recomputed in the backward with activation checkpointing
  /// when `allow_recompute`), final norm, and the head unless `hidden_only`.
  at::Tensor decode(const DecoderInputs& in, const LayerAttention& kv, bool allow_recompute, bool hidden_only) const;
  /// Block `index` on the residual stream x, and its attention on the normed h.
  at::Tensor block(int64_t index, const at::Tensor& x, const DecoderInputs& in, const LayerAttention& kv) const;
  at::Tensor attention_block(int64_t index, const at::Tensor& h, const DecoderInputs& in, const LayerAttention& kv) const;
  /// The inputs of a forward with host-side checks: ids validated against the vocabulary and moved
  /// to the device; rotary tables per row (long_rope: whether LongRoPE's long factors apply);
  /// positions are absolute (masks), rope_positions (default: positions) rotate q and k.
  DecoderInputs checked_inputs(const at::Tensor& ids, const at::Tensor& positions, const at::Tensor& key_lengths,
                               const std::vector<bool>& long_rope, const at::Tensor& rope_positions = {}) const;
  /// The inputs of a fixed-shape decode step (no host reads): positions [n] become [n, 1] query
  /// positions, key lengths positions + 1, the rotary tables from inv_freq and mscale.
  DecoderInputs fixed_shape_inputs(const at::Tensor& ids, const at::Tensor& positions, const at::Tensor& inv_freq,
                                   double mscale) const;
  /// Layer's q [n, Hq, T, D], k and v [n, Hkv, T, D] from h [n, T, H], q and k rotated (k only when rotate_k).
  std::array<at::Tensor, 3> project_qkv(const Layer& layer, const at::Tensor& h, const at::Tensor& cos,
                                        const at::Tensor& sin, bool rotate_k = true) const;
  /// Layer `index`'s mask over these query positions and key lengths: the config's sliding window,
  /// and its block-sparse pattern (filled into `layout`, which must outlive the mask) when the layer
  /// is block-sparse. Callers add the segments and the hints.
  AttentionMaskSpec attention_mask(int64_t index, const at::Tensor& positions, const at::Tensor& key_lengths,
                                   BlockSparseLayout& layout) const;
  /// x plus attention plus MLP (parallel or sequential block); attend maps the normed input to the
  /// attention output.
  at::Tensor residual_block(const Layer& layer, const at::Tensor& x,
                            const std::function<at::Tensor(const at::Tensor&)>& attend) const;
  /// float32 logits of final-normed hidden states (divisor, masked ids applied).
  at::Tensor head_logits(const at::Tensor& x) const;
  /// The inputs of a whole-sequence forward: absolute positions, key lengths, segment ids on the
  /// device and the rotary positions (restarting per segment; undefined without segments).
  struct SequenceInputs {
    at::Tensor positions, key_lengths, segments, rope_positions;
  };
  SequenceInputs sequence_inputs(const at::Tensor& ids, const at::Tensor& lengths, const at::Tensor& segments) const;
  ModelConfig config_;
  bool checkpoint_blocks_ = false;
  BlockHooks* block_hooks_ = nullptr;
  ParameterMap parameters_;
  std::vector<Layer> layers_;
  at::Tensor embed_, final_norm_w_, final_norm_b_, lm_head_w_, lm_head_b_, masked_ids_;
};

}  // namespace phi
