#include "phi/models/kv_cache.h"

#include <ATen/ATen.h>

#include "phi/core/error.h"
#include "phi/models/rope.h"

namespace phi {

KVCache::KVCache(const ModelConfig& config, int64_t batch_size, int64_t capacity,
                 int64_t planned_length, c10::ScalarType dtype, c10::Device device)
    : batch_size_(batch_size), capacity_(capacity), host_lengths_(batch_size, 0) {
  PHI_CHECK(batch_size > 0 && capacity > 0, "KV cache needs batch_size > 0 and capacity > 0, got ",
            batch_size, " and ", capacity);
  if (planned_length > capacity) {
    throw Error("planned length " + std::to_string(planned_length) + " exceeds the KV cache capacity " +
                std::to_string(capacity));
  }
  long_rope_ = rope_uses_long_factors(config, planned_length);
  auto options = at::TensorOptions().dtype(dtype).device(device);
  for (int64_t i = 0; i < config.n_layers; ++i) {
    keys_.push_back(at::zeros({batch_size, config.n_kv_heads, capacity, config.head_dim}, options));
    values_.push_back(at::zeros({batch_size, config.n_kv_heads, capacity, config.head_dim}, options));
  }
  lengths_ = at::zeros({batch_size}, at::TensorOptions().dtype(at::kLong).device(device));
}

std::vector<int64_t> KVCache::lengths_vector() const { return host_lengths_; }

int64_t KVCache::bytes() const {
  int64_t total = 0;
  for (const auto& t : keys_) total += t.numel() * t.element_size();
  for (const auto& t : values_) total += t.numel() * t.element_size();
  return total;
}

void KVCache::write(int64_t layer, const at::Tensor& k, const at::Tensor& v,
                    const std::vector<int64_t>& new_lengths) {
  PHI_CHECK(static_cast<int64_t>(new_lengths.size()) == batch_size_, "new_lengths has ",
            new_lengths.size(), " entries for a batch of ", batch_size_);
  for (int64_t b = 0; b < batch_size_; ++b) {
    const int64_t n = new_lengths[b];
    if (n == 0) continue;
    const int64_t start = host_lengths_[b];
    if (start + n > capacity_) {
      throw Error("sequence " + std::to_string(b) + " needs " + std::to_string(start + n) +
                      " positions, more than the KV cache capacity " + std::to_string(capacity_),
                  "", "shorten the prompt or the number of new tokens");
    }
    keys_[layer][b].narrow(1, start, n).copy_(k[b].narrow(1, 0, n));
    values_[layer][b].narrow(1, start, n).copy_(v[b].narrow(1, 0, n));
  }
}

void KVCache::advance(const std::vector<int64_t>& new_lengths) {
  for (int64_t b = 0; b < batch_size_; ++b) host_lengths_[b] += new_lengths[b];
  lengths_.copy_(at::tensor(host_lengths_, at::kLong));
}

void KVCache::reset() {
  std::fill(host_lengths_.begin(), host_lengths_.end(), 0);
  lengths_.zero_();
}

}  // namespace phi
