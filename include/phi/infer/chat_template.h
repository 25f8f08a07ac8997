// Chat templates: the model's own Jinja template from tokenizer_config.json when present, else the
// built-in phi formats (docs/phi_family.md §8).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "phi/config/model_config.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi {

namespace jinja {
class Template;
}

struct ChatMessage {
  std::string role;  // system, user, assistant
  std::string content;
};

/// Parses [{"role": ..., "content": ...}, ...]; errors name the JSON path and `where`.
std::vector<ChatMessage> parse_chat_messages(const nlohmann::json& messages, const std::string& where);

class ChatTemplate {
 public:
  /// Built-in formats: "phi3" (Phi-3-mini June 2024: system, user, assistant), "phi3-april" (system
  /// dropped), "phi3-medium", "phi3-small", "phi4-mini" (no newlines; tools on the system turn),
  /// "phi2" (Instruct:/Output:).
  static std::vector<std::string> builtin_names();
  static ChatTemplate builtin(const std::string& name, const Tokenizer& tokenizer);
  /// From Jinja source (a file's content or tokenizer_config.json's chat_template).
  static ChatTemplate from_source(const std::string& name, const std::string& source, const Tokenizer& tokenizer);
  /// The model directory's tokenizer_config.json chat_template when present; else the built-in
  /// format of the family. `override_name` (a built-in name or a .jinja file) wins when given.
  static ChatTemplate for_model(const std::string& model_directory, const ModelConfig& config,
                                const Tokenizer& tokenizer, const std::string& override_name = "");

  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

  /// The prompt text for `messages`, ending with the assistant's turn header when
  /// add_generation_prompt.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  /// The prompt's token ids. Special tokens come only from the template itself: special-token text
  /// inside message content (`<|end|>`, `<|assistant|>`, `<|endoftext|>`, ...) is encoded as plain
  /// text, so that a user cannot close their turn and forge another one. With
  /// set_special_tokens_in_content(true) the rendered text is encoded as a whole, special-token
  /// text in content included (transformers' apply_chat_template behaviour). `tokenizer` must be
  /// the one the template was built with. `options.allow_special` and the barriers are set here.
  std::vector<int64_t> encode(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                              bool add_generation_prompt, EncodeOptions options = {}) const;
  /// Opt-in: special-token text in message content becomes control tokens (default false).
  void set_special_tokens_in_content(bool allow) { special_tokens_in_content_ = allow; }
  bool special_tokens_in_content() const { return special_tokens_in_content_; }

  const std::string& name() const { return name_; }

 private:
  ChatTemplate(std::string name, const std::string& source, const Tokenizer& tokenizer);
  std::string name_;
  std::unique_ptr<jinja::Template> template_;
  std::string bos_token_;
  std::string eos_token_;
  std::vector<std::string> special_texts_;  // the tokenizer's special-token strings
  bool special_tokens_in_content_ = false;
};

}  // namespace phi
