// Argument checks and dispatch from at::Tensor to the CUDA launchers (built with PHI_WITH_CUDA).
#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kernels/cuda/launch.h"
#include "phi/core/error.h"
#include "phi/kernels/attention.h"
#include "phi/kernels/cuda_kernels.h"

namespace phi {

namespace {

cuda::DType dtype_of(const at::Tensor& t, const char* what) {
  switch (t.scalar_type()) {
    case at::kFloat: return cuda::DType::kFloat32;
    case at::kBFloat16: return cuda::DType::kBFloat16;
    case at::kHalf: return cuda::DType::kFloat16;
    default: throw Error(std::string(what) + ": unsupported dtype " + c10::toString(t.scalar_type()));
  }
}

void require_cuda(const char* what, std::initializer_list<const at::Tensor*> tensors) {
  PHI_CHECK(cuda_kernels_runnable(), what, " needs a CUDA GPU");
  for (const auto* t : tensors) {
    if (t->defined()) PHI_CHECK(t->is_cuda(), what, " needs CUDA tensors");
  }
}

void* stream_of(const at::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

void check(int code, const char* what) { PHI_CHECK(code == 0, what, " failed: ", cuda::error_string(code)); }

const void* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

cuda::AttentionShape attention_shape(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const char* what) {
  PHI_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, what, ": q, k, v must be 4-d");
  PHI_CHECK(k.sizes() == v.sizes(), what, ": k ", k.sizes(), " and v ", v.sizes(), " differ");
  PHI_CHECK(q.size(0) == k.size(0) && q.size(3) == k.size(3), what, ": q ", q.sizes(), " and k ", k.sizes(), " disagree");
  PHI_CHECK(q.size(1) % k.size(1) == 0, what, ": query heads ", q.size(1), " not a multiple of kv heads ", k.size(1));
  PHI_CHECK(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1, what, ": the head dim must be contiguous");
  PHI_CHECK(q.scalar_type() == k.scalar_type() && k.scalar_type() == v.scalar_type(), what, ": dtypes differ");
  for (const auto* t : {&q, &k, &v}) {
    PHI_CHECK(reinterpret_cast<uintptr_t>(t->data_ptr()) % 16 == 0 && t->stride(2) % 8 == 0 && t->stride(1) % 8 == 0 &&
                  t->stride(0) % 8 == 0,
              what, ": rows must be 16-byte aligned");
  }
  cuda::AttentionShape s{};
  s.B = q.size(0);
  s.Hq = q.size(1);
  s.Hkv = k.size(1);
  s.Tq = q.size(2);
  s.Tk = k.size(2);
  s.D = q.size(3);
  s.q_sb = q.stride(0), s.q_sh = q.stride(1), s.q_st = q.stride(2);
  s.k_sb = k.stride(0), s.k_sh = k.stride(1), s.k_st = k.stride(2);
  s.v_sb = v.stride(0), s.v_sh = v.stride(1), s.v_st = v.stride(2);
  return s;
}

at::Tensor lengths_on(const at::Tensor& key_lengths, const at::Tensor& q) {
  if (!key_lengths.defined()) return {};
  PHI_CHECK(key_lengths.dim() == 1 && key_lengths.size(0) == q.size(0), "key_lengths must be [B]");
  return key_lengths.to(q.device(), at::kLong).contiguous();
}

}  // namespace

bool cuda_kernels_compiled() { return true; }
bool cuda_kernels_runnable() { return at::hasCUDA(); }

AddNormResult add_norm_cuda(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                            const at::Tensor& bias, double eps, bool rms) {
  require_cuda("add_norm_cuda", {&x, &residual, &weight, &bias});
  const int64_t cols = x.size(-1);
  PHI_CHECK(weight.dim() == 1 && weight.size(0) == cols, "weight must be [", cols, "]");
  PHI_CHECK(!residual.defined() || residual.sizes() == x.sizes(), "residual must have the shape of x");
  for (const auto* t : {&residual, &weight, &bias}) {
    if (t->defined()) PHI_CHECK(t->scalar_type() == x.scalar_type(), "add_norm_cuda: dtypes differ");
  }
  auto xc = x.contiguous();
  auto rc = residual.defined() ? residual.contiguous() : at::Tensor();
  AddNormResult r;
  r.h = at::empty_like(xc);
  r.y = at::empty_like(xc);
  const int64_t rows = cols == 0 ? 0 : xc.numel() / cols;
  auto stats = x.options().dtype(at::kFloat);
  r.rstd = at::empty({rows}, stats);
  if (!rms) r.mean = at::empty({rows}, stats);
  if (rows == 0) return r;
  check(cuda::add_norm_forward(dtype_of(x, "add_norm_cuda"), rms, xc.data_ptr(), ptr_or_null(rc),
                               weight.contiguous().data_ptr(), bias.defined() ? bias.contiguous().data_ptr() : nullptr,
                               r.h.data_ptr(), r.y.data_ptr(), rms ? nullptr : r.mean.data_ptr<float>(),
                               r.rstd.data_ptr<float>(), rows, cols, static_cast<float>(eps), stream_of(x)),
        "add_norm kernel");
  return r;
}

AddNormGrads add_norm_backward_cuda(const at::Tensor& dy, const at::Tensor& dh_in, const at::Tensor& h,
                                    const at::Tensor& weight, const AddNormResult& forward, bool rms) {
  require_cuda("add_norm_backward_cuda", {&dy, &dh_in, &h, &weight});
  const int64_t cols = h.size(-1);
  const int64_t rows = cols == 0 ? 0 : h.numel() / cols;
  auto dyc = dy.contiguous();
  auto hc = h.contiguous();
  auto dhc = dh_in.defined() ? dh_in.contiguous() : at::Tensor();
  AddNormGrads g;
  g.dh = at::empty_like(hc);
  const int64_t splits = std::max<int64_t>(1, std::min<int64_t>(rows, 128));
  auto f32 = h.options().dtype(at::kFloat);
  auto dw_partial = at::empty({splits, cols}, f32);
  auto db_partial = rms ? at::Tensor() : at::empty({splits, cols}, f32);
  if (rows > 0) {
    check(cuda::add_norm_backward(dtype_of(h, "add_norm_backward_cuda"), rms, dyc.data_ptr(), ptr_or_null(dhc),
                                  hc.data_ptr(), weight.contiguous().data_ptr(),
                                  rms ? nullptr : forward.mean.data_ptr<float>(), forward.rstd.data_ptr<float>(),
                                  g.dh.data_ptr(), dw_partial.data_ptr<float>(),
                                  rms ? nullptr : db_partial.data_ptr<float>(), splits, rows, cols, stream_of(h)),
          "add_norm backward kernel");
  }
  g.dweight = dw_partial.sum(0);
  if (!rms) g.dbias = db_partial.sum(0);
  return g;
}

at::Tensor rms_norm_cuda(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return add_norm_cuda(x, {}, weight, {}, eps, true).y;
}

namespace {
cuda::Activation to_launch(FusedActivation kind) {
  switch (kind) {
    case FusedActivation::kGeluNew: return cuda::Activation::kGeluNew;
    case FusedActivation::kSwiGlu: return cuda::Activation::kSwiGlu;
    case FusedActivation::kGeGelu: return cuda::Activation::kGeGelu;
  }
  return cuda::Activation::kGeluNew;
}
}  // namespace

at::Tensor activation_cuda(const at::Tensor& x, FusedActivation kind, double limit) {
  require_cuda("activation_cuda", {&x});
  auto xc = x.contiguous();
  const bool gated = kind != FusedActivation::kGeluNew;
  const int64_t width = x.size(-1);
  PHI_CHECK(!gated || width % 2 == 0, "gated activations need an even last dim, got ", width);
  const int64_t inner = gated ? width / 2 : width;
  auto sizes = x.sizes().vec();
  sizes.back() = inner;
  auto y = at::empty(sizes, x.options());
  const int64_t rows = width == 0 ? 0 : xc.numel() / width;
  check(cuda::activation_forward(dtype_of(x, "activation_cuda"), to_launch(kind), xc.data_ptr(), y.data_ptr(), rows,
                                 inner, static_cast<float>(limit), stream_of(x)),
        "activation kernel");
  return y;
}

at::Tensor activation_backward_cuda(const at::Tensor& x, const at::Tensor& dy, FusedActivation kind, double limit) {
  require_cuda("activation_backward_cuda", {&x, &dy});
  auto xc = x.contiguous();
  auto dyc = dy.contiguous();
  const int64_t width = x.size(-1);
  const int64_t inner = dy.size(-1);
  const int64_t rows = width == 0 ? 0 : xc.numel() / width;
  PHI_CHECK(dy.numel() == rows * inner, "dy does not match x");
  auto dx = at::empty_like(xc);
  check(cuda::activation_backward(dtype_of(x, "activation_backward_cuda"), to_launch(kind), xc.data_ptr(), dyc.data_ptr(),
                                  dx.data_ptr(), rows, inner, static_cast<float>(limit), stream_of(x)),
        "activation backward kernel");
  return dx;
}

at::Tensor rotary_cuda(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool inverse) {
  require_cuda("rotary_cuda", {&x, &cos, &sin});
  PHI_CHECK(x.dim() == 4 && x.stride(3) == 1, "rotary_cuda: x must be [B, H, T, D] with a contiguous last dim");
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3), rot = cos.size(-1);
  PHI_CHECK(rot % 2 == 0 && rot <= D, "rotary width ", rot, " does not fit head dim ", D);
  auto c = cos.to(at::kFloat).expand({B, T, rot}).contiguous();
  auto s = sin.to(at::kFloat).expand({B, T, rot}).contiguous();
  auto out = at::empty({B, H, T, D}, x.options());
  check(cuda::rotary(dtype_of(x, "rotary_cuda"), x.data_ptr(), x.stride(0), x.stride(1), x.stride(2),
                     c.data_ptr<float>(), s.data_ptr<float>(), out.data_ptr(), B, H, T, D, rot, inverse ? -1.f : 1.f,
                     stream_of(x)),
        "rotary kernel");
  return out;
}

