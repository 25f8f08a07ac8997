// Built when PHI_WITH_CUDA is off: the CUDA entry points exist and say why they cannot run.
#include "phi/core/error.h"
#include "phi/kernels/cuda_kernels.h"

namespace phi {

bool cuda_kernels_compiled() { return false; }
bool cuda_kernels_runnable() { return false; }

at::Tensor rms_norm_cuda(const at::Tensor&, const at::Tensor&, double) {
  throw Error("libphi was built without CUDA kernels", "", "rebuild with -DPHI_WITH_CUDA=ON");
}

}  // namespace phi
