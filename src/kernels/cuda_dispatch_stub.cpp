// Built when PHI_WITH_CUDA is off: the CUDA entry points exist and say why they cannot run.
#include "phi/core/error.h"
#include "phi/kernels/attention.h"
#include "phi/kernels/cuda_kernels.h"

namespace phi {

namespace {
[[noreturn]] void unavailable() {
  throw Error("libphi was built without CUDA kernels", "", "rebuild with -DPHI_WITH_CUDA=ON");
}
}  // namespace

bool cuda_kernels_compiled() { return false; }
bool cuda_kernels_runnable() { return false; }

AddNormResult add_norm_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double, bool) {
  unavailable();
}
AddNormGrads add_norm_backward_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                    const AddNormResult&, bool) {
  unavailable();
}
at::Tensor rms_norm_cuda(const at::Tensor&, const at::Tensor&, double) { unavailable(); }
std::pair<at::Tensor, at::Tensor> add_norm_autograd_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                         const at::Tensor&, double, bool) {
  unavailable();
}
at::Tensor activation_cuda(const at::Tensor&, FusedActivation, double) { unavailable(); }
at::Tensor activation_backward_cuda(const at::Tensor&, const at::Tensor&, FusedActivation, double) { unavailable(); }
at::Tensor rotary_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&, bool) { unavailable(); }
at::Tensor gemv_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&) { unavailable(); }
bool gemv_applies(const at::Tensor&, const at::Tensor&, const at::Tensor&) { return false; }
void kv_append_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, at::Tensor&,
                    at::Tensor&, const at::Tensor&) {
  unavailable();
}
at::Tensor activation_autograd_cuda(const at::Tensor&, FusedActivation, double) { unavailable(); }
at::Tensor rotary_autograd_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&) { unavailable(); }
FlashForward flash_attention_forward_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                          double, const FlashMask&, FlashKernel) {
  unavailable();
}
FlashGrads flash_attention_backward_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&, const FlashForward&,
                                         const at::Tensor&, const at::Tensor&, double, const FlashMask&, FlashKernel) {
  unavailable();
}
at::Tensor flash_attention_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                                const FlashMask&) {
  unavailable();
}
at::Tensor decode_attention_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                                 int64_t, int64_t) {
  unavailable();
}
at::Tensor paged_decode_attention_cuda(const at::Tensor&, const PagedKV&, const at::Tensor&, int64_t, double, int64_t,
                                       int64_t) {
  unavailable();
}

}  // namespace phi