bool gemv_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (!x.is_cuda() || !w.is_cuda() || w.dim() != 2 || !w.is_contiguous()) return false;
  const auto t = w.scalar_type();
  if ((t != at::kBFloat16 && t != at::kHalf) || x.scalar_type() != t) return false;
  if (b.defined() && (!b.is_cuda() || b.scalar_type() != t || b.numel() != w.size(0))) return false;
  const int64_t K = w.size(1);
  return x.numel() == K && x.size(-1) == K && K % 8 == 0 && K <= 24576 && x.is_contiguous() &&
         reinterpret_cast<uintptr_t>(w.data_ptr()) % 16 == 0 && reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0;
}

at::Tensor gemv_cuda(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  require_cuda("gemv_cuda", {&x, &w, &b});
  PHI_CHECK(gemv_applies(x, w, b), "gemv_cuda: needs one row x [.., K] and a contiguous bf16 / f16 W [N, K] with K % 8 "
            "== 0 and K <= 24576, got x ", x.sizes(), " W ", w.sizes());
  auto sizes = x.sizes().vec();
  sizes.back() = w.size(0);
  auto y = at::empty(sizes, x.options());
  int sms = 132;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, x.device().index());
  check(cuda::gemv(dtype_of(w, "gemv_cuda"), w.data_ptr(), x.data_ptr(), b.defined() ? b.contiguous().data_ptr() : nullptr,
                   y.data_ptr(), w.size(0), w.size(1), sms, stream_of(x)),
        "gemv kernel");
  return y;
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
  check(cuda::kv_append(dtype_of(k, "kv_append_cuda"), k.data_ptr(), k.stride(0), k.stride(1), v.data_ptr(), v.stride(0),
                        v.stride(1), c.data_ptr<float>(), s.data_ptr<float>(), rot, k_cache.data_ptr(),
                        v_cache.data_ptr(), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
                        positions.contiguous().data_ptr<int64_t>(), B, H, D, stream_of(k)),
        "kv append kernel");
}

