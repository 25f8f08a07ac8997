#include "phi/kernels/attention.h"

#include <algorithm>
#include <optional>
#include <string>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "phi/core/error.h"
#include "phi/kernels/cuda_kernels.h"
#include "kernels/backend_setting.h"
#include "phi/kernels/verified.h"

namespace phi {

at::Tensor positions_within_segments(const at::Tensor& segments) {
  const int64_t T = segments.size(-1);
  auto index = at::arange(T, segments.options().dtype(at::kLong)).view({1, -1}).expand_as(segments);
  auto starts = segments.ne(at::constant_pad_nd(segments, {1, 0}, -1).narrow(1, 0, T));
  return index - std::get<0>(at::cummax(at::where(starts, index, at::zeros_like(index)), 1));
}

at::Tensor build_attention_mask(const AttentionMaskSpec& spec, int64_t n_heads, int64_t n_keys) {
  const auto device = spec.query_positions.device();
  auto key_pos = at::arange(n_keys, at::TensorOptions().dtype(at::kLong).device(device));
  auto q_pos = spec.query_positions.unsqueeze(-1);                 // [B, Tq, 1]
  auto k_pos = key_pos.view({1, 1, n_keys});                        // [1, 1, Tk]
  auto visible = k_pos.le(q_pos);                                   // causal
  visible = visible.logical_and(k_pos.lt(spec.key_lengths.view({-1, 1, 1})));
  if (spec.sliding_window > 0) {
    visible = visible.logical_and((q_pos - k_pos).lt(spec.sliding_window));
  }
  at::Tensor q_doc_pos = q_pos, k_doc_pos = k_pos;  // positions inside the document (blocksparse)
  if (spec.segments.defined()) {
    PHI_CHECK(spec.segments.size(-1) == n_keys && spec.segments.sizes() == spec.query_positions.sizes(),
              "segments must be [B, T] with as many keys as queries, got ", spec.segments.sizes());
    visible = visible.logical_and(spec.segments.unsqueeze(-1).eq(spec.segments.unsqueeze(1)));
    auto doc_pos = positions_within_segments(spec.segments);
    q_doc_pos = doc_pos.unsqueeze(-1);  // [B, T, 1]
    k_doc_pos = doc_pos.unsqueeze(1);   // [B, 1, T]
  }
  visible = visible.unsqueeze(1);                                   // [B, 1, Tq, Tk]
  if (spec.blocksparse != nullptr) {
    const auto& bs = *spec.blocksparse;
    auto q_block = at::div(q_doc_pos, bs.block_size, "floor").unsqueeze(1);  // [B, 1, Tq, 1]
    auto k_block = at::div(k_doc_pos, bs.block_size, "floor").unsqueeze(1);  // [1 or B, 1, 1, Tk]
    auto local = (q_block - k_block).lt(bs.n_local_blocks);             // [B, 1, Tq, Tk]
    const int64_t step = bs.homo_head ? 0 : std::max<int64_t>(1, bs.vert_stride / n_heads);
    auto head = at::arange(n_heads, key_pos.options()).view({1, n_heads, 1, 1});
    auto vertical = (k_block + head * step + 1).remainder(bs.vert_stride).eq(0);  // [1, H, 1, Tk]
    visible = visible.logical_and(local.logical_or(vertical));         // [B, H, Tq, Tk]
  }
  return visible;
}

at::Tensor attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               double scale, const AttentionMaskSpec& spec) {
  PHI_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "attention expects 4-d q, k, v, got ",
            q.sizes(), " ", k.sizes(), " ", v.sizes());
  const int64_t B = q.size(0), Hq = q.size(1), Tq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Tk = k.size(2);
  PHI_CHECK(Hq % Hkv == 0, "query heads ", Hq, " not a multiple of kv heads ", Hkv);
  PHI_CHECK(k.size(0) == B && v.size(0) == B && k.size(3) == D && v.sizes() == k.sizes(),
            "attention shapes disagree: q ", q.sizes(), " k ", k.sizes(), " v ", v.sizes());
  PHI_CHECK(spec.query_positions.sizes() == at::IntArrayRef({B, Tq}),
            "query_positions must be [B, Tq] = [", B, ", ", Tq, "], got ", spec.query_positions.sizes());
  const int64_t group = Hq / Hkv;
  // Group query heads under their kv head: [B, Hkv, group * Tq, D]; K/V are never repeated.
  auto qf = q.to(at::kFloat).reshape({B, Hkv, group * Tq, D});
  auto kf = k.to(at::kFloat);
  auto vf = v.to(at::kFloat);
  auto scores = at::matmul(qf, kf.transpose(-1, -2)).mul_(scale);  // [B, Hkv, group*Tq, Tk]
  scores = scores.view({B, Hq, Tq, Tk});
  auto visible = build_attention_mask(spec, Hq, Tk);
  // Under autocast the products run in bf16/f16: mask with that dtype's lowest value.
  const double lowest = scores.scalar_type() == at::kBFloat16 ? static_cast<double>(std::numeric_limits<c10::BFloat16>::lowest())
                        : scores.scalar_type() == at::kHalf   ? static_cast<double>(std::numeric_limits<c10::Half>::lowest())
                                                              : static_cast<double>(std::numeric_limits<float>::lowest());
  scores.masked_fill_(visible.logical_not(), lowest);
  auto probs = at::softmax(scores, -1).view({B, Hkv, group * Tq, Tk});
  auto out = at::matmul(probs, vf).view({B, Hq, Tq, D});
  return out.to(q.scalar_type());
}

