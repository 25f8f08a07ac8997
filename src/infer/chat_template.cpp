#include "phi/infer/chat_template.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/infer/jinja.h"
#include "phi/models/family.h"
#include "tokenizer/utf8.h"

namespace phi {

namespace {

// The templates as the models' tokenizer_config.json files carry them (docs/phi_family.md §8).
const std::pair<const char*, const char*> kBuiltins[] = {
    {"phi3",
     "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
     "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif "
     "message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor "
     "%}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"},
    {"phi3-april",
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n' + "
     "message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif (message['role'] == 'assistant') "
     "%}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}"},
    {"phi3-medium",
     "{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n' + message['content'] + "
     "'<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + "
     "'<|end|>' + '\n'}}{% endif %}{% endfor %}"},
    {"phi3-small",
     "{{ bos_token }}{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + "
     "'<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif "
     "%}"},
    {"phi4-mini",
     "{% for message in messages %}{% if message['role'] == 'system' and 'tools' in message and message['tools'] is "
     "not none %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|tool|>' + message['tools'] + '<|/tool|>' + "
     "'<|end|>' }}{% else %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endif %}{% endfor "
     "%}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"},
    {"phi2",
     "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\n' }}{% elif "
     "message['role'] == 'user' %}{{ 'Instruct: ' + message['content'] + '\n' }}{% elif message['role'] == "
     "'assistant' %}{{ 'Output: ' + message['content'] + '\n' }}{% endif %}{% endfor %}{% if add_generation_prompt "
     "%}{{ 'Output:' }}{% endif %}"},
};

std::string token_text(const Tokenizer& tokenizer, std::optional<int64_t> id) {
  return id ? tokenizer.id_to_token(*id) : "";
}

}  // namespace

std::vector<ChatMessage> parse_chat_messages(const nlohmann::json& messages, const std::string& where) {
  if (!messages.is_array() || messages.empty()) {
    throw Error("$.messages must be a non-empty array of {\"role\", \"content\"}", where);
  }
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    const std::string path = "$.messages[" + std::to_string(i) + "]";
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      throw Error(path + ".role must be a string", where);
    }
    ChatMessage message;
    message.role = m["role"].get<std::string>();
    if (message.role != "system" && message.role != "user" && message.role != "assistant") {
      throw Error(path + ".role \"" + message.role + "\" is not system, user or assistant", where);
    }
    if (m.contains("content") && m["content"].is_string()) {
      message.content = m["content"].get<std::string>();
    } else if (m.contains("content") && m["content"].is_array()) {  // OpenAI content parts: text only
      for (const auto& part : m["content"]) {
        if (part.is_object() && part.value("type", "") == "text" && part.contains("text") && part["text"].is_string()) {
          message.content += part["text"].get<std::string>();
        } else {
          throw Error(path + ".content has a part that is not {\"type\": \"text\", \"text\": ...}", where);
        }
      }
    } else {
      throw Error(path + ".content must be a string", where);
    }
    out.push_back(std::move(message));
  }
  return out;
}

ChatTemplate::ChatTemplate(std::string name, const std::string& source, const Tokenizer& tokenizer)
    : name_(std::move(name)),
      template_(std::make_unique<jinja::Template>(source, name_)),
      bos_token_(token_text(tokenizer, tokenizer.bos_id())),
      eos_token_(token_text(tokenizer, tokenizer.eos_id())) {
  // Protected: special tokens, and added tokens spelled like control tokens (<|...|>) even when a
  // tokenizer_config.json marks them non-special, since templates use them as turn delimiters.
  for (const auto& t : tokenizer.added_tokens()) {
    if (t.special || spelled_like_control_token(t.content)) special_texts_.push_back(t.content);
  }
}

ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

std::vector<std::string> ChatTemplate::builtin_names() {
  std::vector<std::string> names;
  for (const auto& [name, source] : kBuiltins) names.push_back(name);
  return names;
}

ChatTemplate ChatTemplate::builtin(const std::string& name, const Tokenizer& tokenizer) {
  for (const auto& [builtin_name, source] : kBuiltins) {
    if (name == builtin_name) return ChatTemplate(name, source, tokenizer);
  }
  std::string names;
  for (const auto& n : builtin_names()) names += (names.empty() ? "" : ", ") + n;
  throw Error("unknown chat template \"" + name + "\"", "", "built-in templates: " + names + "; or a .jinja file");
}