namespace {
struct ActivationFunction : torch::autograd::Function<ActivationFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t kind, double limit) {
    ctx->save_for_backward({x});
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["limit"] = limit;
    return activation_cuda(x, static_cast<FusedActivation>(kind), limit);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto x = ctx->get_saved_variables()[0];
    auto dx = activation_backward_cuda(x, grads[0].to(x.scalar_type()),
                                       static_cast<FusedActivation>(ctx->saved_data["kind"].toInt()),
                                       ctx->saved_data["limit"].toDouble());
    return {dx.view(x.sizes()), at::Tensor(), at::Tensor()};
  }
};

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

namespace {
// add_norm_cuda with autograd: outputs h and y; the backward kernel takes both incoming gradients.
// residual and bias arrive as (possibly empty) defined tensors: autograd inputs must be.
struct AddNormFunction : torch::autograd::Function<AddNormFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                                                const at::Tensor& residual, const at::Tensor& weight,
                                                const at::Tensor& bias, double eps, bool rms) {
    const bool has_residual = residual.numel() > 0, has_bias = bias.numel() > 0;
    auto r = add_norm_cuda(x, has_residual ? residual : at::Tensor(), weight, has_bias ? bias : at::Tensor(), eps, rms);
    ctx->save_for_backward({r.h, weight, r.mean.defined() ? r.mean : at::empty({0}), r.rstd});
    ctx->saved_data["rms"] = rms;
    ctx->saved_data["has_residual"] = has_residual;
    ctx->saved_data["has_bias"] = has_bias;
    return {r.h, r.y};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const bool rms = ctx->saved_data["rms"].toBool();
    const auto& h = saved[0];
    const auto& weight = saved[1];
    AddNormResult forward;
    forward.mean = saved[2];
    forward.rstd = saved[3];
    auto dy = grads[1].defined() ? grads[1] : at::zeros_like(h);
    auto g = add_norm_backward_cuda(dy, grads[0], h, weight, forward, rms);
    const bool has_residual = ctx->saved_data["has_residual"].toBool();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    return {g.dh, has_residual ? g.dh : at::Tensor(), g.dweight.to(weight.scalar_type()),
            has_bias ? g.dbias.to(weight.scalar_type()) : at::Tensor(), at::Tensor(), at::Tensor()};
  }
};
}  // namespace

