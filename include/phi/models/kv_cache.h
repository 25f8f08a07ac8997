// Key/value caches for incremental decoding. A cache has `batch_size()` slots, each holding one
// sequence's keys and values for every layer and its number of valid positions; new tokens of slot
// s are written at positions [length_s, length_s + n). Two layouts:
//   - KVCache: per layer K and V [slots, n_kv_heads, capacity, head_dim], a fixed capacity per slot
//     (batch generation, the CUDA-graph decode step);
//   - PagedKVCache: per layer K and V pools of fixed-size pages [pages, page_size, n_kv_heads,
//     head_dim] shared by all slots; a slot holds a page table and takes pages as it grows, so the
//     memory follows the tokens actually cached (the server's continuous batching).
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "phi/config/model_config.h"

namespace phi {

struct AttentionMaskSpec;

/// What a cached forward (Transformer::forward_cached) needs from a cache.
class KVStore {
 public:
  virtual ~KVStore() = default;
  /// Number of slots (sequences the cache can hold at once).
  virtual int64_t batch_size() const = 0;
  virtual int64_t length(int64_t slot) const = 0;
  /// Whether slot `slot` uses LongRoPE's long factors.
  virtual bool long_rope(int64_t slot) const = 0;
  /// Bytes held by the K/V tensors.
  virtual int64_t bytes() const = 0;
  /// Makes room for new_lengths[i] more tokens in slots[i] out of rows of T tokens, before any layer
  /// is written. Throws phi::Error (and changes nothing) when they do not fit.
  virtual void prepare(const std::vector<int64_t>& slots, const std::vector<int64_t>& new_lengths, int64_t T) = 0;
  /// Writes k, v [n, Hkv, T, D] of `layer` for the step prepare() announced: row i goes to slot
  /// slots[i], its first new_lengths[i] tokens at the slot's current length.
  virtual void write(int64_t layer, const at::Tensor& k, const at::Tensor& v, const std::vector<int64_t>& slots,
                     const std::vector<int64_t>& new_lengths) = 0;
  /// Attention of q [n, Hq, Tq, D] (row i: slot slots[i]; slot_index: the same ids as an int64
  /// tensor on the cache's device) over keys [0, n_keys) of `layer`; mask as in attention().
  virtual at::Tensor attend(int64_t layer, const at::Tensor& q, const std::vector<int64_t>& slots,
                            const at::Tensor& slot_index, int64_t n_keys, double scale,
                            const AttentionMaskSpec& mask) = 0;
  /// Adds new_lengths[i] to the length of slots[i] (after every layer has been written).
  virtual void advance(const std::vector<int64_t>& slots, const std::vector<int64_t>& new_lengths) = 0;
};

class KVCache : public KVStore {
 public:
  /// `planned_length`: the longest total length (prompt + new tokens) any sequence will reach; it
  /// fixes LongRoPE's factor set of every slot (see reset_slot to change one) and must fit
  /// `capacity`.
  KVCache(const ModelConfig& config, int64_t batch_size, int64_t capacity, int64_t planned_length,
          c10::ScalarType dtype, c10::Device device);

  int64_t batch_size() const override { return batch_size_; }
  int64_t capacity() const { return capacity_; }
  bool long_rope(int64_t slot) const override { return long_rope_[slot]; }
  int64_t length(int64_t slot) const override { return host_lengths_[slot]; }
  std::vector<int64_t> lengths_vector() const { return host_lengths_; }
  int64_t bytes() const override;

  at::Tensor& keys(int64_t layer) { return keys_[layer]; }
  at::Tensor& values(int64_t layer) { return values_[layer]; }

  /// Throws if a slot would pass the capacity.
  void prepare(const std::vector<int64_t>& slots, const std::vector<int64_t>& new_lengths, int64_t T) override;
  void write(int64_t layer, const at::Tensor& k, const at::Tensor& v, const std::vector<int64_t>& slots,
             const std::vector<int64_t>& new_lengths) override;
  at::Tensor attend(int64_t layer, const at::Tensor& q, const std::vector<int64_t>& slots, const at::Tensor& slot_index,
                    int64_t n_keys, double scale, const AttentionMaskSpec& mask) override;
  void advance(const std::vector<int64_t>& slots, const std::vector<int64_t>& new_lengths) override;
  /// Empties one slot and fixes its LongRoPE factor set from the request's planned length.
  void reset_slot(int64_t slot, int64_t planned_length);
  /// Makes each slot of `to_slots` hold the first `length` positions of slot `from` (keys, values,
  /// LongRoPE factor set): a shared prompt prefix computed once serves many sequences.
  void copy_prefix(int64_t from, int64_t length, const std::vector<int64_t>& to_slots);
  /// Empties every slot.
  void reset();

