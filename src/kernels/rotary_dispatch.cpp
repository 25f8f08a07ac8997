// Rotary embedding (cuda/elementwise.cu): the rotation with its autograd, and decode's fused
// rotate-and-append into the KV cache. ATen reference: ops.cpp (apply_rotary) and the KV caches'
// append; tests: tests/kernels/test_cuda_kernels.cpp.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kernels/cuda_support.h"
#include "phi/core/error.h"
#include "phi/kernels/cuda_kernels.h"

namespace phi {

using namespace kernels;

at::Tensor rotary_cuda(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool inverse) {
  require_cuda("rotary_cuda", {&x, &cos, &sin});
  PHI_CHECK(x.dim() == 4 && x.stride(3) == 1, "rotary_cuda: x must be [B, H, T, D] with a contiguous last dim");
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3), rot = cos.size(-1);
  PHI_CHECK(rot % 2 == 0 && rot <= D, "rotary width ", rot, " does not fit head dim ", D);
  auto c = cos.to(at::kFloat).expand({B, T, rot}).contiguous();
  auto s = sin.to(at::kFloat).expand({B, T, rot}).contiguous();
  auto out = at::empty({B, H, T, D}, x.options());
  cuda::RotaryParams p;
  p.dtype = dtype_of(x, "rotary_cuda");
  p.x = x.data_ptr();
  p.sb = x.stride(0), p.sh = x.stride(1), p.st = x.stride(2);
  p.cos = c.data_ptr<float>();
  p.sin = s.data_ptr<float>();
  p.out = out.data_ptr();
  p.B = B, p.H = H, p.T = T, p.D = D, p.rot = rot;
  p.sign = inverse ? -1.f : 1.f;
  check_launch(cuda::rotary(p, stream_of(x)), "rotary kernel");
  return out;
}

namespace {
// cos / sin are constants of the positions: no gradient.
struct RotaryFunction : torch::autograd::Function<RotaryFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos,
                            const at::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return rotary_cuda(x, cos, sin, false);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    return {rotary_cuda(grads[0].contiguous(), saved[0], saved[1], true), at::Tensor(), at::Tensor()};
  }
};
}  // namespace

at::Tensor rotary_autograd_cuda(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  require_cuda("rotary_autograd_cuda", {&x, &cos, &sin});
  return RotaryFunction::apply(x, cos, sin);
}

void kv_append_cuda(const at::Tensor& k, const at::Tensor& v, const at::Tensor& cos, const at::Tensor& sin,
                    at::Tensor& k_cache, at::Tensor& v_cache, const at::Tensor& positions) {
  require_cuda("kv_append_cuda", {&k, &v, &cos, &sin, &k_cache, &v_cache, &positions});
  PHI_CHECK(k.dim() == 4 && k.size(2) == 1 && k.sizes() == v.sizes() && k.stride(3) == 1 && v.stride(3) == 1,
            "kv_append_cuda: k and v must be [B, H, 1, D] with a contiguous last dim, got ", k.sizes(), " and ", v.sizes());
  PHI_CHECK(k_cache.dim() == 4 && k_cache.sizes() == v_cache.sizes() && k_cache.strides() == v_cache.strides() &&
                k_cache.stride(3) == 1 && k_cache.size(0) == k.size(0) && k_cache.size(1) == k.size(1) &&
                k_cache.size(3) == k.size(3),
            "kv_append_cuda: caches ", k_cache.sizes(), " do not match k ", k.sizes());
  PHI_CHECK(k.scalar_type() == k_cache.scalar_type() && v.scalar_type() == v_cache.scalar_type() &&
                k.scalar_type() == v.scalar_type(),
            "kv_append_cuda: dtypes differ");
  const int64_t B = k.size(0), H = k.size(1), D = k.size(3), rot = cos.size(-1);
  PHI_CHECK(rot % 2 == 0 && rot <= D, "rotary width ", rot, " does not fit head dim ", D);
  PHI_CHECK(positions.dim() == 1 && positions.size(0) == B && positions.scalar_type() == at::kLong,
            "kv_append_cuda: positions must be int64 [", B, "]");
  auto c = cos.to(at::kFloat).reshape({B, rot}).contiguous();
  auto s = sin.to(at::kFloat).reshape({B, rot}).contiguous();
  auto pos = positions.contiguous();
  cuda::KvAppendParams p;
  p.dtype = dtype_of(k, "kv_append_cuda");
  p.k = k.data_ptr(), p.k_sb = k.stride(0), p.k_sh = k.stride(1);
  p.v = v.data_ptr(), p.v_sb = v.stride(0), p.v_sh = v.stride(1);
  p.cos = c.data_ptr<float>();
  p.sin = s.data_ptr<float>();
  p.rot = rot;
  p.k_cache = k_cache.data_ptr();
  p.v_cache = v_cache.data_ptr();
  p.c_sb = k_cache.stride(0), p.c_sh = k_cache.stride(1), p.c_st = k_cache.stride(2);
  p.positions = pos.data_ptr<int64_t>();
  p.B = B, p.H = H, p.D = D;
  check_launch(cuda::kv_append(p, stream_of(k)), "kv append kernel");
}

}  // namespace phi
