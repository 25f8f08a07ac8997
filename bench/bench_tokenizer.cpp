// Tokenizer encode throughput (MB/s) on one text for each tokenizer kind. Run through
// scripts/bench_tokenizer.sh, which measures tiktoken and sentencepiece on the same text in the
// same run and prints the ratios. SentencePiece also runs line by line (as a data pipeline encodes
// documents) and cold (a fresh tokenizer each time: no word cached yet).
//   bench_tokenizer --text FILE --gpt2 DIR --spm DIR --tiktoken DIR [benchmark flags]
#include <benchmark/benchmark.h>
#include <cstdint>

#include <fstream>
#include <sstream>

#include "phi/tokenizer/tokenizer.h"

namespace {

std::string g_text;
std::vector<std::string> g_lines;

enum class Mode { kWhole, kLines, kCold };

void encode(benchmark::State& state, const std::string& dir, Mode mode) {
  auto tokenizer = phi::load_tokenizer(dir);
  phi::EncodeOptions options;
  options.allow_special = false;
  size_t n = 0;
  for (auto _ : state) {
    if (mode == Mode::kCold) {
      state.PauseTiming();
      tokenizer = phi::load_tokenizer(dir);
      state.ResumeTiming();
    }
    if (mode == Mode::kLines) {
      n = 0;
      for (const auto& line : g_lines) {
        auto ids = tokenizer->encode(line, options);
        n += ids.size();
        benchmark::DoNotOptimize(ids.data());
      }
    } else {
      auto ids = tokenizer->encode(g_text, options);
      n = ids.size();
      benchmark::DoNotOptimize(ids.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * g_text.size()));
  state.counters["tokens"] = static_cast<double>(n);
}

}  // namespace

int main(int argc, char** argv) {
  std::string text_path, gpt2, spm, tiktoken;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string& out) { out = i + 1 < argc ? argv[++i] : ""; };
    if (a == "--text")
      value(text_path);
    else if (a == "--gpt2")
      value(gpt2);
    else if (a == "--spm")
      value(spm);
    else if (a == "--tiktoken")
      value(tiktoken);
    else
      rest.push_back(argv[i]);
  }
  std::ifstream in(text_path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "bench_tokenizer: cannot read --text %s\n", text_path.c_str());
    return 1;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  g_text = buffer.str();
  std::istringstream lines(g_text);
  for (std::string line; std::getline(lines, line);) g_lines.push_back(line);
  const auto ms = benchmark::kMillisecond;
  if (!gpt2.empty()) benchmark::RegisterBenchmark("encode/gpt2_bpe", encode, gpt2, Mode::kWhole)->Unit(ms);
  if (!tiktoken.empty()) benchmark::RegisterBenchmark("encode/cl100k", encode, tiktoken, Mode::kWhole)->Unit(ms);
  if (!spm.empty()) {
    benchmark::RegisterBenchmark("encode/sentencepiece", encode, spm, Mode::kWhole)->Unit(ms);
    benchmark::RegisterBenchmark("encode/sentencepiece_lines", encode, spm, Mode::kLines)->Unit(ms);
    benchmark::RegisterBenchmark("encode/sentencepiece_cold", encode, spm, Mode::kCold)->Unit(ms);
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
