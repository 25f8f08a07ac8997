// A batched key/value cache: per layer K and V [B, n_kv_heads, capacity, head_dim], and the number
// of valid positions of each sequence. Sequences in a batch may have different lengths; new tokens
// of sequence b are written at positions [length_b, length_b + n).
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "phi/config/model_config.h"

namespace phi {

class KVCache {
 public:
  /// `planned_length`: the longest total length (prompt + new tokens) any sequence will reach; it
  /// fixes LongRoPE's factor set for the whole request and must fit `capacity`.
  KVCache(const ModelConfig& config, int64_t batch_size, int64_t capacity, int64_t planned_length,
          c10::ScalarType dtype, c10::Device device);

  int64_t batch_size() const { return batch_size_; }
  int64_t capacity() const { return capacity_; }
  bool long_rope() const { return long_rope_; }
  /// int64 [B] on the cache's device.
  const at::Tensor& lengths() const { return lengths_; }
  std::vector<int64_t> lengths_vector() const;
  /// Bytes held by the K/V tensors.
  int64_t bytes() const;

  at::Tensor& keys(int64_t layer) { return keys_[layer]; }
  at::Tensor& values(int64_t layer) { return values_[layer]; }

  /// Writes k, v [B, Hkv, T, D] of `layer` for the first new_lengths[b] tokens of each sequence at
  /// its current length; throws if a sequence would pass the capacity.
  void write(int64_t layer, const at::Tensor& k, const at::Tensor& v,
             const std::vector<int64_t>& new_lengths);
  /// Adds new_lengths to the lengths (after every layer has been written).
  void advance(const std::vector<int64_t>& new_lengths);
  /// Forgets everything (lengths back to zero).
  void reset();

 private:
  int64_t batch_size_;
  int64_t capacity_;
  bool long_rope_;
  std::vector<at::Tensor> keys_;
  std::vector<at::Tensor> values_;
  at::Tensor lengths_;
  std::vector<int64_t> host_lengths_;
};

}  // namespace phi
