// The attention dispatch point. Every attention in the engine (training forward, prefill, decode)
// goes through attention(); the ATen reference below is the CPU path and the tests' oracle, and the
// fused CUDA kernels plug in here.
#pragma once

#include <cstdint>
#include <utility>

#include <ATen/core/Tensor.h>

namespace phi {

/// Phi-3-small's block-sparse pattern: key block kb is visible from query block qb for head h iff
/// qb - kb < n_local_blocks or (kb + h * head_step + 1) % vert_stride == 0 (token causality on top),
/// with head_step = max(1, vert_stride / n_heads), or 0 when every head shares the pattern.
struct BlockSparseLayout {
  int64_t block_size = 64;
  int64_t n_local_blocks = 16;
  int64_t vert_stride = 8;
  bool homo_head = false;
};

/// Which keys each query may see. Key j of a sequence sits at absolute position j.
struct AttentionMaskSpec {
  at::Tensor query_positions;  // int64 [B, Tq]: absolute position of each query
  at::Tensor key_lengths;      // int64 [B]: keys [0, len) hold data
  int64_t sliding_window = 0;  // 0: none; else key s visible from p iff p - s < window
  const BlockSparseLayout* blocksparse = nullptr;  // nullptr: dense causal
  at::Tensor segments;         // optional int64 [B, T] (Tq == Tk, training forward): key s is
                               // visible from query p only inside the same segment (document)
  // Hints that let the fused / library kernels take over (they restate what the tensors say):
  bool queries_are_rows = false;        // query i sits at position i (whole-sequence forward)
  bool queries_end_at_lengths = false;  // query t of Tq sits at key_lengths[b] - Tq + t (decode)
  bool no_padding = false;              // key_lengths[b] == Tk for every b
};

/// softmax(scale * q k^T + mask) v with GQA (query head h uses kv head h / (Hq / Hkv)).
/// q [B, Hq, Tq, D], k and v [B, Hkv, Tk, D] (any floating dtype; accumulation in float32);
/// returns [B, Hq, Tq, D] in q's dtype.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                     const AttentionMaskSpec& mask);

/// Keys and values stored in fixed-size pages (PagedKVCache): pools [n_pages, page_size, Hkv, D];
/// page_table int32 [B, pages] lists each sequence's pages in order: key j of sequence b is row
/// j % page_size of page page_table[b][j / page_size]. Entries past a sequence's keys may name
/// any page (their keys are masked by the lengths).
struct PagedKV {
  at::Tensor key_pool, value_pool, page_table;
  int64_t page_size = 16;
};

/// attention() over paged keys [0, n_keys) of each sequence: the paged decode kernel where the
/// fused backend takes the step, else the pages gathered into [B, Hkv, n_keys, D] (gather_pages)
/// and attention().
at::Tensor paged_attention(const at::Tensor& q, const PagedKV& kv, int64_t n_keys, double scale,
                           const AttentionMaskSpec& mask);

/// The reference read of a paged cache: keys and values [B, Hkv, n_keys, D].
std::pair<at::Tensor, at::Tensor> gather_pages(const PagedKV& kv, int64_t n_keys);

/// The ATen reference (float32 math, no repeated K/V materialised).
at::Tensor attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               double scale, const AttentionMaskSpec& mask);

/// For segment ids [B, T] (non-decreasing along T): each token's index within its segment
/// (positions restart at every segment's first token).
at::Tensor positions_within_segments(const at::Tensor& segments);

/// The boolean mask [B, H or 1, Tq, Tk] (true = visible) that the spec describes, for H query heads.
at::Tensor build_attention_mask(const AttentionMaskSpec& mask, int64_t n_heads, int64_t n_keys);

}  // namespace phi
