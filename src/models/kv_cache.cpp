#include "phi/models/kv_cache.h"

#include <algorithm>
#include <limits>

#include <ATen/ATen.h>

#include "phi/core/error.h"
#include "phi/kernels/attention.h"
#include "phi/models/rope.h"

namespace phi {

namespace {
// Bytes of a cache's per-layer key and value tensors.
int64_t bytes_of(const std::vector<at::Tensor>& keys, const std::vector<at::Tensor>& values) {
  int64_t total = 0;
  for (const auto* tensors : {&keys, &values}) {
    for (const auto& t : *tensors) total += t.numel() * t.element_size();
  }
  return total;
}
}  // namespace

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

int64_t KVCache::bytes() const { return bytes_of(keys_, values_); }

void KVCache::check_fits(int64_t slot, int64_t n) const {
  const int64_t needed = host_lengths_[slot] + n;
  if (needed > capacity_) {
    throw Error("sequence in slot " + std::to_string(slot) + " needs " + std::to_string(needed) +
                    " positions, more than the KV cache capacity " + std::to_string(capacity_),
                "", "shorten the prompt or the number of new tokens");
  }
}

void KVCache::prepare(const std::vector<int64_t>& slots, const std::vector<int64_t>& new_lengths, int64_t) {
  PHI_CHECK(slots.size() == new_lengths.size(), "cache step: ", slots.size(), " slots, ", new_lengths.size(), " lengths");
  for (size_t i = 0; i < slots.size(); ++i) check_fits(slots[i], new_lengths[i]);
}

at::Tensor KVCache::attend(int64_t layer, const at::Tensor& q, const std::vector<int64_t>& slots,
                           const at::Tensor& slot_index, int64_t n_keys, double scale, const AttentionMaskSpec& mask) {
  auto keys = keys_[layer].narrow(2, 0, n_keys);
  auto values = values_[layer].narrow(2, 0, n_keys);
  if (static_cast<int64_t>(slots.size()) != batch_size_) {
    keys = keys.index_select(0, slot_index);
    values = values.index_select(0, slot_index);
  }
  return attention(q, keys, values, scale, mask);
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
    check_fits(slot, n);
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

void KVCache::copy_prefix(int64_t from, int64_t length, const std::vector<int64_t>& to_slots) {
  PHI_CHECK(from >= 0 && from < batch_size_, "slot ", from, " outside [0, ", batch_size_, ")");
  PHI_CHECK(length >= 0 && length <= host_lengths_[from], "slot ", from, " holds ", host_lengths_[from],
            " positions, not ", length);
  for (auto s : to_slots) PHI_CHECK(s >= 0 && s < batch_size_ && s != from, "cannot copy slot ", from, " to slot ", s);
  if (to_slots.empty()) return;
  if (length > 0) {
    auto index = at::tensor(to_slots, at::kLong).to(keys_[0].device());
    const auto n = static_cast<int64_t>(to_slots.size());
    for (size_t layer = 0; layer < keys_.size(); ++layer) {
      for (auto* pool : {&keys_[layer], &values_[layer]}) {
        auto source = pool->narrow(0, from, 1).narrow(2, 0, length);
        pool->narrow(2, 0, length).index_copy_(0, index, source.expand({n, -1, -1, -1}).contiguous());
      }
    }
  }
  for (auto s : to_slots) {
    host_lengths_[s] = length;
    long_rope_[s] = long_rope_[from];
  }
}

void KVCache::reset() { std::fill(host_lengths_.begin(), host_lengths_.end(), 0); }

// ---- PagedKVCache ----------------------------------------------------------------------------------

PagedKVCache::PagedKVCache(const ModelConfig& config, int64_t max_sequences, int64_t n_pages, int64_t page_size,
                           int64_t planned_length, c10::ScalarType dtype, c10::Device device)
    : config_(&config), n_pages_(n_pages), page_size_(page_size) {
  PHI_CHECK(max_sequences > 0 && n_pages > 0 && page_size > 0, "paged KV cache needs sequences, pages and a page ",
            "size > 0, got ", max_sequences, ", ", n_pages, " and ", page_size);
  PHI_CHECK(n_pages <= std::numeric_limits<int32_t>::max(), "too many pages: ", n_pages);
  slots_.resize(static_cast<size_t>(max_sequences));
  for (auto& slot : slots_) slot.long_rope = rope_uses_long_factors(config, planned_length);
  for (int64_t p = n_pages - 1; p >= 0; --p) free_.push_back(static_cast<int32_t>(p));  // page 0 on top
  // Zeros: rows past a sequence's keys are read (and masked) by whole-page reads; they must be finite.
  auto options = at::TensorOptions().dtype(dtype).device(device);
  for (int64_t i = 0; i < config.n_layers; ++i) {  // one more page: the scratch page
    keys_.push_back(at::zeros({n_pages + 1, page_size, config.n_kv_heads, config.head_dim}, options));
    values_.push_back(at::zeros({n_pages + 1, page_size, config.n_kv_heads, config.head_dim}, options));
  }
}

void PagedKVCache::allocate(const std::vector<int64_t>& slots, const std::vector<int64_t>& new_lengths) {
  PHI_CHECK(slots.size() == new_lengths.size(), "cache step: ", slots.size(), " slots, ", new_lengths.size(), " lengths");
  int64_t needed = 0;
  for (size_t i = 0; i < slots.size(); ++i) {
    PHI_CHECK(slots[i] >= 0 && slots[i] < batch_size(), "slot ", slots[i], " outside [0, ", batch_size(), ")");
    PHI_CHECK(new_lengths[i] >= 0, "new length ", new_lengths[i], " < 0");
    needed += pages_needed(slots[i], new_lengths[i]);
  }
  if (needed > free_pages()) {
    throw Error("the paged KV cache has " + std::to_string(free_pages()) + " free pages of " +
                    std::to_string(page_size_) + " tokens; this step needs " + std::to_string(needed),
                "", "release finished sequences or give the cache more pages");
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    auto& s = slots_[slots[i]];
    for (int64_t p = pages_needed(slots[i], new_lengths[i]); p > 0; --p) {
      s.pages.push_back(free_.back());
      free_.pop_back();
    }
  }
}

at::Tensor PagedKVCache::page_table(const std::vector<int64_t>& rows, int64_t width) const {
  auto table = at::full({static_cast<int64_t>(rows.size()), width}, scratch_page(), at::kInt);
  auto acc = table.accessor<int32_t, 2>();
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0) continue;
    const auto& pages = slots_[rows[i]].pages;
    PHI_CHECK(static_cast<int64_t>(pages.size()) <= width, "slot ", rows[i], " holds ", pages.size(),
              " pages, more than the table's ", width);
    for (size_t p = 0; p < pages.size(); ++p) acc[static_cast<int64_t>(i)][static_cast<int64_t>(p)] = pages[p];
  }
  return table;
}

