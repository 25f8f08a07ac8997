#include "phi/models/kv_cache.h"

#include <ATen/ATen.h>

#include "phi/core/error.h"
#include "phi/models/rope.h"

namespace phi {

KVCache::KVCache(const ModelConfig& config, int64_t batch_size, int64_t capacity, int64_t planned_length,
                 c10::ScalarType dtype, c10::Device device)
    : config_(&config), batch_size_(batch_size), capacity_(capacity), host_lengths_(batch_size, 0) {
  PHI_CHECK(batch_size > 0 && capacity > 0, "KV cache needs batch_size > 0 and capacity > 0, got ",
            batch_size, " and ", capacity);
  if (planned_length > capacity) {
    throw Error("planned length " + std::to_string(planned_length) + " exceeds the KV cache capacity " +
                std::to_string(capacity));
  }
  long_rope_.assign(batch_size, rope_uses_long_factors(config, planned_length));
  auto options = at::TensorOptions().dtype(dtype).device(device);
  for (int64_t i = 0; i < config.n_layers; ++i) {
    keys_.push_back(at::zeros({batch_size, config.n_kv_heads, capacity, config.head_dim}, options));
    values_.push_back(at::zeros({batch_size, config.n_kv_heads, capacity, config.head_dim}, options));
  }
}

int64_t KVCache::bytes() const {
  int64_t total = 0;
  for (const auto& t : keys_) total += t.numel() * t.element_size();
  for (const auto& t : values_) total += t.numel() * t.element_size();
  return total;
}

void KVCache::write(int64_t layer, const at::Tensor& k, const at::Tensor& v, const std::vector<int64_t>& slots,
                    const std::vector<int64_t>& new_lengths) {
  PHI_CHECK(slots.size() == new_lengths.size() && static_cast<int64_t>(slots.size()) == k.size(0),
            "cache write: ", slots.size(), " slots, ", new_lengths.size(), " lengths, ", k.size(0), " rows");
  for (size_t i = 0; i < slots.size(); ++i) {
    const int64_t n = new_lengths[i];
    if (n == 0) continue;
    const int64_t slot = slots[i];
    const int64_t start = host_lengths_[slot];
    if (start + n > capacity_) {
      throw Error("sequence in slot " + std::to_string(slot) + " needs " + std::to_string(start + n) +
                      " positions, more than the KV cache capacity " + std::to_string(capacity_),
                  "", "shorten the prompt or the number of new tokens");
    }
    keys_[layer][slot].narrow(1, start, n).copy_(k[i].narrow(1, 0, n));
    values_[layer][slot].narrow(1, start, n).copy_(v[i].narrow(1, 0, n));
  }
}

void KVCache::advance(const std::vector<int64_t>& slots, const std::vector<int64_t>& new_lengths) {
  for (size_t i = 0; i < slots.size(); ++i) host_lengths_[slots[i]] += new_lengths[i];
}

void KVCache::reset_slot(int64_t slot, int64_t planned_length) {
  PHI_CHECK(slot >= 0 && slot < batch_size_, "slot ", slot, " outside [0, ", batch_size_, ")");
  if (planned_length > capacity_) {
    throw Error("planned length " + std::to_string(planned_length) + " exceeds the KV cache capacity " +
                std::to_string(capacity_));
  }
  host_lengths_[slot] = 0;
  long_rope_[slot] = rope_uses_long_factors(*config_, planned_length);
}

void KVCache::reset() { std::fill(host_lengths_.begin(), host_lengths_.end(), 0); }

}  // namespace phi
