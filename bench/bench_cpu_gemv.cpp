// gemv_cpu against at::linear for one row, the matrix shapes of the 125M Phi-3-shaped bench model
// (configs/models/bench-phi3-100m.json) and Phi-3-mini, in f32 / bf16 / f16: GB/s of weights read.
//   bench_cpu_gemv [benchmark flags]      (threads: OMP_NUM_THREADS)
#include <benchmark/benchmark.h>

#include <ATen/ATen.h>

#include "phi/kernels/cpu_kernels.h"

namespace {

void gemv(benchmark::State& state, int64_t N, int64_t K, at::ScalarType dtype, bool ours) {
  auto w = at::randn({N, K}).to(dtype);
  auto x = at::randn({1, 1, K}).to(dtype);
  for (auto _ : state) {
    auto y = ours ? phi::gemv_cpu(x, w, {}) : at::linear(x, w);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(w.numel() * w.element_size()) / 1e9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::tuple<const char*, int64_t, int64_t>> shapes = {
      {"qkv_768", 2304, 768},   {"fc_in_768", 6144, 768}, {"fc_out_768", 768, 3072},
      {"head_768", 32064, 768}, {"qkv_3072", 9216, 3072}, {"fc_out_3072", 3072, 8192}};
  for (const auto& [name, N, K] : shapes) {
    for (auto [dtype, dname] : {std::pair{at::kFloat, "f32"}, {at::kBFloat16, "bf16"}, {at::kHalf, "f16"}}) {
      for (bool ours : {false, true}) {
        const std::string label = std::string(ours ? "ours/" : "aten/") + dname + "/" + name;
        benchmark::RegisterBenchmark(label.c_str(), gemv, N, K, dtype, ours)->Unit(benchmark::kMicrosecond);
      }
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
