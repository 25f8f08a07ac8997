// The CPU kernels against their ATen references: gemv_cpu against at::linear (in float64 for the
// truth) on random shapes with every tail of the vector width, every dtype, with and without bias,
// on one thread and on all, with every instruction set the CPU runs.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "phi/kernels/cpu_kernels.h"
#include "phi/kernels/ops.h"

namespace {

// Largest |ours - exact| relative to the exact output's scale (its largest magnitude).
double relative_error(const at::Tensor& ours, const at::Tensor& exact) {
  const double scale = exact.abs().max().item<double>() + 1e-12;
  return (ours.to(at::kDouble) - exact).abs().max().item<double>() / scale;
}

TEST(CpuKernels, GemvEqualsLinearForOneRow) {
  at::manual_seed(0);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1},      {3, 5},      {4, 16},   {5, 17},    {7, 31},
                                                           {9, 33},     {64, 64},    {13, 100}, {130, 257}, {257, 96},
                                                           {512, 3072}, {3072, 512}, {1000, 8}, {6, 7}};
  const int threads = at::get_num_threads();
  for (int t : {1, threads}) {
    at::set_num_threads(t);
    for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      for (const auto& [N, K] : shapes) {
        for (bool with_bias : {false, true}) {
          auto w = at::randn({N, K}).to(dtype);
          auto x = at::randn({1, 1, K}).to(dtype);
          auto b = with_bias ? at::randn({N}).to(dtype) : at::Tensor();
          ASSERT_TRUE(phi::gemv_cpu_applies(x, w, b));
          auto ours = phi::gemv_cpu(x, w, b);
          ASSERT_EQ(ours.sizes(), (std::vector<int64_t>{1, 1, N}));
          ASSERT_EQ(ours.scalar_type(), dtype);
          // The truth: the same rounded inputs, float64 products and sums.
          auto exact = at::linear(x.to(at::kDouble), w.to(at::kDouble), with_bias ? b.to(at::kDouble) : at::Tensor());
          auto aten = with_bias ? at::linear(x, w, b) : at::linear(x, w);
          const double tolerance = dtype == at::kFloat ? 1e-5 : dtype == at::kBFloat16 ? 1e-2 : 2e-3;
          EXPECT_LT(relative_error(ours, exact), tolerance) << N << "x" << K << " " << dtype << " bias " << with_bias;
          // Never further from the truth than ATen's own result, beyond one rounding of the output.
          EXPECT_LE(relative_error(ours, exact), relative_error(aten, exact) + tolerance / 2)
              << N << "x" << K << " " << dtype;
          // Every instruction set this CPU runs (the portable and AVX2 paths too on an AVX-512 CPU).
          for (const auto& isa : phi::gemv_cpu_isas()) {
            EXPECT_LT(relative_error(phi::gemv_cpu_with(x, w, b, isa), exact), tolerance)
                << isa << " " << N << "x" << K << " " << dtype << " bias " << with_bias;
          }
          // phi::linear dispatches one-row f32 and bf16 CPU products here (f16 stays with ATen).
          if (dtype != at::kHalf) EXPECT_TRUE(at::equal(phi::linear(x, w, b), ours)) << N << "x" << K << " " << dtype;
        }
      }
    }
  }
  at::set_num_threads(threads);
}

TEST(CpuKernels, GemvRefusesWhatItDoesNotTake) {
  auto w = at::randn({8, 16});
  EXPECT_FALSE(phi::gemv_cpu_applies(at::randn({2, 16}), w, {}));                    // two rows
  EXPECT_FALSE(phi::gemv_cpu_applies(at::randn({16}).to(at::kHalf), w, {}));         // dtype differs
  EXPECT_FALSE(phi::gemv_cpu_applies(at::randn({16}), w.t().contiguous().t(), {}));  // not contiguous
  EXPECT_FALSE(phi::gemv_cpu_applies(at::randn({16}), w, at::randn({7})));           // bias size
  EXPECT_FALSE(phi::gemv_cpu_applies(at::randn({16}).to(at::kDouble), w.to(at::kDouble), {}));
  EXPECT_THROW(phi::gemv_cpu(at::randn({2, 16}), w, {}), std::exception);
  EXPECT_THROW(phi::gemv_cpu_with(at::randn({16}), w, {}, "sse9"), std::exception);
  // Two rows still go through ATen in phi::linear.
  auto x = at::randn({2, 16});
  EXPECT_TRUE(at::allclose(phi::linear(x, w, {}), at::linear(x, w)));
  std::printf("gemv_cpu runs with %s here\n", phi::gemv_cpu_isa());
}

}  // namespace
