#include "train/gradient_reducer.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <tuple>

#include <ATen/ATen.h>

namespace phi {

GradientReducer::GradientReducer(ParameterMap& parameters, Communicator& comm, double bucket_mb, bool overlap,
                                 c10::ScalarType reduce_dtype)
    : comm_(comm), overlap_(overlap), dtype_(reduce_dtype) {
  // Backward order: lm_head, final norm, layers from last to first, embedding.
  std::vector<std::pair<std::tuple<int, int64_t, std::string>, at::Tensor*>> ordered;
  for (auto& [name, p] : parameters) {
    if (!p.requires_grad()) continue;  // frozen: no gradient, no communication
    int group = 1;
    int64_t layer = 0;
    if (name.rfind("lm_head", 0) == 0) group = 0;
    if (name.rfind("final_norm", 0) == 0) group = 0;
    if (name.rfind("embed", 0) == 0) group = 2;
    if (name.rfind("layers.", 0) == 0) layer = -std::stoll(name.substr(7, name.find('.', 7) - 7));
    ordered.push_back({{group, layer, name}, &p});
  }
  std::sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  const int64_t bucket_elements =
      std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * 1048576.0 / static_cast<double>(c10::elementSize(dtype_))));
  int64_t filled = 0;
  for (auto& [key, p] : ordered) {
    if (buckets_.empty() || (filled + p->numel() > bucket_elements && !buckets_.back().slots.empty())) {
      buckets_.emplace_back();
      filled = 0;
    }
    auto& bucket = buckets_.back();
    bucket.slots.push_back({p, filled});
    filled += p->numel();
    bucket.elements = filled;
  }
  if (overlap_) {
    for (size_t b = 0; b < buckets_.size(); ++b) {
      for (size_t i = 0; i < buckets_[b].slots.size(); ++i) {
        buckets_[b].slots[i].param->register_hook([this, b, i](const at::Tensor& grad) {
          on_gradient(b, i, grad);
          return grad;
        });
      }
    }
  }
}

void GradientReducer::arm() {
  armed_ = overlap_;
  started_in_backward_ = 0;
  for (auto& bucket : buckets_) {
    bucket.flat = at::empty({bucket.elements}, at::TensorOptions().dtype(dtype_).device(bucket.slots.front().param->device()));
    bucket.ready = 0;
    bucket.pending.reset();
    for (auto& slot : bucket.slots) slot.written = false;
  }
}

double GradientReducer::finish() {
  armed_ = false;
  for (auto& bucket : buckets_) {
    for (auto& slot : bucket.slots) {
      if (slot.written) continue;
      auto& g = slot.param->mutable_grad();
      if (!g.defined()) g = at::zeros_like(*slot.param);  // no gradient reached it on this rank
      bucket.flat.narrow(0, slot.offset, g.numel()).copy_(g.reshape({-1}));
      slot.written = true;
      ++bucket.ready;
    }
    if (!bucket.pending) bucket.pending = comm_.all_reduce_async(bucket.flat);
  }
  const auto start = std::chrono::steady_clock::now();
  for (auto& bucket : buckets_) bucket.pending->wait();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (auto& bucket : buckets_) {
    for (auto& slot : bucket.slots) {
      auto& g = slot.param->mutable_grad();
      g.copy_(bucket.flat.narrow(0, slot.offset, g.numel()).view(g.sizes()));
    }
    bucket.pending.reset();
  }
  return waited;
}

void GradientReducer::on_gradient(size_t b, size_t i, const at::Tensor& grad) {
  if (!armed_) return;
  auto& bucket = buckets_[b];
  auto& slot = bucket.slots[i];
  const auto& param = *slot.param;
  auto target = bucket.flat.narrow(0, slot.offset, param.numel()).view(param.sizes());
  const auto& accumulated = param.grad();
  target.copy_(accumulated.defined() ? accumulated + grad : grad);  // in the bucket's dtype
  slot.written = true;
  if (++bucket.ready == bucket.slots.size()) {
    bucket.pending = comm_.all_reduce_async(bucket.flat);
    ++started_in_backward_;
  }
}

}  // namespace phi
