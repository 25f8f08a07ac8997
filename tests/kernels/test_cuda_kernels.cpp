// CUDA kernels against their ATen references; skipped with a message when no GPU is present.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include "phi/core/error.h"
#include "phi/kernels/cuda_kernels.h"
#include "phi/kernels/ops.h"

namespace {

TEST(CudaKernels, RmsNormMatchesReference) {
  if (!phi::cuda_kernels_runnable()) {
    GTEST_SKIP() << "no CUDA GPU present (kernels compiled: " << phi::cuda_kernels_compiled() << ")";
  }
  for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    auto x = at::randn({7, 3072}, at::device(at::kCUDA).dtype(dtype));
    auto w = at::randn({3072}, at::device(at::kCUDA).dtype(dtype));
    auto ref = phi::rms_norm(x.to(at::kFloat), w.to(at::kFloat), 1e-5);
    auto out = phi::rms_norm_cuda(x, w, 1e-5).to(at::kFloat);
    const double tolerance = dtype == at::kFloat ? 1e-5 : (dtype == at::kHalf ? 5e-3 : 1e-2);
    EXPECT_LT(((out - ref).abs().max() / ref.abs().max()).item<double>(), tolerance) << dtype;
  }
}

TEST(CudaKernels, WithoutGpuTheEntryPointSaysWhy) {
  if (phi::cuda_kernels_runnable()) GTEST_SKIP() << "a GPU is present";
  auto x = at::randn({2, 8});
  EXPECT_THROW(phi::rms_norm_cuda(x, at::ones({8}), 1e-5), phi::Error);
}

}  // namespace
