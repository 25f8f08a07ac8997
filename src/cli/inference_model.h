// What `phi generate`, `phi chat` and `phi serve` share: the model-directory options and the
// loaded model, tokenizer, chat template and end tokens.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "phi/infer/chat_template.h"
#include "phi/kernels/kernel_choice.h"
#include "phi/models/transformer.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi::cli {

struct InferenceModelOptions {
  std::string model;
  std::string device = "cpu";
  std::string dtype = "f32";
  std::string chat_template;
  bool special_tokens_in_content = false;
  KernelChoice kernels;  // --attention, --kernels, --flash-kernel (empty: the environment aliases)
  /// Adds --model, --device, --dtype, --chat-template, --special-tokens-in-content and the kernel
  /// options (add_kernel_options).
  void add_options(CLI::App* cmd);
};

/// --attention aten|fused, --kernels aten|fused, --flash-kernel wmma|mma; PHI_ATTENTION, PHI_KERNELS
/// and PHI_FLASH_KERNEL are their environment aliases (an option wins).
void add_kernel_options(CLI::App* cmd, KernelChoice& choice);

/// The model of `directory` in `dtype` on `device`, with the kernel choice applied first (what
/// every command that runs a model loads; InferenceModel adds the tokenizer and chat template).
Transformer load_inference_weights(const std::string& directory, const std::string& device, const std::string& dtype,
                                   const KernelChoice& kernels);

struct InferenceModel {
  Transformer model;
  std::unique_ptr<Tokenizer> tokenizer;
  ChatTemplate chat;
  std::vector<int64_t> end_token_ids;
  static InferenceModel load(const InferenceModelOptions& options);
};

}  // namespace phi::cli
