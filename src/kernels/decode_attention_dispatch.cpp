// Split-K decode attention over a KV cache, dense or paged (cuda/decode_attention.cu): checks,
// launch. ATen reference: attention.cpp (attention_reference, paged_attention's gather_pages);
// tests: tests/kernels/test_cuda_kernels.cpp.
#include <algorithm>

#include <ATen/ATen.h>

#include "kernels/cuda_support.h"
#include "phi/core/error.h"
#include "phi/kernels/attention.h"
#include "phi/kernels/cuda_kernels.h"

namespace phi {

using namespace kernels;

bool decode_head_dim_supported(int64_t head_dim) {
  return head_dim > 0 && head_dim <= cuda::kDecodeMaxHeadDim && head_dim % 8 == 0;
}

namespace {
// The launch shared by the dense and the paged cache.
at::Tensor run_decode(const at::Tensor& q, cuda::AttentionShape s, const void* k, const void* v,
                      const at::Tensor& key_lengths, const cuda::PageTable& paging, double scale, int64_t splits,
                      int64_t window) {
  PHI_CHECK(window >= 0, "decode attention window must be >= 0, got ", window);
  s.window = window;
  PHI_CHECK(decode_head_dim_supported(s.D), "decode attention head dim ", s.D,
            " must be a multiple of 8, at most ", cuda::kDecodeMaxHeadDim);
  auto lengths = lengths_on(key_lengths, q);
  const int64_t rows = s.B * s.Hq * s.Tq;
  if (splits <= 0) {
    // Enough blocks to fill the device twice, each split at least 256 keys.
    const int64_t sms = multiprocessor_count(q);
    splits = std::max<int64_t>(1, std::min<int64_t>((2 * sms + rows - 1) / std::max<int64_t>(rows, 1), (s.Tk + 255) / 256));
  }
  auto f32 = q.options().dtype(at::kFloat);
  auto o_partial = at::empty({splits, rows, s.D}, f32);
  auto m_partial = at::empty({splits, rows}, f32);
  auto l_partial = at::empty({splits, rows}, f32);
  auto out = at::empty({s.B, s.Hq, s.Tq, s.D}, q.options());
  cuda::DecodeAttentionParams p;
  p.dtype = dtype_of(q, "decode attention");
  p.shape = s;
  p.q = q.data_ptr(), p.k = k, p.v = v;
  p.key_lengths = lengths_ptr(lengths);
  p.paging = paging;
  p.scale = static_cast<float>(scale);
  p.splits = splits;
  p.o_partial = o_partial.data_ptr<float>();
  p.m_partial = m_partial.data_ptr<float>();
  p.l_partial = l_partial.data_ptr<float>();
  p.o = out.data_ptr();
  check_launch(cuda::decode_attention(p, stream_of(q)), "decode attention");
  return out;
}
}  // namespace

at::Tensor decode_attention_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& key_lengths, double scale, int64_t splits, int64_t window) {
  require_cuda("decode_attention_cuda", {&q, &k, &v});
  auto s = attention_shape(q, k, v, "decode attention");
  return run_decode(q, s, k.data_ptr(), v.data_ptr(), key_lengths, cuda::PageTable{}, scale, splits, window);
}

at::Tensor paged_decode_attention_cuda(const at::Tensor& q, const PagedKV& kv, const at::Tensor& key_lengths,
                                       int64_t n_keys, double scale, int64_t splits, int64_t window) {
  require_cuda("paged_decode_attention_cuda", {&q, &kv.key_pool, &kv.value_pool, &kv.page_table});
  const auto& kp = kv.key_pool;
  PHI_CHECK(kp.dim() == 4 && kv.value_pool.sizes() == kp.sizes() && kp.is_contiguous() && kv.value_pool.is_contiguous(),
            "paged decode attention: pools must be contiguous [pages, page_size, Hkv, D] of one shape, got ",
            kp.sizes(), " and ", kv.value_pool.sizes());
  PHI_CHECK(kv.page_size == kp.size(1), "paged decode attention: page size ", kv.page_size, " but pools of ", kp.size(1));
  PHI_CHECK(q.dim() == 4 && q.stride(3) == 1 && q.size(3) == kp.size(3) && q.size(1) % kp.size(2) == 0,
            "paged decode attention: q ", q.sizes(), " does not match pools ", kp.sizes());
  PHI_CHECK(q.scalar_type() == kp.scalar_type() && kv.value_pool.scalar_type() == kp.scalar_type(),
            "paged decode attention: dtypes differ");
  PHI_CHECK(reinterpret_cast<uintptr_t>(q.data_ptr()) % 16 == 0 && q.stride(2) % 8 == 0 && q.stride(1) % 8 == 0 &&
                q.stride(0) % 8 == 0 && kp.size(3) % 8 == 0,
            "paged decode attention: rows must be 16-byte aligned");
  auto table = kv.page_table.to(q.device(), at::kInt).contiguous();
  PHI_CHECK(table.dim() == 2 && table.size(0) == q.size(0) && table.size(1) * kv.page_size >= n_keys,
            "paged decode attention: page table ", table.sizes(), " does not cover ", n_keys, " keys of ", q.size(0),
            " sequences");
  cuda::AttentionShape s{};
  s.B = q.size(0), s.Hq = q.size(1), s.Hkv = kp.size(2), s.Tq = q.size(2), s.Tk = n_keys, s.D = q.size(3);
  s.q_sb = q.stride(0), s.q_sh = q.stride(1), s.q_st = q.stride(2);
  s.k_sb = 0, s.k_sh = kp.stride(2), s.k_st = kp.stride(1);
  s.v_sb = 0, s.v_sh = kv.value_pool.stride(2), s.v_st = kv.value_pool.stride(1);
  cuda::PageTable paging{table.data_ptr<int32_t>(), table.stride(0), kv.page_size};
  return run_decode(q, s, kp.data_ptr(), kv.value_pool.data_ptr(), key_lengths, paging, scale, splits, window);
}

}  // namespace phi
