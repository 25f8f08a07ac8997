// The shared part of the kernel dispatch files, and the one place that asks the CUDA runtime.
#include "kernels/cuda_support.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include "phi/core/error.h"
#include "phi/kernels/cuda_kernels.h"

#if PHI_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

namespace phi {
bool cuda_kernels_compiled() { return true; }
namespace kernels {
void* stream_of(const at::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }
int multiprocessor_count(const at::Tensor& t) {
  int sms = 132;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, t.device().index());
  return sms;
}
}  // namespace kernels
}  // namespace phi
#else
namespace phi {
bool cuda_kernels_compiled() { return false; }
namespace kernels {
void* stream_of(const at::Tensor&) { return nullptr; }
int multiprocessor_count(const at::Tensor&) { return 1; }
}  // namespace kernels
}  // namespace phi
#endif

namespace phi {

bool cuda_kernels_runnable() { return cuda_kernels_compiled() && at::hasCUDA(); }

namespace kernels {

cuda::DType dtype_of(const at::Tensor& t, const char* what) {
  switch (t.scalar_type()) {
    case at::kFloat: return cuda::DType::kFloat32;
    case at::kBFloat16: return cuda::DType::kBFloat16;
    case at::kHalf: return cuda::DType::kFloat16;
    default: throw Error(std::string(what) + ": unsupported dtype " + c10::toString(t.scalar_type()));
  }
}

void require_cuda(const char* what, std::initializer_list<const at::Tensor*> tensors) {
  if (!cuda_kernels_compiled()) {
    throw Error(std::string(what) + ": libphi was built without CUDA kernels", "", "rebuild with -DPHI_WITH_CUDA=ON");
  }
  PHI_CHECK(cuda_kernels_runnable(), what, " needs a CUDA GPU");
  for (const auto* t : tensors) {
    if (t->defined()) PHI_CHECK(t->is_cuda(), what, " needs CUDA tensors");
  }
}

void check_launch(int code, const char* what) { PHI_CHECK(code == 0, what, " failed: ", cuda::error_string(code)); }

cuda::AttentionShape attention_shape(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const char* what) {
  PHI_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, what, ": q, k, v must be 4-d");
  PHI_CHECK(k.sizes() == v.sizes(), what, ": k ", k.sizes(), " and v ", v.sizes(), " differ");
  PHI_CHECK(q.size(0) == k.size(0) && q.size(3) == k.size(3), what, ": q ", q.sizes(), " and k ", k.sizes(), " disagree");
  PHI_CHECK(k.size(1) > 0 && q.size(1) % k.size(1) == 0, what, ": query heads ", q.size(1),
            " not a multiple of kv heads ", k.size(1));
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

}  // namespace kernels
}  // namespace phi
