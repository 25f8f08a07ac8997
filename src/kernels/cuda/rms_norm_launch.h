// Plain C++ launch declarations of the CUDA kernels (implemented in .cu files).
#pragma once

#include <cstdint>

namespace phi::cuda {

enum class RmsNormDType { kFloat32, kBFloat16, kFloat16 };

/// Launches the RMSNorm kernel on `stream` (a cudaStream_t); returns a cudaError_t code.
int rms_norm_forward(RmsNormDType dtype, const void* x, const void* weight, void* y, int64_t rows,
                     int64_t cols, float eps, void* stream);
const char* error_string(int code);

}  // namespace phi::cuda
