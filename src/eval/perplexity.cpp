#include "phi/eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include "phi/core/error.h"
#include "phi/core/progress.h"
#include "phi/core/text_io.h"
#include "phi/data/shards.h"
#include "phi/eval/report.h"
#include "phi/models/transformer.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi {

std::vector<int64_t> perplexity_tokens(const std::string& input, const Tokenizer* tokenizer, int64_t max_tokens) {
  std::vector<int64_t> ids;
  if (std::filesystem::is_directory(input)) {
    const auto manifest = read_manifest(input);
    for (const auto& info : manifest.shards) {
      auto shard = Shard::open((std::filesystem::path(input) / info.file).string());
      int64_t n = shard->n_tokens();
      if (max_tokens > 0) n = std::min(n, max_tokens - static_cast<int64_t>(ids.size()));
      const size_t at = ids.size();
      ids.resize(at + static_cast<size_t>(n));
      shard->read(0, n, ids.data() + at);
      if (max_tokens > 0 && static_cast<int64_t>(ids.size()) >= max_tokens) break;
    }
  } else {
    PHI_CHECK(tokenizer != nullptr, "a text input needs a tokenizer");
    ids = tokenizer->encode(read_text_file(input, "perplexity input"), tokenizer->prompt_options());
    if (max_tokens > 0 && static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(static_cast<size_t>(max_tokens));
  }
  if (ids.size() < 2) throw Error("the input has fewer than 2 tokens: nothing to predict", input);
  return ids;
}

PerplexityResult sliding_window_perplexity(const Transformer& model, const std::vector<int64_t>& ids,
                                           const PerplexityOptions& options) {
  at::NoGradGuard no_grad;
  const int64_t max_length = options.seq_len > 0 ? options.seq_len : model.config().max_position_embeddings;
  const int64_t stride = options.stride > 0 ? options.stride : std::max<int64_t>(1, max_length / 2);
  PHI_CHECK(max_length >= 2, "--seq-len must be >= 2, got ", max_length);
  PHI_CHECK(max_length <= model.config().max_position_embeddings, "--seq-len ", max_length,
            " is longer than the model's context of ", model.config().max_position_embeddings);
  PHI_CHECK(stride <= max_length, "--stride ", stride, " is longer than --seq-len ", max_length);
  const auto n = static_cast<int64_t>(ids.size());
  struct Window {
    int64_t begin, end, prev_end;
  };
  std::vector<Window> windows;
  for (int64_t begin = 0, prev_end = 0; begin < n; begin += stride) {
    const int64_t end = std::min(begin + max_length, n);
    windows.push_back({begin, end, prev_end});
    prev_end = end;
    if (end == n) break;
  }
  EvalCache cache(options.cache_dir, {{"task", "perplexity"},
                                      {"input", options.fingerprint},
                                      {"seq_len", max_length},
                                      {"stride", stride},
                                      {"tokens", n}});
  const size_t chunk = 32;
  PerplexityResult r;
  r.tokens = n;
  r.windows = static_cast<int64_t>(windows.size());
  double weighted = 0, weights = 0, exact_sum = 0;
  int64_t exact_count = 0;
  Progress progress("perplexity", n, "tokens");
  const auto start = std::chrono::steady_clock::now();
  auto long_options = at::TensorOptions().dtype(at::kLong);
  for (size_t first = 0; first < windows.size(); first += chunk) {
    const auto group = "windows-" + std::to_string(first / chunk);
    std::vector<nlohmann::json> rows;
    if (auto cached = cache.load(group)) {
      rows = *cached;
      for (const auto& row : rows) progress.skip(row["scored"].get<int64_t>());
    } else {
      for (size_t w = first; w < std::min(windows.size(), first + chunk); ++w) {
        const auto& win = windows[w];
        const int64_t W = win.end - win.begin, trg_len = win.end - win.prev_end;
        auto input = at::tensor(std::vector<int64_t>(ids.begin() + win.begin, ids.begin() + win.end), long_options);
        // The guide's labels are the window's last trg_len tokens; position t predicts label t + 1.
        auto targets = at::full({W}, -100, long_options);
        const int64_t first_label = std::max<int64_t>(W - trg_len, 1);
        targets.narrow(0, first_label - 1, W - first_label).copy_(input.narrow(0, first_label, W - first_label));
        const int64_t scored = W - first_label;
        const double mean = model.loss(input.unsqueeze(0), targets.unsqueeze(0)).item<double>();
        rows.push_back({{"mean", mean}, {"scored", scored}, {"labels", trg_len}});
        progress.advance(scored);
      }
      cache.store(group, rows);
    }
    for (size_t k = 0; k < rows.size(); ++k) {
      const auto& row = rows[k];
      const double mean = row["mean"].get<double>();
      const auto& win = windows[first + k];
      r.per_window.push_back({win.begin, win.end, row["scored"].get<int64_t>(), mean});
      const auto scored = row["scored"].get<int64_t>();
      const double weight = static_cast<double>(row["labels"].get<int64_t>() - 1);  // the guide's count
      weighted += mean * weight;
      weights += weight;
      exact_sum += mean * static_cast<double>(scored);
      exact_count += scored;
    }
  }
  progress.finish();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.scored_tokens = exact_count;
  r.nll = weights > 0 ? weighted / weights : 0.0;
  r.perplexity = std::exp(r.nll);
  r.nll_exact = exact_count > 0 ? exact_sum / static_cast<double>(exact_count) : 0.0;
  r.perplexity_exact = std::exp(r.nll_exact);
  return r;
}

}  // namespace phi
