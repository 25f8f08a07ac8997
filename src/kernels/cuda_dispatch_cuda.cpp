// Argument checks and dispatch from at::Tensor to the CUDA launchers (built with PHI_WITH_CUDA).
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/cuda/CUDAStream.h>

#include "kernels/cuda/rms_norm_launch.h"
#include "phi/core/error.h"
#include "phi/kernels/cuda_kernels.h"

namespace phi {

bool cuda_kernels_compiled() { return true; }
bool cuda_kernels_runnable() { return at::hasCUDA(); }

at::Tensor rms_norm_cuda(const at::Tensor& x, const at::Tensor& weight, double eps) {
  PHI_CHECK(cuda_kernels_runnable(), "rms_norm_cuda needs a CUDA GPU");
  PHI_CHECK(x.is_cuda() && weight.is_cuda(), "rms_norm_cuda needs CUDA tensors");
  PHI_CHECK(x.scalar_type() == weight.scalar_type(), "x and weight dtypes differ");
  PHI_CHECK(weight.dim() == 1 && weight.size(0) == x.size(-1), "weight must be [", x.size(-1), "]");
  cuda::RmsNormDType dtype;
  switch (x.scalar_type()) {
    case at::kFloat: dtype = cuda::RmsNormDType::kFloat32; break;
    case at::kBFloat16: dtype = cuda::RmsNormDType::kBFloat16; break;
    case at::kHalf: dtype = cuda::RmsNormDType::kFloat16; break;
    default: throw Error(std::string("rms_norm_cuda: unsupported dtype ") + c10::toString(x.scalar_type()));
  }
  auto xc = x.contiguous();
  auto wc = weight.contiguous();
  auto y = at::empty_like(xc);
  const int64_t cols = x.size(-1);
  const int64_t rows = cols == 0 ? 0 : xc.numel() / cols;
  if (rows == 0) return y;
  auto stream = c10::cuda::getCurrentCUDAStream(x.device().index()).stream();
  int code = cuda::rms_norm_forward(dtype, xc.data_ptr(), wc.data_ptr(), y.data_ptr(), rows, cols,
                                    static_cast<float>(eps), stream);
  PHI_CHECK(code == 0, "rms_norm kernel launch failed: ", cuda::error_string(code));
  return y;
}

}  // namespace phi
