// GPU benchmarks (Google Benchmark, manual time: the device is synchronised around each timed
// region). scripts/gpu_check.sh runs them and prints the table with ratios measured in the same run.
//   attention/<impl>/<fwd|fwdbwd>/B/H/S/D   impl: phi (our flash kernels), phi-mma (the mma.sync
//       kernels, called directly), flash (torch SDPA's
//       FlashAttention backend), cudnn (torch SDPA's cuDNN backend); causal, bf16; TFLOP/s counter
//       (causal forward = 2 B H S^2 D, forward+backward = 3.5x that).
//   copy      device-to-device copy bandwidth (bytes read + written).
//   decode/<backend>   Phi-3-mini shape, random bf16 weights, batch 1, 512-token prompt, 256 new
//       tokens (greedy), tokens/s of the decode phase; weight_bytes for the bandwidth floor.
//   gemv/<phi|cublas>/<matrix>   the batch-1 linear layers of Phi-3-mini (bf16), 100 calls back to
//       back: bytes of W read per second, our GEMV kernel against at::linear (cuBLAS).
//   decode_attention/b1/768/splits<n>   Phi-3-mini's decode attention (32 heads of 96) over 768 keys
//       at n key splits (0: the launcher's choice); decode_attention/b16/2048/paged/<kernel|gather>:
//       16 sequences of 2048 keys in a paged cache, read by the paged kernel or gathered first.
//   decode_batch/<dense|paged|paged-graph>   Phi-3-mini bf16, 16 sequences of 512-token prompts, 64
//       decode steps with the fused attention backend, over the fixed-slot cache, the paged cache
//       (16-token pages, read through paged_attention()), or the paged cache with the step replayed
//       as a CUDA graph (the server's --cuda-graphs; its set by phi/kernels/verified.h): tokens/s.
//   bench_gpu --profile decode|train   runs no benchmark: one eager decode step of Phi-3-mini (fused
//       kernels, batch 1, after a 512-token prompt and warm-up steps) or one phi-1.5 training step
//       (SDPA + fused elementwise, batch 4 x 2048) inside an NVTX range "phi_profile", for
//       scripts/gpu_profile.sh (Nsight Compute times each kernel of the range).
//   train/phi-1.5/<backend>   one training step (bf16 autocast, float32 master weights, AdamW),
//       batch 4 x 2048, attention through our flash kernels (fused: WMMA, fused-mma: the mma.sync
//       kernels) or torch SDPA (aten): tokens/s
//       and model FLOP/s.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <nvtx3/nvToolsExt.h>

#include "kernel_options.h"
#include "phi/config/model_config.h"
#include "phi/infer/decode_graph.h"
#include "phi/kernels/attention.h"
#include "phi/kernels/cuda_kernels.h"
#include "phi/kernels/verified.h"
#include "phi/models/family.h"
#include "phi/models/model_info.h"
#include "phi/models/transformer.h"
#include "phi/train/optimizer.h"

namespace {

// Runs a benchmark body; a failure (no such SDPA backend here, out of memory, ...) becomes the
// benchmark's error instead of ending the program.
template <typename F>
void guarded(benchmark::State& state, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    std::string what = e.what();
    state.SkipWithError(what.substr(0, what.find('\n')).c_str());
  }
}