std::pair<at::Tensor, at::Tensor> add_norm_autograd_cuda(const at::Tensor& x, const at::Tensor& residual,
                                                         const at::Tensor& weight, const at::Tensor& bias, double eps,
                                                         bool rms) {
  auto empty = at::empty({0}, x.options());
  auto out = AddNormFunction::apply(x, residual.defined() ? residual : empty, weight, bias.defined() ? bias : empty, eps,
                                    rms);
  return {out[0], out[1]};
}

at::Tensor activation_autograd_cuda(const at::Tensor& x, FusedActivation kind, double limit) {
  return ActivationFunction::apply(x, static_cast<int64_t>(kind), limit);
}

at::Tensor rotary_autograd_cuda(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return RotaryFunction::apply(x, cos, sin);
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
}  // namespace

FlashForward flash_attention_forward_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                          const at::Tensor& key_lengths, double scale, const FlashMask& mask,
                                          FlashKernel kernel) {
  require_cuda("flash_attention_forward_cuda", {&q, &k, &v});
  auto s = attention_shape(q, k, v, "flash attention");
  apply_mask(s, mask);
  PHI_CHECK(q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf, "flash attention takes bf16 / f16");
  PHI_CHECK(s.Tq == s.Tk, "flash attention (training) needs as many queries as keys");
  PHI_CHECK(s.D == 64 || s.D == 80 || s.D == 96 || s.D == 128, "flash attention head dim ", s.D,
            " is not one of 64, 80, 96, 128");
  auto lengths = lengths_on(key_lengths, q);
  FlashForward f;
  f.out = at::empty({s.B, s.Hq, s.Tq, s.D}, q.options());
  f.lse = at::empty({s.B, s.Hq, s.Tq}, q.options().dtype(at::kFloat));
  auto launch = kernel == FlashKernel::kMma ? cuda::flash_attention_forward_mma : cuda::flash_attention_forward;
  check(launch(dtype_of(q, "flash attention"), s, q.data_ptr(), k.data_ptr(), v.data_ptr(),
               lengths.defined() ? lengths.data_ptr<int64_t>() : nullptr, static_cast<float>(scale), f.out.data_ptr(),
               f.lse.data_ptr<float>(), stream_of(q)),
        "flash attention forward");
  return f;
}

