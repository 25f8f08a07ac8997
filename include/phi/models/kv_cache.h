// A batched key/value cache of `batch_size` slots: per layer K and V
// [slots, n_kv_heads, capacity, head_dim], and the number of valid positions of each slot. Slots
// have their own lengths; new tokens of slot s are written at positions [length_s, length_s + n).
// A server reuses slots: reset_slot() frees one for the next request.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "phi/config/model_config.h"

namespace phi {

class KVCache {
 public:
  /// `planned_length`: the longest total length (prompt + new tokens) any sequence will reach; it
  /// fixes LongRoPE's factor set of every slot (see reset_slot to change one) and must fit
  /// `capacity`.
  KVCache(const ModelConfig& config, int64_t batch_size, int64_t capacity, int64_t planned_length,
          c10::ScalarType dtype, c10::Device device);

  int64_t batch_size() const { return batch_size_; }
  int64_t capacity() const { return capacity_; }
  /// Whether slot `slot` uses LongRoPE's long factors.
  bool long_rope(int64_t slot) const { return long_rope_[slot]; }
  int64_t length(int64_t slot) const { return host_lengths_[slot]; }
  std::vector<int64_t> lengths_vector() const { return host_lengths_; }
  /// Bytes held by the K/V tensors.
  int64_t bytes() const;

  at::Tensor& keys(int64_t layer) { return keys_[layer]; }
  at::Tensor& values(int64_t layer) { return values_[layer]; }

  /// Writes k, v [n, Hkv, T, D] of `layer`: row i goes to slot slots[i], its first new_lengths[i]
  /// tokens at the slot's current length. Throws if a slot would pass the capacity.
  void write(int64_t layer, const at::Tensor& k, const at::Tensor& v, const std::vector<int64_t>& slots,
             const std::vector<int64_t>& new_lengths);
  /// Adds new_lengths[i] to the length of slots[i] (after every layer has been written).
  void advance(const std::vector<int64_t>& slots, const std::vector<int64_t>& new_lengths);
  /// Empties one slot and fixes its LongRoPE factor set from the request's planned length.
  void reset_slot(int64_t slot, int64_t planned_length);
  /// Empties every slot.
  void reset();

 private:
  const ModelConfig* config_;
  int64_t batch_size_;
  int64_t capacity_;
  std::vector<bool> long_rope_;
  std::vector<at::Tensor> keys_;
  std::vector<at::Tensor> values_;
  std::vector<int64_t> host_lengths_;
};

}  // namespace phi
