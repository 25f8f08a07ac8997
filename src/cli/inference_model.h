// What `phi generate`, `phi chat` and `phi serve` share: the model-directory options and the
// loaded model, tokenizer, chat template and end tokens.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "phi/infer/chat_template.h"
#include "phi/models/transformer.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi::cli {

struct InferenceModelOptions {
  std::string model;
  std::string device = "cpu";
  std::string dtype = "f32";
  std::string chat_template;
  bool special_tokens_in_content = false;
  /// Adds --model, --device, --dtype, --chat-template, --special-tokens-in-content.
  void add_options(CLI::App* cmd);
};

struct InferenceModel {
  Transformer model;
  std::unique_ptr<Tokenizer> tokenizer;
  ChatTemplate chat;
  std::vector<int64_t> end_token_ids;
  static InferenceModel load(const InferenceModelOptions& options);
};

}  // namespace phi::cli
