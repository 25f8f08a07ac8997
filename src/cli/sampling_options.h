// Sampling flags shared by `phi generate`, `phi chat` and `phi serve`.
#pragma once

#include <CLI/CLI.hpp>

#include "phi/infer/sampling.h"

namespace phi::cli {

inline void add_sampling_options(CLI::App* cmd, SamplingParams& p) {
  cmd->add_option("--max-new-tokens", p.max_new_tokens, "tokens to generate at most")->capture_default_str();
  cmd->add_option("--temperature", p.temperature, "0 for greedy decoding")->capture_default_str();
  cmd->add_option("--top-k", p.top_k, "keep the k most likely tokens (0: off)")->capture_default_str();
  cmd->add_option("--top-p", p.top_p, "nucleus sampling mass (1: off)")->capture_default_str();
  cmd->add_option("--min-p", p.min_p, "drop tokens below min_p x the top probability (0: off)")->capture_default_str();
  cmd->add_option("--repetition-penalty", p.repetition_penalty, "HF-style repetition penalty (1: off)")
      ->capture_default_str();
  cmd->add_option("--presence-penalty", p.presence_penalty, "OpenAI-style presence penalty")->capture_default_str();
  cmd->add_option("--frequency-penalty", p.frequency_penalty, "OpenAI-style frequency penalty")->capture_default_str();
  cmd->add_option("--seed", p.seed, "sampling seed (runs with the same seed are identical)")->capture_default_str();
  cmd->add_option("--stop", p.stop_strings, "stop string (repeatable)");
  cmd->add_flag("--ignore-eos", p.ignore_eos, "do not stop at the model's end tokens");
  cmd->add_option("--logprobs", p.top_logprobs, "report the top-N alternatives' log-probabilities")->capture_default_str();
}

}  // namespace phi::cli
