// Batched generation over the KV cache: prompts of different lengths, sequences that finish at
// different times (end tokens, stop strings, length), streamed text that is always whole UTF-8.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "phi/infer/sampling.h"
#include "phi/models/transformer.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi {

struct GenerationRequest {
  std::vector<int64_t> prompt;
  SamplingParams params;
};

struct GenerationOutput {
  std::vector<int64_t> tokens;         // generated ids (end token included when it ended the sequence)
  std::vector<SampledToken> details;   // per generated token: log-probabilities
  std::string text;                    // decoded text (special tokens and stop string excluded)
  std::string finish_reason;           // "stop" (end token or stop string), "length", "cancelled"
  int64_t prompt_tokens = 0;
};

/// Called for each generated token: the sequence's index in the request list, the token and the
/// text it completes (maybe empty). A call with token.id == -1 carries only text that was held back
/// (an incomplete character or a possible stop string) and is released at the end. Returning false
/// cancels that sequence.
using TokenCallback = std::function<bool(size_t index, const SampledToken& token, const std::string& text_delta)>;

struct GeneratorOptions {
  int64_t max_batch_size = 16;          // sequences decoded together
  std::vector<int64_t> end_token_ids;   // the model's end tokens (generation_config.json)
  bool truncate_prompt_left = false;    // a prompt longer than the context: error, or keep its end
  bool cuda_graph = true;               // a single sequence on a CUDA model: replay a captured step
};

class Generator {
 public:
  Generator(const Transformer& model, const Tokenizer& tokenizer, GeneratorOptions options = {});

  /// Generates for every request; outputs are in request order.
  std::vector<GenerationOutput> generate(const std::vector<GenerationRequest>& requests,
                                         const TokenCallback& on_token = {}) const;

  /// Validates a prompt against the context (and truncates it when configured); returns the prompt
  /// to use and the number of new tokens that fit.
  std::pair<std::vector<int64_t>, int64_t> fit_to_context(const std::vector<int64_t>& prompt,
                                                          int64_t max_new_tokens) const;
  const GeneratorOptions& options() const { return options_; }

 private:
  void generate_chunk(const std::vector<GenerationRequest>& requests, size_t first, size_t count,
                      std::vector<GenerationOutput>& outputs, const TokenCallback& on_token) const;
  const Transformer& model_;
  const Tokenizer& tokenizer_;
  GeneratorOptions options_;
};

/// The model's end tokens: generation_config.json's eos_token_id (int or list) when present, else
/// config.json's eos_token_id, plus the tokenizer's EOS and <|end|> when it has them.
std::vector<int64_t> default_end_token_ids(const std::string& model_directory, const Tokenizer& tokenizer);

/// Tracks text for stop strings: returns what can be emitted now, holding back any tail that could
/// still become a stop string; `stopped` turns true (and the text is cut) when one appears.
class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stop_strings);
  std::string push(const std::string& delta);
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace phi