int64_t PagedKVCache::bytes() const { return bytes_of(keys_, values_); }

int64_t PagedKVCache::pages_needed(int64_t slot, int64_t extra) const {
  const auto& s = slots_[slot];
  return std::max<int64_t>(0, pages_for(s.length + extra) - static_cast<int64_t>(s.pages.size()));
}

void PagedKVCache::prepare(const std::vector<int64_t>& slots, const std::vector<int64_t>& new_lengths, int64_t T) {
  for (auto n : new_lengths) PHI_CHECK(n >= 0 && n <= T, "new length ", n, " outside [0, ", T, "]");
  allocate(slots, new_lengths);
  std::vector<int64_t> rows, sources;
  int64_t widest = 1;
  for (size_t i = 0; i < slots.size(); ++i) {
    const auto& s = slots_[slots[i]];
    for (int64_t t = 0; t < new_lengths[i]; ++t) {
      const int64_t position = s.length + t;
      rows.push_back(static_cast<int64_t>(s.pages[position / page_size_]) * page_size_ + position % page_size_);
      sources.push_back(static_cast<int64_t>(i) * T + t);
    }
    widest = std::max<int64_t>(widest, static_cast<int64_t>(s.pages.size()));
  }
  const auto device = keys_.front().device();
  step_rows_ = at::tensor(rows, at::kLong).to(device);
  step_sources_ = at::tensor(sources, at::kLong).to(device);
  step_all_rows_ = static_cast<int64_t>(sources.size()) == static_cast<int64_t>(slots.size()) * T;
  step_table_ = page_table(slots, widest).to(device);
}

void PagedKVCache::write(int64_t layer, const at::Tensor& k, const at::Tensor& v, const std::vector<int64_t>& slots,
                         const std::vector<int64_t>& new_lengths) {
  PHI_CHECK(static_cast<int64_t>(slots.size()) == k.size(0) && step_table_.defined() &&
                step_table_.size(0) == k.size(0),
            "paged cache write of ", k.size(0), " rows without a matching prepare()");
  if (step_rows_.numel() == 0) return;
  const int64_t Hkv = k.size(1), D = k.size(3);
  auto put = [&](at::Tensor& pool, const at::Tensor& x) {
    auto rows = x.transpose(1, 2).reshape({-1, Hkv, D});  // [n * T, Hkv, D]
    if (!step_all_rows_) rows = rows.index_select(0, step_sources_);
    pool.view({-1, Hkv, D}).index_copy_(0, step_rows_, rows.to(pool.scalar_type()));
  };
  put(keys_[layer], k);
  put(values_[layer], v);
}

at::Tensor PagedKVCache::attend(int64_t layer, const at::Tensor& q, const std::vector<int64_t>& slots,
                                const at::Tensor&, int64_t n_keys, double scale, const AttentionMaskSpec& mask) {
  PHI_CHECK(step_table_.defined() && step_table_.size(0) == static_cast<int64_t>(slots.size()),
            "paged cache read of ", slots.size(), " sequences without a matching prepare()");
  PagedKV kv{keys_[layer], values_[layer], step_table_, page_size_};
  return paged_attention(q, kv, n_keys, scale, mask);
}

void PagedKVCache::advance(const std::vector<int64_t>& slots, const std::vector<int64_t>& new_lengths) {
  for (size_t i = 0; i < slots.size(); ++i) slots_[slots[i]].length += new_lengths[i];
}

void PagedKVCache::release(int64_t slot) {
  PHI_CHECK(slot >= 0 && slot < batch_size(), "slot ", slot, " outside [0, ", batch_size(), ")");
  auto& s = slots_[slot];
  for (auto it = s.pages.rbegin(); it != s.pages.rend(); ++it) free_.push_back(*it);
  s.pages.clear();
  s.length = 0;
}

void PagedKVCache::reset_slot(int64_t slot, int64_t planned_length) {
  release(slot);
  slots_[slot].long_rope = rope_uses_long_factors(*config_, planned_length);
}

}  // namespace phi
