// CPU decode throughput of a randomly initialised Phi-3-shaped model: prefill a prompt, then
// decode one token per sequence per step over the KV cache, at batch 1 and batch 8 (decode/N, the
// fixed-slot cache), and at batch 8 over the server's paged cache (decode_paged/8, 16-token pages
// read through the reference gather). Reported as tokens/s (generated tokens of all sequences per
// second). scripts/bench_decode.sh runs the same model through transformers in the same run for
// the ratio.
//   bench_decode --config FILE [--prompt 128] [--steps 64] [--dtype float32|bfloat16|float16] [benchmark flags]
#include <benchmark/benchmark.h>

#include <memory>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include "kernel_options.h"
#include "phi/config/model_config.h"
#include "phi/models/family.h"
#include "phi/models/model_info.h"
#include "phi/models/transformer.h"

namespace {

std::unique_ptr<phi::Transformer> g_model;
int64_t g_prompt = 128;
int64_t g_steps = 64;

void run_decode(benchmark::State& state, bool paged) {
  at::NoGradGuard no_grad;
  const int64_t batch = state.range(0);
  const auto& model = *g_model;
  const int64_t vocab = model.config().vocab_size;
  auto prompt = at::randint(0, vocab, {batch, g_prompt}, at::kLong);
  const int64_t total = g_prompt + g_steps, page = 16;
  for (auto _ : state) {
    state.PauseTiming();
    std::unique_ptr<phi::KVStore> store;
    if (paged) {
      store = std::make_unique<phi::PagedKVCache>(
          model.make_paged_cache(batch, batch * ((total + page - 1) / page), page, total));
    } else {
      store = std::make_unique<phi::KVCache>(model.make_cache(batch, total, total));
    }
    auto& cache = *store;
    auto logits = model.forward_cached(prompt, std::vector<int64_t>(batch, g_prompt), cache);
    auto next = logits.select(1, g_prompt - 1).argmax(-1).unsqueeze(1);
    state.ResumeTiming();
    for (int64_t s = 0; s < g_steps; ++s) {
      auto step = model.forward_cached(next, std::vector<int64_t>(batch, 1), cache);
      next = step.select(1, 0).argmax(-1).unsqueeze(1);
    }
    benchmark::DoNotOptimize(next.data_ptr());
  }
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(batch * g_steps), benchmark::Counter::kIsIterationInvariantRate);
}

void decode(benchmark::State& state) { run_decode(state, false); }
void decode_paged(benchmark::State& state) { run_decode(state, true); }

}  // namespace

int main(int argc, char** argv) {
  const auto kernels = phi::bench::take_kernel_options(argc, argv);
  std::string config_path, dtype_name = "float32";
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) config_path = argv[++i];
    else if (a == "--prompt" && i + 1 < argc) g_prompt = std::stoll(argv[++i]);
    else if (a == "--steps" && i + 1 < argc) g_steps = std::stoll(argv[++i]);
    else if (a == "--dtype" && i + 1 < argc) dtype_name = argv[++i];
    else rest.push_back(argv[i]);
  }
  auto config = phi::load_model_config(config_path);
  const auto dtype = dtype_name == "bfloat16" ? at::kBFloat16 : dtype_name == "float16" ? at::kHalf : at::kFloat;
  if (dtype == at::kFloat && dtype_name != "float32") {
    std::fprintf(stderr, "bench_decode: --dtype must be float32, bfloat16 or float16, got %s\n", dtype_name.c_str());
    return 1;
  }
  g_model = std::make_unique<phi::Transformer>(phi::Transformer::random(config, 0, dtype));
  std::fprintf(stderr, "model: %lld parameters, %s, %d threads, kernels %s\n",
               static_cast<long long>(phi::model_info(config).n_parameters), dtype_name.c_str(), at::get_num_threads(),
               kernels.to_json().dump().c_str());
  benchmark::RegisterBenchmark("decode", decode)->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
  benchmark::RegisterBenchmark("decode_paged", decode_paged)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
