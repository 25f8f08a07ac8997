// Perplexity of a model on a token stream with the sliding window of transformers' "Perplexity of
// fixed-length models" guide: windows of seq_len tokens starting every `stride` tokens, each scoring
// only the tokens the previous window did not reach (the rest is context). Reported two ways:
//   - `perplexity`: exactly the guide's number, which weights each window's mean loss by its count
//     of unmasked labels minus one (slightly off for every window after the first, whose first
//     scored token also counts);
//   - `perplexity_exact`: every predicted token counted once, each weighted equally (a window's first
//     token has no context and is not predicted: with stride == seq_len one token per window).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace phi {

class Transformer;

struct PerplexityOptions {
  int64_t seq_len = 0;  // 0: the model's max_position_embeddings
  int64_t stride = 0;   // 0: seq_len / 2
  /// Finished windows are kept here (eval/report.h's EvalCache) so that a killed run resumes.
  std::string cache_dir;
  std::string fingerprint;  // the model and input, stored with the settings
};

struct PerplexityWindow {
  int64_t begin = 0, end = 0;  // token range [begin, end) of the stream
  int64_t scored = 0;          // tokens predicted in this window (the ones the previous did not reach)
  double nll = 0;              // their mean negative log-likelihood
};

struct PerplexityResult {
  double perplexity = 0, nll = 0;              // the guide's weighting
  double perplexity_exact = 0, nll_exact = 0;  // per predicted token
  int64_t tokens = 0;                          // in the stream
  int64_t scored_tokens = 0;                   // predicted (tokens - 1 when the windows overlap)
  int64_t windows = 0;
  double seconds = 0;                          // this run's scoring
  std::vector<PerplexityWindow> per_window;    // the samples JSONL
};

PerplexityResult sliding_window_perplexity(const Transformer& model, const std::vector<int64_t>& ids,
                                           const PerplexityOptions& options);

/// The token stream of a text file (encoded as a prompt: BOS when the tokenizer's config says so)
/// or of a token-shard dataset directory (docs/data.md; shards in manifest order). `max_tokens` > 0
/// keeps the first ones.
class Tokenizer;
std::vector<int64_t> perplexity_tokens(const std::string& input, const Tokenizer* tokenizer, int64_t max_tokens = 0);

}  // namespace phi