ChatTemplate ChatTemplate::from_source(const std::string& name, const std::string& source, const Tokenizer& tokenizer) {
  return ChatTemplate(name, source, tokenizer);
}

ChatTemplate ChatTemplate::for_model(const std::string& model_directory, const ModelConfig& config,
                                     const Tokenizer& tokenizer, const std::string& override_name) {
  namespace fs = std::filesystem;
  if (!override_name.empty()) {
    if (fs::exists(override_name)) {
      std::ifstream in(override_name);
      std::stringstream buffer;
      buffer << in.rdbuf();
      return from_source(override_name, buffer.str(), tokenizer);
    }
    return builtin(override_name, tokenizer);
  }
  const auto config_path = fs::path(model_directory) / "tokenizer_config.json";
  if (!model_directory.empty() && fs::exists(config_path)) {
    auto j = read_json_file(config_path.string());
    if (j.is_object() && j.contains("chat_template")) {
      const auto& t = j["chat_template"];
      if (t.is_string()) return from_source(config_path.string(), t.get<std::string>(), tokenizer);
      if (t.is_array()) {
        for (const auto& entry : t) {
          if (entry.is_object() && entry.contains("name") && entry["name"] == "default" && entry.contains("template") &&
              entry["template"].is_string()) {
            return from_source(config_path.string(), entry["template"].get<std::string>(), tokenizer);
          }
        }
      }
    }
  }
  return builtin(family_spec(config.family).chat_template, tokenizer);
}

namespace {

// Message content is valid UTF-8 (checked where it is parsed or encoded), so the byte 0xFF never
// occurs in it and can mark, through the template's string operations, the places inside content
// where a special-token match would start, continue or end. The marks are removed after rendering
// and their offsets become the tokenizer's special barriers.
constexpr char kBarrier = '\xFF';

// Offsets in `content` that must hold a barrier so that no special-token text can be matched across
// any of them: one inside every whole occurrence, and one at either end where the content begins
// with a special's tail or ends with its head (the template's own text could complete it).
std::vector<size_t> barrier_offsets(const std::string& content, const std::vector<std::string>& specials) {
  std::vector<size_t> at;
  const size_t n = content.size();
  for (const auto& s : specials) {
    const size_t len = s.size();
    if (len < 2) continue;
    for (size_t p = content.find(s); p != std::string::npos; p = content.find(s, p + 1)) at.push_back(p + 1);
    for (size_t k = 1; k < len && k <= n; ++k) {
      if (content.compare(0, k, s, len - k, k) == 0) at.push_back(0);          // content starts with s's tail
      if (content.compare(n - k, k, s, 0, k) == 0) at.push_back(n);            // content ends with s's head
    }
  }
  std::sort(at.begin(), at.end());
  at.erase(std::unique(at.begin(), at.end()), at.end());
  return at;
}

std::string with_barriers(const std::string& content, const std::vector<std::string>& specials) {
  auto at = barrier_offsets(content, specials);
  if (at.empty()) return content;
  std::string out;
  out.reserve(content.size() + at.size());
  size_t next = 0;
  for (size_t i = 0; i <= content.size(); ++i) {
    while (next < at.size() && at[next] == i) {
      out += kBarrier;
      ++next;
    }
    if (i < content.size()) out += content[i];
  }
  return out;
}

}  // namespace

std::vector<int64_t> ChatTemplate::encode(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt, EncodeOptions options) const {
  options.allow_special = true;
  options.special_barriers = nullptr;
  if (special_tokens_in_content_) return tokenizer.encode(render(messages, add_generation_prompt), options);
  std::vector<ChatMessage> marked = messages;
  for (size_t i = 0; i < marked.size(); ++i) {
    const std::string what = "messages[" + std::to_string(i) + "].content";
    utf8::require_valid(marked[i].content, what.c_str());
    marked[i].content = with_barriers(marked[i].content, special_texts_);
  }
  const std::string rendered = render(marked, add_generation_prompt);
  std::string text;
  std::vector<size_t> barriers;
  text.reserve(rendered.size());
  for (char c : rendered) {
    if (c == kBarrier) barriers.push_back(text.size());
    else text += c;
  }
  options.special_barriers = &barriers;
  return tokenizer.encode(text, options);
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  nlohmann::json context = {{"messages", list},
                            {"add_generation_prompt", add_generation_prompt},
                            {"bos_token", bos_token_},
                            {"eos_token", eos_token_}};
  return template_->render(context);
}

}  // namespace phi
