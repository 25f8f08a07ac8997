// Token sampling: greedy, temperature, top-k, top-p, min-p, repetition / presence / frequency
// penalties, seeded per sequence; log-probabilities of the chosen token and the top-n alternatives.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

namespace phi {

struct SamplingParams {
  double temperature = 1.0;         // 0: greedy
  int64_t top_k = 0;                // 0: off
  double top_p = 1.0;               // 1: off
  double min_p = 0.0;               // 0: off (relative to the most likely token's probability)
  double repetition_penalty = 1.0;  // HF style over prompt + generated tokens (1: off)
  double presence_penalty = 0.0;    // OpenAI style over generated tokens
  double frequency_penalty = 0.0;
  uint64_t seed = 0;
  int64_t max_new_tokens = 128;
  std::vector<int64_t> stop_token_ids;    // besides the model's end tokens
  std::vector<std::string> stop_strings;  // text that ends generation (excluded from the output)
  bool ignore_eos = false;
  int64_t top_logprobs = 0;  // alternatives to report per token (0: none)

  bool greedy() const { return temperature <= 0.0; }
  /// Throws phi::Error naming the field when a value is out of range.
  void validate() const;
};

/// Reads sampling fields from JSON (unknown keys are errors naming the path).
SamplingParams sampling_params_from_json(const nlohmann::json& j, const std::string& source);

struct SampledToken {
  int64_t id = 0;
  float logprob = 0.f;                             // log-probability under the model (before sampling filters)
  std::vector<std::pair<int64_t, float>> top;      // top_logprobs alternatives, best first
};

/// One sequence's sampler: owns its RNG, so a seed reproduces the sequence regardless of batching.
class Sampler {
 public:
  explicit Sampler(SamplingParams params);
  const SamplingParams& params() const { return params_; }
  /// logits: float32 [V] (CPU or GPU); history: prompt + generated ids; generated: count of the
  /// trailing generated ids in history (penalties).
  SampledToken sample(const at::Tensor& logits, const std::vector<int64_t>& history, size_t generated);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

}  // namespace phi
