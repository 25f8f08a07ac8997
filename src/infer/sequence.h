// One sequence being generated: its sampler, streamed text, stop strings and end tokens. Shared by
// the batch generator and the server's scheduler so that both finish sequences the same way.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "phi/infer/generator.h"

namespace phi {

class ActiveSequence {
 public:
  ActiveSequence(const Tokenizer& tokenizer, std::vector<int64_t> prompt, int64_t max_new_tokens,
                 const SamplingParams& params, const std::vector<int64_t>& model_end_ids);

  /// Samples the next token from the last position's logits, streams its text and decides whether
  /// the sequence ends. Returns the text delta for this token.
  std::string advance(const at::Tensor& logits);
  /// Ends the sequence with `reason`; returns any held text (also appended to output().text).
  std::string finish(const std::string& reason);

  bool finished() const { return !output_.finish_reason.empty(); }
  /// The reason the last advance() ended the sequence ("" while it goes on).
  const std::string& pending_finish() const { return pending_finish_; }
  int64_t last_token() const { return history_.back(); }
  int64_t max_new_tokens() const { return max_new_; }
  const std::vector<int64_t>& prompt() const { return prompt_; }
  /// The prompt followed by every token sampled so far.
  const std::vector<int64_t>& history() const { return history_; }
  const GenerationOutput& output() const { return output_; }
  GenerationOutput& output() { return output_; }

 private:
  std::vector<int64_t> prompt_;
  std::vector<int64_t> history_;
  int64_t max_new_;
  Sampler sampler_;
  StreamDecoder stream_;
  StopStringFilter stops_;
  std::vector<int64_t> end_ids_;
  GenerationOutput output_;
  std::string pending_finish_;
};

}  // namespace phi