FlashGrads flash_attention_backward_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                         const FlashForward& forward, const at::Tensor& d_out,
                                         const at::Tensor& key_lengths, double scale, const FlashMask& mask,
                                         FlashKernel kernel) {
  require_cuda("flash_attention_backward_cuda", {&q, &k, &v, &d_out});
  auto s = attention_shape(q, k, v, "flash attention backward");
  apply_mask(s, mask);
  auto lengths = lengths_on(key_lengths, q);
  auto d_o = d_out.to(q.scalar_type()).contiguous();
  auto delta = (d_o.to(at::kFloat) * forward.out.to(at::kFloat)).sum(-1).contiguous();
  auto dq = at::zeros({s.B, s.Hq, s.Tq, s.D}, q.options().dtype(at::kFloat));
  FlashGrads g;
  g.dk = at::empty({s.B, s.Hkv, s.Tk, s.D}, k.options());
  g.dv = at::empty({s.B, s.Hkv, s.Tk, s.D}, v.options());
  auto launch = kernel == FlashKernel::kMma ? cuda::flash_attention_backward_mma : cuda::flash_attention_backward;
  check(launch(dtype_of(q, "flash attention backward"), s, q.data_ptr(), k.data_ptr(), v.data_ptr(), d_o.data_ptr(),
               forward.lse.data_ptr<float>(), delta.data_ptr<float>(),
               lengths.defined() ? lengths.data_ptr<int64_t>() : nullptr, static_cast<float>(scale),
               dq.data_ptr<float>(), g.dk.data_ptr(), g.dv.data_ptr(), stream_of(q)),
        "flash attention backward");
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
  auto lengths = key_lengths.defined() ? key_lengths : at::empty({0}, q.options().dtype(at::kLong));
  return FlashFunction::apply(q, k, v, lengths, scale, mask.window, mask.local_blocks, mask.vert_stride, mask.head_step);
}

namespace {
// The split-K decode launch shared by the dense and the paged cache.
at::Tensor run_decode(const at::Tensor& q, cuda::AttentionShape s, const void* k, const void* v,
                      const at::Tensor& key_lengths, const cuda::PageTable& paging, double scale, int64_t splits,
                      int64_t window) {
  PHI_CHECK(window >= 0, "decode attention window must be >= 0, got ", window);
  s.window = window;
  PHI_CHECK(s.D <= 128 && s.D % 8 == 0, "decode attention head dim ", s.D, " must be a multiple of 8, at most 128");
  auto lengths = lengths_on(key_lengths, q);
  const int64_t rows = s.B * s.Hq * s.Tq;
  if (splits <= 0) {
    // Enough blocks to fill the device twice, each split at least 256 keys.
    int sms = 132;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, q.device().index());
    splits = std::max<int64_t>(1, std::min<int64_t>((2 * sms + rows - 1) / std::max<int64_t>(rows, 1), (s.Tk + 255) / 256));
  }
  auto f32 = q.options().dtype(at::kFloat);
  auto o_partial = at::empty({splits, rows, s.D}, f32);
  auto m_partial = at::empty({splits, rows}, f32);
  auto l_partial = at::empty({splits, rows}, f32);
  auto out = at::empty({s.B, s.Hq, s.Tq, s.D}, q.options());
  check(cuda::decode_attention(dtype_of(q, "decode attention"), s, q.data_ptr(), k, v,
                               lengths.defined() ? lengths.data_ptr<int64_t>() : nullptr, paging,
                               static_cast<float>(scale), splits, o_partial.data_ptr<float>(),
                               m_partial.data_ptr<float>(), l_partial.data_ptr<float>(), out.data_ptr(), stream_of(q)),
        "decode attention");
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