double timed(const std::function<void()>& f) {
  c10::cuda::device_synchronize();
  const auto start = std::chrono::steady_clock::now();
  f();
  c10::cuda::device_synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void set_sdpa_backend(const std::string& impl) {
  auto& ctx = at::globalContext();
  ctx.setSDPUseFlash(impl == "flash");
  ctx.setSDPUseCuDNN(impl == "cudnn");
  ctx.setSDPUseMemEfficient(false);
  ctx.setSDPUseMath(false);
}

void attention_body(benchmark::State& state, const std::string& impl, bool backward, int64_t B, int64_t H, int64_t S,
                    int64_t D) {
  auto opts = at::device(at::kCUDA).dtype(at::kBFloat16);
  // Two input sets, alternated, so that repeated runs do not read one set from L2.
  std::vector<std::array<at::Tensor, 3>> sets;
  for (int i = 0; i < 2; ++i) {
    sets.push_back({at::randn({B, H, S, D}, opts).requires_grad_(backward), at::randn({B, H, S, D}, opts).requires_grad_(backward),
                    at::randn({B, H, S, D}, opts).requires_grad_(backward)});
  }
  auto grad = at::randn({B, H, S, D}, opts);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  if (impl != "phi") set_sdpa_backend(impl);
  auto run = [&](int which) {
    auto& [q, k, v] = sets[which];
    at::Tensor out;
    if (impl == "phi") {
      out = phi::flash_attention_cuda(q, k, v, {}, scale);
    } else if (impl == "phi-mma") {
      // The mma.sync kernels called directly (not dispatched through autograd yet).
      auto f = phi::flash_attention_forward_cuda(q.detach(), k.detach(), v.detach(), {}, scale, {}, phi::FlashKernel::kMma);
      if (backward) phi::flash_attention_backward_cuda(q.detach(), k.detach(), v.detach(), f, grad, {}, scale, {},
                                                       phi::FlashKernel::kMma);
      return;
    } else {
      out = at::scaled_dot_product_attention(q, k, v, {}, 0.0, true, scale);
    }
    if (backward) out.backward(grad);
  };
  std::unique_ptr<at::NoGradGuard> no_grad;
  if (!backward) no_grad = std::make_unique<at::NoGradGuard>();
  for (int i = 0; i < 3; ++i) run(i % 2);  // warm-up
  int it = 0;
  for (auto _ : state) state.SetIterationTime(timed([&] { run(it++ % 2); }));
  const double flops = 2.0 * B * H * static_cast<double>(S) * S * D * (backward ? 3.5 : 1.0);
  state.counters["TFLOPs"] = benchmark::Counter(flops / 1e12, benchmark::Counter::kIsIterationInvariantRate);
}

void attention(benchmark::State& state, std::string impl, bool backward, int64_t B, int64_t H, int64_t S, int64_t D) {
  guarded(state, [&] { attention_body(state, impl, backward, B, H, S, D); });
  set_sdpa_backend("flash");
  at::globalContext().setSDPUseMemEfficient(true);
  at::globalContext().setSDPUseCuDNN(true);
  at::globalContext().setSDPUseMath(true);
}

void copy_bandwidth(benchmark::State& state) {
  const int64_t n = int64_t(1) << 30;  // 1 GiB per buffer
  auto a = at::randint(0, 255, {n}, at::device(at::kCUDA).dtype(at::kByte));
  auto b = at::empty_like(a);
  b.copy_(a);
  for (auto _ : state) state.SetIterationTime(timed([&] { b.copy_(a); }));
  state.counters["GBps"] = benchmark::Counter(2.0 * n / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// Random weights straight on the device (N(0, 0.02) matrices, unit norms, zero biases).
phi::Transformer random_on_gpu(const phi::ModelConfig& config, at::ScalarType dtype) {
  phi::ParameterMap params;
  auto opts = at::device(at::kCUDA).dtype(dtype);
  for (const auto& [name, shape] : phi::expected_parameters(config)) {
    const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const bool norm = name.find("norm.") != std::string::npos;
    params[name] = norm && !bias ? at::ones(shape, opts) : (bias ? at::zeros(shape, opts) : at::randn(shape, opts) * 0.02);
  }
  return phi::Transformer(config, std::move(params));
}

void decode_body(benchmark::State& state, const std::string& backend) {
  at::NoGradGuard no_grad;
  auto config = phi::preset_model_config("phi-3-mini-4k");
  auto model = random_on_gpu(config, at::kBFloat16);
  const int64_t prompt = 512, steps = 256;
  auto ids = at::randint(0, config.vocab_size, {1, prompt}, at::kLong);
  double weight_bytes = 0;
  for (const auto& [name, p] : model.parameters()) weight_bytes += static_cast<double>(p.numel() * p.element_size());
  const bool graph = backend == "graph";
  phi::set_attention_backend(graph ? "fused" : backend);
  phi::set_elementwise_backend(graph ? "fused" : backend);
  for (auto _ : state) {
    auto cache = model.make_cache(1, prompt + steps + 1, prompt + steps + 1);
    auto logits = model.forward_cached(ids, {prompt}, cache);
    auto next = logits.select(1, prompt - 1).argmax(-1).unsqueeze(1).cpu();
    if (graph) {
      phi::DecodeGraph decoder(model, cache);  // captured once per sequence, outside the timing
      state.counters["graph_nodes"] = static_cast<double>(decoder.nodes());
      std::fprintf(stderr, "decode graph nodes per token:\n%s", decoder.node_summary().c_str());
      state.SetIterationTime(timed([&] {
        int64_t token = next.item<int64_t>();
        for (int64_t s = 0; s < steps; ++s) token = decoder.step({token}).argmax(-1).item<int64_t>();
      }));
    } else {
      state.SetIterationTime(timed([&] {
        for (int64_t s = 0; s < steps; ++s) {
          auto step = model.forward_cached(next, {1}, cache);
          next = step.select(1, 0).argmax(-1).unsqueeze(1).cpu();
        }
      }));
    }
  }
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(steps), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_bytes"] = weight_bytes;
}

void decode(benchmark::State& state, std::string backend) {
  guarded(state, [&] { decode_body(state, backend); });
  phi::set_attention_backend("aten");
  phi::set_elementwise_backend("aten");
  c10::cuda::CUDACachingAllocator::emptyCache();
}

// Decode attention of Phi-3-mini's shape (32 heads of 96, bf16) over `keys` cached keys per
// sequence: batch-1 at a given number of key splits (0: the launcher's choice), or the batch-16
// paged cache read by the paged kernel or gathered first (paged/<kernel|gather>).
void decode_attention_bench(benchmark::State& state, std::string mode, int64_t batch, int64_t keys, int64_t splits) {
  guarded(state, [&] {
    at::NoGradGuard no_grad;
    const int64_t H = 32, D = 96, page = 16;
    auto opts = at::device(at::kCUDA).dtype(at::kBFloat16);
    auto q = at::randn({batch, H, 1, D}, opts);
    auto lengths = at::full({batch}, keys, at::device(at::kCUDA).dtype(at::kLong));
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    std::function<void()> step;
    at::Tensor k, v;
    phi::PagedKV kv;
    if (mode == "dense") {
      k = at::randn({batch, H, keys, D}, opts);
      v = at::randn({batch, H, keys, D}, opts);
      step = [&] { phi::decode_attention_cuda(q, k, v, lengths, scale, splits); };
    } else {
      const int64_t per_seq = (keys + page - 1) / page, pages = batch * per_seq;
      kv = phi::PagedKV{at::randn({pages, page, H, D}, opts), at::randn({pages, page, H, D}, opts),
                        at::randperm(pages, at::device(at::kCUDA).dtype(at::kInt)).view({batch, per_seq}), page};
      if (mode == "paged/kernel") {
        step = [&] { phi::paged_decode_attention_cuda(q, kv, lengths, keys, scale); };
      } else {
        step = [&] {
          auto [kg, vg] = phi::gather_pages(kv, keys);
          phi::decode_attention_cuda(q, kg, vg, lengths, scale);
        };
      }
    }
    const int calls = 100;
    auto run = [&] {
      for (int i = 0; i < calls; ++i) step();
    };
    run();
    for (auto _ : state) state.SetIterationTime(timed(run));
    state.counters["us_per_call"] = benchmark::Counter(static_cast<double>(calls) * 1e-6,
                                                       benchmark::Counter::kIsIterationInvariantRate |
                                                           benchmark::Counter::kInvert);
    state.counters["kv_GBps"] = benchmark::Counter(static_cast<double>(calls) * batch * keys * H * D * 2 * 2 / 1e9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
  });
}

// Phi-3-mini's single-row matrices: [N, K].
const std::vector<std::pair<std::string, std::array<int64_t, 2>>> kGemvShapes = {
    {"qkv", {9216, 3072}}, {"o", {3072, 3072}}, {"gate_up", {16384, 3072}}, {"down", {3072, 8192}}, {"lm_head", {32064, 3072}}};

void gemv(benchmark::State& state, std::string impl, int64_t N, int64_t K) {
  guarded(state, [&] {
    at::NoGradGuard no_grad;
    auto opts = at::device(at::kCUDA).dtype(at::kBFloat16);
    auto w = at::randn({N, K}, opts) * 0.02;
    auto x = at::randn({1, K}, opts);
    const int calls = 100;
    auto run = [&] {
      for (int i = 0; i < calls; ++i) {
        if (impl == "phi") {
          phi::gemv_cuda(x, w, {});
        } else {
          at::linear(x, w);
        }
      }
    };
    run();  // warm-up
    for (auto _ : state) state.SetIterationTime(timed(run));
    state.counters["GBps"] = benchmark::Counter(static_cast<double>(calls) * N * K * 2 / 1e9,
                                                benchmark::Counter::kIsIterationInvariantRate);
  });
}

void decode_batch(benchmark::State& state, std::string cache_kind) {
  guarded(state, [&] {
    at::NoGradGuard no_grad;
    phi::set_attention_backend("fused");
    auto config = phi::preset_model_config("phi-3-mini-4k");
    auto model = random_on_gpu(config, at::kBFloat16);
    const int64_t B = 16, prompt = 512, steps = 64, total = prompt + steps + 1;
    auto ids = at::randint(0, config.vocab_size, {B, prompt}, at::kLong);
    for (auto _ : state) {
      std::unique_ptr<phi::KVStore> cache;
      phi::PagedKVCache* paged = nullptr;
      if (cache_kind != "dense") {
        auto owned = std::make_unique<phi::PagedKVCache>(model.make_paged_cache(B, B * ((total + 15) / 16), 16, total));
        paged = owned.get();
        cache = std::move(owned);
      } else {
        cache = std::make_unique<phi::KVCache>(model.make_cache(B, total, total));
      }
      auto logits = model.forward_cached(ids, std::vector<int64_t>(B, prompt), *cache);
      auto next = logits.select(1, prompt - 1).argmax(-1).unsqueeze(1).cpu();
      if (cache_kind == "paged-graph") {
        // The server's --cuda-graphs step: captured once (outside the timing), replayed per token.
        const int64_t width = (total + 15) / 16;
        std::vector<int64_t> rows(B), ones(B, 1);
        for (int64_t b = 0; b < B; ++b) rows[b] = b;
        phi::PagedDecodeGraph graph(model, *paged, B, width, paged->long_rope(0));
        state.SetIterationTime(timed([&] {
          for (int64_t s = 0; s < steps; ++s) {
            std::vector<int64_t> tokens(next.data_ptr<int64_t>(), next.data_ptr<int64_t>() + B), positions;
            for (auto r : rows) positions.push_back(paged->length(r));
            paged->allocate(rows, ones);
            auto out = graph.step(tokens, positions, paged->page_table(rows, width));
            paged->advance(rows, ones);
            next = out.argmax(-1).unsqueeze(1).cpu();
          }
        }));
      } else {
        state.SetIterationTime(timed([&] {
          for (int64_t s = 0; s < steps; ++s) {
            auto step = model.forward_cached(next, std::vector<int64_t>(B, 1), *cache);
            next = step.select(1, 0).argmax(-1).unsqueeze(1).cpu();
          }
        }));
      }
    }
    state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(B * steps), benchmark::Counter::kIsIterationInvariantRate);
  });
  phi::set_attention_backend("aten");
  c10::cuda::CUDACachingAllocator::emptyCache();
}

// backend: "fused" (our attention and elementwise kernels), "aten" (torch SDPA and ATen ops),
// "sdpa+kernels" (torch SDPA attention, our elementwise kernels).
void train_step_body(benchmark::State& state, const std::string& backend) {
  phi::set_attention_backend(backend == "fused" || backend == "fused-mma" ? "fused" : "aten");
  phi::set_flash_kernel(backend == "fused-mma" ? "mma" : "wmma");
  phi::set_elementwise_backend(backend == "aten" ? "aten" : "fused");
  auto config = phi::preset_model_config("phi-1.5");
  auto model = random_on_gpu(config, at::kFloat);  // float32 master weights
  phi::OptimizerConfig oc;
  oc.name = "adamw";
  oc.lr = 1e-4;
  phi::Optimizer optimizer(model.mutable_parameters(), oc);
  const int64_t B = 4, S = 2048;
  auto step = [&] {
    auto ids = at::randint(0, config.vocab_size, {B, S + 1}, at::kLong);
    at::Tensor loss;
    {
      at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
      at::autocast::set_autocast_enabled(at::kCUDA, true);
      loss = model.loss(ids.narrow(1, 0, S), ids.narrow(1, 1, S));  // the trainer's chunked head loss
      at::autocast::set_autocast_enabled(at::kCUDA, false);
      at::autocast::clear_cache();
    }
    loss.backward();
    optimizer.step(oc.lr);
  };
  step();  // warm-up (allocations, optimizer state)
  for (auto _ : state) state.SetIterationTime(timed(step));
  const double n = static_cast<double>(phi::model_info(config).n_parameters);
  const double per_token = 6.0 * n + 6.0 * config.n_layers * S * config.hidden_size;  // + causal attention
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(B * S), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["model_TFLOPs"] = benchmark::Counter(per_token * B * S / 1e12, benchmark::Counter::kIsIterationInvariantRate);
}

void train_step(benchmark::State& state, std::string backend) {
  guarded(state, [&] { train_step_body(state, backend); });
  c10::cuda::CUDACachingAllocator::emptyCache();
  phi::set_attention_backend("aten");
  phi::set_elementwise_backend("aten");
  phi::set_flash_kernel("wmma");
}

// One eager decode step or one training step inside an NVTX range (bench_gpu --profile WHAT).
void profile_step(const std::string& what) {
  if (what == "decode") {
    at::NoGradGuard no_grad;
    phi::set_attention_backend("fused");
    phi::set_elementwise_backend("fused");
    auto config = phi::preset_model_config("phi-3-mini-4k");
    auto model = random_on_gpu(config, at::kBFloat16);
    auto cache = model.make_cache(1, 600, 600);
    auto logits = model.forward_cached(at::randint(0, config.vocab_size, {1, 512}, at::kLong), {512}, cache);
    auto next = logits.select(1, 511).argmax(-1).unsqueeze(1).cpu();
    for (int i = 0; i < 4; ++i) next = model.forward_cached(next, {1}, cache).select(1, 0).argmax(-1).unsqueeze(1).cpu();
    c10::cuda::device_synchronize();
    nvtxRangePushA("phi_profile");
    next = model.forward_cached(next, {1}, cache).select(1, 0).argmax(-1).unsqueeze(1).cpu();
    c10::cuda::device_synchronize();
    nvtxRangePop();
    phi::set_attention_backend("aten");
    phi::set_elementwise_backend("aten");
    return;
  }
  phi::set_elementwise_backend("fused");
  auto config = phi::preset_model_config("phi-1.5");
  auto model = random_on_gpu(config, at::kFloat);
  phi::OptimizerConfig oc;
  oc.name = "adamw";
  oc.lr = 1e-4;
  phi::Optimizer optimizer(model.mutable_parameters(), oc);
  auto step = [&] {
    auto ids = at::randint(0, config.vocab_size, {4, 2049}, at::kLong);
    at::Tensor loss;
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    loss = model.loss(ids.narrow(1, 0, 2048), ids.narrow(1, 1, 2048));
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    at::autocast::clear_cache();
    loss.backward();
    optimizer.step(oc.lr);
  };
  step();
  step();
  c10::cuda::device_synchronize();
  nvtxRangePushA("phi_profile");
  step();
  c10::cuda::device_synchronize();
  nvtxRangePop();
  phi::set_elementwise_backend("aten");
}

}  // namespace

int main(int argc, char** argv) {
  phi::bench::take_kernel_options(argc, argv);
  const bool profile = argc > 1 && std::string(argv[1]) == "--profile";
  if (!profile) benchmark::Initialize(&argc, argv);
  if (!phi::cuda_kernels_runnable()) {
    std::fprintf(stderr, "bench_gpu: no CUDA GPU (or libphi built without its kernels)\n");
    return 0;
  }
  if (profile) {
    profile_step(argc > 2 ? argv[2] : "decode");
    return 0;
  }
  // PHI_BENCH_SET=unverified registers only the rows of kernels that have not passed on a GPU yet
  // (phi/kernels/verified.h), which gpu_check.sh runs in a process of its own; the default set
  // holds every other row. `kernel`: the verification entry a row depends on (null: none).
  const char* set = std::getenv("PHI_BENCH_SET");
  const bool unverified = set != nullptr && std::string(set) == "unverified";
  auto in_set = [&](const char* kernel) { return (kernel != nullptr && !phi::verified::is(kernel)) == unverified; };
  auto wanted = [&](const std::string& name) { return in_set(name.find("mma") != std::string::npos ? "flash_mma" : nullptr); };
  const std::vector<std::array<int64_t, 4>> shapes = {{4, 32, 2048, 96}, {4, 32, 2048, 64}, {2, 32, 4096, 80}, {8, 32, 1024, 128}};
  for (bool backward : {false, true}) {
    for (const auto& s : shapes) {
      for (const std::string impl : {"phi", "phi-mma", "flash", "cudnn"}) {
        const std::string name = "attention/" + impl + (backward ? "/fwdbwd/" : "/fwd/") + std::to_string(s[0]) + "/" +
                                 std::to_string(s[1]) + "/" + std::to_string(s[2]) + "/" + std::to_string(s[3]);
        if (!wanted(name)) continue;
        benchmark::RegisterBenchmark(name.c_str(), attention, impl, backward, s[0], s[1], s[2], s[3])
            ->UseManualTime()->Iterations(backward ? 10 : 20)->Unit(benchmark::kMillisecond);
      }
    }
  }
  if (in_set(nullptr)) {
    benchmark::RegisterBenchmark("copy", copy_bandwidth)->UseManualTime()->Iterations(20)->Unit(benchmark::kMillisecond);
  }
  for (const std::string backend : {"aten", "fused", "graph"}) {
    if (!in_set(backend == "graph" ? "decode_graph" : nullptr)) continue;
    benchmark::RegisterBenchmark(("decode/" + backend).c_str(), decode, backend)
        ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
  }
  for (const auto& [name, shape] : kGemvShapes) {
    if (!in_set("gemv")) break;
    for (const std::string impl : {"phi", "cublas"}) {
      benchmark::RegisterBenchmark(("gemv/" + impl + "/" + name).c_str(), gemv, impl, shape[0], shape[1])
          ->UseManualTime()->Iterations(5)->Unit(benchmark::kMillisecond);
    }
  }
  if (in_set("decode")) {
    for (int64_t splits : {0, 1, 2, 3, 4, 6, 8, 12, 16}) {
      benchmark::RegisterBenchmark(("decode_attention/b1/768/splits" + std::to_string(splits)).c_str(),
                                   decode_attention_bench, std::string("dense"), int64_t(1), int64_t(768), splits)
          ->UseManualTime()->Iterations(5)->Unit(benchmark::kMillisecond);
    }
  }
  if (in_set("paged_decode_graph")) {
    benchmark::RegisterBenchmark("decode_batch/paged-graph", decode_batch, std::string("paged-graph"))
        ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
  }
  // Both paged rows run in the same process as the paged kernel's status puts them, side by side.
  for (const std::string mode : {"paged/kernel", "paged/gather"}) {
    if (!in_set("paged_decode")) break;
    benchmark::RegisterBenchmark(("decode_attention/b16/2048/" + mode).c_str(), decode_attention_bench, mode,
                                 int64_t(16), int64_t(2048), int64_t(0))
        ->UseManualTime()->Iterations(5)->Unit(benchmark::kMillisecond);
  }
  for (const std::string kind : {"dense", "paged"}) {
    if (!in_set(nullptr)) break;
    benchmark::RegisterBenchmark(("decode_batch/" + kind).c_str(), decode_batch, kind)
        ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
  }
  for (const std::string backend : {"fused", "fused-mma", "sdpa+kernels", "aten"}) {
    if (!wanted(backend)) continue;
    benchmark::RegisterBenchmark(("train/phi-1.5/" + backend).c_str(), train_step, backend)
        ->UseManualTime()->Iterations(5)->Unit(benchmark::kMillisecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
