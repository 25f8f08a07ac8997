// Batch-1 decode's bandwidth-bound matrix-vector product (cuda/gemv.cu): when it applies, checks,
// launch. ATen reference: at::linear (ops.cpp's linear); tests: tests/kernels/test_cuda_kernels.cpp.
#include <ATen/ATen.h>

#include "kernels/cuda_support.h"
#include "phi/core/error.h"
#include "phi/kernels/cuda_kernels.h"

namespace phi {

using namespace kernels;

bool gemv_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (!cuda_kernels_compiled() || !x.is_cuda() || !w.is_cuda() || w.dim() != 2 || !w.is_contiguous()) return false;
  const auto t = w.scalar_type();
  if ((t != at::kBFloat16 && t != at::kHalf) || x.scalar_type() != t) return false;
  if (b.defined() && (!b.is_cuda() || b.scalar_type() != t || b.numel() != w.size(0))) return false;
  const int64_t K = w.size(1);
  return x.numel() == K && x.size(-1) == K && K % 8 == 0 && K <= cuda::kGemvMaxK && x.is_contiguous() &&
         reinterpret_cast<uintptr_t>(w.data_ptr()) % 16 == 0 && reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0;
}

at::Tensor gemv_cuda(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  require_cuda("gemv_cuda", {&x, &w, &b});
  PHI_CHECK(gemv_applies(x, w, b), "gemv_cuda: needs one row x [.., K] and a contiguous bf16 / f16 W [N, K] with K % 8 "
            "== 0 and K <= ", cuda::kGemvMaxK, ", got x ", x.sizes(), " W ", w.sizes());
  auto sizes = x.sizes().vec();
  sizes.back() = w.size(0);
  auto y = at::empty(sizes, x.options());
  auto bc = b.defined() ? b.contiguous() : at::Tensor();
  cuda::GemvParams p;
  p.dtype = dtype_of(w, "gemv_cuda");
  p.w = w.data_ptr();
  p.x = x.data_ptr();
  p.bias = ptr_or_null(bc);
  p.y = y.data_ptr();
  p.N = w.size(0);
  p.K = w.size(1);
  p.sms = multiprocessor_count(x);
  check_launch(cuda::gemv(p, stream_of(x)), "gemv kernel");
  return y;
}

}  // namespace phi
