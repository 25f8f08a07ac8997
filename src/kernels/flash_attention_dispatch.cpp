// The flash attention kernels (cuda/flash_attention.cu: WMMA; cuda/flash_{forward,backward}_mma.cu:
// mma.sync): checks, launch, autograd. ATen reference: attention.cpp (attention_reference); tests:
// tests/kernels/test_cuda_kernels.cpp.
#include <string>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kernels/cuda_support.h"
#include "phi/core/error.h"
#include "phi/kernels/cuda_kernels.h"

namespace phi {

using namespace kernels;

bool flash_head_dim_supported(int64_t head_dim) { return cuda::flash_head_dim_supported(head_dim); }

std::string flash_head_dims_text() {
  std::string text;
#define PHI_HEAD_DIM_TEXT(d) text += (text.empty() ? "" : ", ") + std::to_string(d);
  PHI_FLASH_HEAD_DIMS(PHI_HEAD_DIM_TEXT)
#undef PHI_HEAD_DIM_TEXT
  return text;
}

namespace {

void apply_mask(cuda::AttentionShape& s, const FlashMask& mask) {
  PHI_CHECK(mask.window >= 0 && mask.local_blocks >= 0 && mask.vert_stride >= 0 && mask.head_step >= 0,
            "flash attention mask values must be >= 0");
  PHI_CHECK(mask.vert_stride == 0 || mask.local_blocks > 0, "a block-sparse pattern needs local_blocks >= 1");
  s.window = mask.window;
  s.bs_local = mask.local_blocks;
  s.bs_vert = mask.vert_stride;
  s.bs_head_step = mask.head_step;
}

// The checks both directions share: a shape the kernels are instantiated for.
cuda::AttentionShape flash_shape(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const FlashMask& mask,
                                 const char* what) {
  auto s = attention_shape(q, k, v, what);
  apply_mask(s, mask);
  PHI_CHECK(q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf, what, " takes bf16 / f16, got ",
            c10::toString(q.scalar_type()));
  PHI_CHECK(s.Tq == s.Tk, what, " (training) needs as many queries as keys, got ", s.Tq, " and ", s.Tk);
  PHI_CHECK(flash_head_dim_supported(s.D), what, " head dim ", s.D, " is not one of ", flash_head_dims_text());
  return s;
}

}  // namespace

FlashForward flash_attention_forward_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                          const at::Tensor& key_lengths, double scale, const FlashMask& mask,
                                          FlashKernel kernel) {
  cuda::FlashForwardParams p;
  p.shape = flash_shape(q, k, v, mask, "flash attention");  // shape errors first, with or without a GPU
  require_cuda("flash_attention_forward_cuda", {&q, &k, &v});
  auto lengths = lengths_on(key_lengths, q);
  const auto& s = p.shape;
  FlashForward f;
  f.out = at::empty({s.B, s.Hq, s.Tq, s.D}, q.options());
  f.lse = at::empty({s.B, s.Hq, s.Tq}, q.options().dtype(at::kFloat));
  p.dtype = dtype_of(q, "flash attention");
  p.q = q.data_ptr(), p.k = k.data_ptr(), p.v = v.data_ptr();
  p.key_lengths = lengths_ptr(lengths);
  p.scale = static_cast<float>(scale);
  p.o = f.out.data_ptr();
  p.lse = f.lse.data_ptr<float>();
  const auto launch = kernel == FlashKernel::kMma ? cuda::flash_attention_forward_mma : cuda::flash_attention_forward;
  check_launch(launch(p, stream_of(q)), "flash attention forward");
  return f;
}

FlashGrads flash_attention_backward_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                         const FlashForward& forward, const at::Tensor& d_out,
                                         const at::Tensor& key_lengths, double scale, const FlashMask& mask,
                                         FlashKernel kernel) {
  cuda::FlashBackwardParams p;
  p.shape = flash_shape(q, k, v, mask, "flash attention backward");
  require_cuda("flash_attention_backward_cuda", {&q, &k, &v, &d_out});
  auto lengths = lengths_on(key_lengths, q);
  const auto& s = p.shape;
  auto d_o = d_out.to(q.scalar_type()).contiguous();
  auto delta = (d_o.to(at::kFloat) * forward.out.to(at::kFloat)).sum(-1).contiguous();
  auto dq = at::zeros({s.B, s.Hq, s.Tq, s.D}, q.options().dtype(at::kFloat));
  FlashGrads g;
  g.dk = at::empty({s.B, s.Hkv, s.Tk, s.D}, k.options());
  g.dv = at::empty({s.B, s.Hkv, s.Tk, s.D}, v.options());
  p.dtype = dtype_of(q, "flash attention backward");
  p.q = q.data_ptr(), p.k = k.data_ptr(), p.v = v.data_ptr(), p.d_o = d_o.data_ptr();
  p.lse = forward.lse.data_ptr<float>();
  p.delta = delta.data_ptr<float>();
  p.key_lengths = lengths_ptr(lengths);
  p.scale = static_cast<float>(scale);
  p.dq_accum = dq.data_ptr<float>();
  p.dk = g.dk.data_ptr(), p.dv = g.dv.data_ptr();
  const auto launch = kernel == FlashKernel::kMma ? cuda::flash_attention_backward_mma : cuda::flash_attention_backward;
  check_launch(launch(p, stream_of(q)), "flash attention backward");
  g.dq = dq.to(q.scalar_type());
  return g;
}

namespace {
struct FlashFunction : torch::autograd::Function<FlashFunction> {
  // key_lengths is always a defined tensor here (autograd inputs must be): empty = no padding.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, const at::Tensor& key_lengths, double scale, int64_t window,
                            int64_t local_blocks, int64_t vert_stride, int64_t head_step) {
    const at::Tensor lengths = key_lengths.numel() > 0 ? key_lengths : at::Tensor();
    const bool mma = flash_kernel() == "mma";
    const FlashMask mask{window, local_blocks, vert_stride, head_step};
    auto f = flash_attention_forward_cuda(q, k, v, lengths, scale, mask, mma ? FlashKernel::kMma : FlashKernel::kWmma);
    ctx->save_for_backward({q, k, v, f.out, f.lse, key_lengths});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["mma"] = mma;
    ctx->saved_data["mask"] = std::vector<int64_t>{window, local_blocks, vert_stride, head_step};
    return f.out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    FlashForward f{saved[3], saved[4]};
    const at::Tensor lengths = saved[5].numel() > 0 ? saved[5] : at::Tensor();
    const auto m = ctx->saved_data["mask"].toIntVector();
    auto g = flash_attention_backward_cuda(saved[0], saved[1], saved[2], f, grads[0], lengths,
                                           ctx->saved_data["scale"].toDouble(), FlashMask{m[0], m[1], m[2], m[3]},
                                           ctx->saved_data["mma"].toBool() ? FlashKernel::kMma : FlashKernel::kWmma);
    return {g.dq, g.dk, g.dv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};
}  // namespace

at::Tensor flash_attention_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const at::Tensor& key_lengths, double scale, const FlashMask& mask) {
  require_cuda("flash_attention_cuda", {&q, &k, &v});
  auto lengths = key_lengths.defined() ? key_lengths : at::empty({0}, q.options().dtype(at::kLong));
  return FlashFunction::apply(q, k, v, lengths, scale, mask.window, mask.local_blocks, mask.vert_stride, mask.head_step);
}

}  // namespace phi
