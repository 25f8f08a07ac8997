// Log-likelihoods of continuations after contexts, computed the way lm-evaluation-harness's
// Hugging Face backend computes them (so that scores agree item by item), but with the shared
// prompt prefix of a group of requests (an MMLU subject's description and few-shot examples)
// computed once into a KV cache instead of once per request.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace phi {

class Tokenizer;
class Transformer;
struct EncodeOptions;

struct EncodedPair {
  std::vector<int64_t> context, continuation;
};

/// lm-eval's encoding of a (context, continuation) pair for causal models: whitespace at the end
/// of the context moves to the front of the continuation; context + continuation is encoded whole
/// and the continuation is every token past the count of the context's own encoding (so that the
/// scored tokens are the ones a model sees when reading the whole text). `options` as prompts are
/// encoded (BOS as the tokenizer's config says, like transformers' add_special_tokens=True).
EncodedPair encode_context_continuation(const Tokenizer& tokenizer, std::string_view context,
                                        std::string_view continuation, const EncodeOptions& options);

struct LoglikelihoodRequest {
  std::vector<int64_t> context;                     // at least one token
  std::vector<std::vector<int64_t>> continuations;  // each at least one token
};

/// encode_context_continuation for several continuations of one context.
LoglikelihoodRequest encode_request(const Tokenizer& tokenizer, std::string_view context,
                                    const std::vector<std::string>& continuations, const EncodeOptions& options);

struct ContinuationScore {
  double logprob = 0.0;  // sum over the continuation's tokens
  bool greedy = false;   // every token is the argmax after what precedes it (lm-eval's is_greedy)
};

struct ScoringStats {
  int64_t prefix_tokens = 0;   // the shared prefix, computed once
  int64_t forward_tokens = 0;  // tokens run behind the prefix
  int64_t rows = 0;            // sequences run
  int64_t batches = 0;
};

/// Scores every continuation of every request (result[r][c]). A request whose continuations are
/// all single tokens takes one row, its context, scored at the last position (MMLU's " A" … " D":
/// one forward per question); any other takes one row per continuation (context + continuation
/// minus its last token). The longest token prefix shared by all rows (up to the first scored
/// position) is prefilled once and copied behind each batch of at most `batch_size` rows, longest
/// rows first. A row longer than the model's max_position_embeddings is an error naming its length.
/// `on_batch` (optional) hears the number of rows each finished batch held.
std::vector<std::vector<ContinuationScore>> score_continuations(
    const Transformer& model, const std::vector<LoglikelihoodRequest>& requests, int64_t batch_size,
    ScoringStats* stats = nullptr, const std::function<void(int64_t rows)>& on_batch = {});

struct PromptTokenScore {
  int64_t id = 0;
  float logprob = 0.f;                         // log-probability after the tokens before it
  std::vector<std::pair<int64_t, float>> top;  // the `top_k` most likely tokens there, best first
};

struct PromptScores {
  std::vector<PromptTokenScore> tokens;  // one per prompt token; tokens[0] has no context (logprob 0, no top)
  PromptTokenScore next;                 // the most likely token after the whole prompt
};

/// Every token's log-probability given the ones before it, with the top_k alternatives at each
/// position, and the greedy next token: what an OpenAI `echo` + `logprobs` completion returns
/// (lm-eval's local-completions model scores with it). The prompt runs in chunks of `chunk` tokens
/// over a KV cache, so that its [T, V] logits are never whole.
PromptScores score_prompt(const Transformer& model, const std::vector<int64_t>& ids, int64_t top_k,
                          int64_t chunk = 512);

}  // namespace phi