 private:
  /// Throws if slot `slot` cannot take `n` more positions.
  void check_fits(int64_t slot, int64_t n) const;

  const ModelConfig* config_;
  int64_t batch_size_;
  int64_t capacity_;
  std::vector<bool> long_rope_;
  std::vector<at::Tensor> keys_;
  std::vector<at::Tensor> values_;
  std::vector<int64_t> host_lengths_;
};

class PagedKVCache : public KVStore {
 public:
  /// `max_sequences` slots sharing `n_pages` pages of `page_size` tokens per layer;
  /// `planned_length` fixes every slot's LongRoPE factor set as in KVCache (reset_slot changes one).
  PagedKVCache(const ModelConfig& config, int64_t max_sequences, int64_t n_pages, int64_t page_size,
               int64_t planned_length, c10::ScalarType dtype, c10::Device device);

  int64_t batch_size() const override { return static_cast<int64_t>(slots_.size()); }
  int64_t length(int64_t slot) const override { return slots_[slot].length; }
  bool long_rope(int64_t slot) const override { return slots_[slot].long_rope; }
  int64_t bytes() const override;
  int64_t page_size() const { return page_size_; }
  int64_t n_pages() const { return n_pages_; }
  int64_t free_pages() const { return static_cast<int64_t>(free_.size()); }
  /// Tokens the whole pool holds.
  int64_t token_capacity() const { return n_pages_ * page_size_; }
  /// The pages slot `slot` holds, in sequence order.
  const std::vector<int32_t>& pages(int64_t slot) const { return slots_[slot].pages; }
  /// Pages that slot `slot` must take before it can hold `extra` more tokens.
  int64_t pages_needed(int64_t slot, int64_t extra) const;
  /// Pages a sequence of `tokens` tokens occupies.
  int64_t pages_for(int64_t tokens) const { return (tokens + page_size_ - 1) / page_size_; }

  /// Pool of `layer`: [n_pages + 1, page_size, Hkv, D]; the last page is scratch_page().
  at::Tensor& key_pool(int64_t layer) { return keys_[layer]; }
  at::Tensor& value_pool(int64_t layer) { return values_[layer]; }
  /// A page no sequence ever holds: the padding rows of a fixed-size decode step write there.
  int32_t scratch_page() const { return static_cast<int32_t>(n_pages_); }

  /// Takes the pages that slots[i] needs for new_lengths[i] more tokens; throws (taking none) when
  /// the pool has too few free. prepare() does this and builds the step's index tensors.
  void allocate(const std::vector<int64_t>& slots, const std::vector<int64_t>& new_lengths);
  /// Host int32 page table [rows.size(), width]: row i lists slot rows[i]'s pages, then the scratch
  /// page; a row of -1 is all scratch (padding). Throws if a slot holds more than `width` pages.
  at::Tensor page_table(const std::vector<int64_t>& rows, int64_t width) const;

  /// Takes the pages the step needs; throws (taking none) when the pool has too few free.
  void prepare(const std::vector<int64_t>& slots, const std::vector<int64_t>& new_lengths, int64_t T) override;
  void write(int64_t layer, const at::Tensor& k, const at::Tensor& v, const std::vector<int64_t>& slots,
             const std::vector<int64_t>& new_lengths) override;
  at::Tensor attend(int64_t layer, const at::Tensor& q, const std::vector<int64_t>& slots, const at::Tensor& slot_index,
                    int64_t n_keys, double scale, const AttentionMaskSpec& mask) override;
  void advance(const std::vector<int64_t>& slots, const std::vector<int64_t>& new_lengths) override;
  /// Returns slot `slot`'s pages to the pool, empties it and fixes its LongRoPE factor set from the
  /// request's planned length (prompt + new tokens).
  void reset_slot(int64_t slot, int64_t planned_length);
  /// Returns slot `slot`'s pages to the pool and empties it.
  void release(int64_t slot);

 private:
  struct Slot {
    std::vector<int32_t> pages;
    int64_t length = 0;
    bool long_rope = false;
  };
  const ModelConfig* config_;
  int64_t n_pages_;
  int64_t page_size_;
  std::vector<Slot> slots_;
  std::vector<int32_t> free_;  // a stack: the most recently freed page is taken first
  std::vector<at::Tensor> keys_;
  std::vector<at::Tensor> values_;
  // The step prepare() set up: pool rows of the new tokens, their rows in the flattened [n * T]
  // input, and the page table of the step's slots (int32 [n, pages], on the device).
  at::Tensor step_rows_, step_sources_, step_table_;
  bool step_all_rows_ = false;  // every input row is written (no index_select needed)
};

}  // namespace phi
