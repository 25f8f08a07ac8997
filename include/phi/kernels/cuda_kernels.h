// Fused CUDA kernels behind plain C++ declarations (no CUDA headers here). Whether they were
// compiled is a build option (PHI_WITH_CUDA); whether they can run depends on a GPU being present.
// The ATen references in ops.h / attention.h stay the default path until each kernel has been
// verified on a GPU (docs/perf.md).
#pragma once

#include <ATen/core/Tensor.h>

namespace phi {

/// True when libphi was built with its CUDA kernels.
bool cuda_kernels_compiled();
/// True when the kernels were compiled and a CUDA device is present.
bool cuda_kernels_runnable();

/// Fused RMSNorm (float32 statistics, weight applied after the cast back), x [..., H] contiguous
/// float32/bfloat16/float16 on a CUDA device, weight [H] of the same dtype. Throws when CUDA is
/// unavailable.
at::Tensor rms_norm_cuda(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace phi