namespace {
BackendSetting& backend_setting() {
  static BackendSetting setting("PHI_ATTENTION", "attention backend");
  return setting;
}
}  // namespace

void set_attention_backend(const std::string& name) { backend_setting().set(name); }
const std::string& attention_backend() { return backend_setting().get(); }

namespace {
BackendSetting& flash_kernel_setting() {
  static BackendSetting setting("PHI_FLASH_KERNEL", "flash kernel", "wmma", "mma");
  return setting;
}
}  // namespace

void set_flash_kernel(const std::string& name) { flash_kernel_setting().set(name); }
const std::string& flash_kernel() { return flash_kernel_setting().get(); }

std::optional<FlashMask> flash_mask_for(const AttentionMaskSpec& mask, int64_t window, int64_t n_heads) {
  if (mask.segments.defined()) return std::nullopt;
  FlashMask flash;
  flash.window = window;
  if (mask.blocksparse != nullptr) {
    const auto& bs = *mask.blocksparse;
    if (bs.block_size != 64 || bs.vert_stride <= 0 || bs.n_local_blocks <= 0) return std::nullopt;
    flash.local_blocks = bs.n_local_blocks;
    flash.vert_stride = bs.vert_stride;
    flash.head_step = bs.homo_head ? 0 : std::max<int64_t>(1, bs.vert_stride / n_heads);
  }
  return flash;
}

namespace {
// A query at position p sees keys j <= p with p - j < window; keys sit at positions [0, Tk), so a
// window of at least Tk never hides one (Phi-3's 2047 over shorter sequences, its 128k variants).
int64_t effective_window(const AttentionMaskSpec& mask, int64_t Tk) {
  return mask.sliding_window > 0 && Tk > mask.sliding_window ? mask.sliding_window : 0;
}

bool fused_half(const at::Tensor& q) {
  const bool half = q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf;
  return q.is_cuda() && half && attention_backend() == "fused" && cuda_kernels_compiled();
}

// Whether the decode kernel takes this step: a few new queries per sequence at the end of each
// sequence's keys, no block-sparse pattern or segments, no gradient.
bool decode_kernel_applies(const at::Tensor& q, const AttentionMaskSpec& mask) {
  const int64_t D = q.size(3);
  return fused_half(q) && mask.blocksparse == nullptr && !mask.segments.defined() && mask.queries_end_at_lengths &&
         q.size(2) <= 16 && decode_head_dim_supported(D) && !at::GradMode::is_enabled();
}
}  // namespace

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                     const AttentionMaskSpec& mask) {
  const int64_t Tk = k.size(2), Tq = q.size(2), D = q.size(3);
  const int64_t window = effective_window(mask, Tk);
  const bool structured = mask.blocksparse == nullptr && !mask.segments.defined();
  if (q.is_cuda()) {
    const bool whole_sequence = mask.queries_are_rows && Tq == Tk;
    if (fused_half(q) && whole_sequence && flash_head_dim_supported(D)) {
      const at::Tensor lengths = mask.no_padding ? at::Tensor() : mask.key_lengths;
      if (window == 0 && structured) return flash_attention_cuda(q, k, v, lengths, scale);
      if (verified::kFlashMasks) {
        if (auto flash = flash_mask_for(mask, window, q.size(1))) return flash_attention_cuda(q, k, v, lengths, scale, *flash);
      }
    }
    if (decode_kernel_applies(q, mask)) return decode_attention_cuda(q, k, v, mask.key_lengths, scale, 0, window);
    if (structured && window == 0 && whole_sequence && mask.no_padding) {
      // The library's fused causal attention (FlashAttention / cuDNN / memory-efficient backends).
      return at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true, scale, /*enable_gqa=*/true);
    }
  }
  return attention_reference(q, k, v, scale, mask);
}

}  // namespace phi

namespace phi {

std::pair<at::Tensor, at::Tensor> gather_pages(const PagedKV& kv, int64_t n_keys) {
  const int64_t B = kv.page_table.size(0), page = kv.page_size;
  const int64_t Hkv = kv.key_pool.size(2), D = kv.key_pool.size(3);
  PHI_CHECK(kv.page_table.dim() == 2 && kv.page_table.size(1) * page >= n_keys, "page table ",
            kv.page_table.sizes(), " of ", page, "-token pages does not cover ", n_keys, " keys");
  auto offsets = at::arange(page, kv.page_table.options().dtype(at::kLong));
  auto rows = (kv.page_table.to(at::kLong).unsqueeze(-1) * page + offsets).view({B, -1}).narrow(1, 0, n_keys);
  auto read = [&](const at::Tensor& pool) {
    return pool.view({-1, Hkv, D}).index_select(0, rows.reshape({-1})).view({B, n_keys, Hkv, D}).transpose(1, 2);
  };
  return {read(kv.key_pool), read(kv.value_pool)};
}

at::Tensor paged_attention(const at::Tensor& q, const PagedKV& kv, int64_t n_keys, double scale,
                           const AttentionMaskSpec& mask) {
  if (verified::kPagedDecode && decode_kernel_applies(q, mask)) {
    return paged_decode_attention_cuda(q, kv, mask.key_lengths, n_keys, scale, 0, effective_window(mask, n_keys));
  }
  auto [keys, values] = gather_pages(kv, n_keys);
  return attention(q, keys, values, scale, mask);
}

}  // namespace phi
