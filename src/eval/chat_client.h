// A minimal OpenAI chat-completions client over libcurl (the MT-bench judge, the data pipeline's
// teacher): one POST per call,
// retries with exponential backoff on connection errors, 429 and 5xx; other HTTP errors at once.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace phi {

struct ChatClientOptions {
  std::string url;  // ".../v1" or ".../v1/chat/completions"
  std::string model;
  std::string api_key;
  double timeout_seconds = 300;
  int max_retries = 6;
  double backoff_seconds = 1.0;
};

/// One answered request: the first choice's content, the reply's "usage" (null when absent) and
/// how many tries it took.
struct ChatReply {
  std::string content;
  nlohmann::json usage;
  int tries = 0;
};

class ChatClient {
 public:
  explicit ChatClient(ChatClientOptions options);
  /// The first choice's message content; phi::Error (with the endpoint's message) when every try failed.
  /// `messages` keep their key order (role, content), as OpenAI clients send them.
  std::string complete(const nlohmann::ordered_json& messages, double temperature, int64_t max_tokens) const;
  /// The same with more fields in the request body (`extra`, e.g. seed, top_p), and the reply's usage.
  ChatReply complete_with(const nlohmann::ordered_json& messages, double temperature, int64_t max_tokens,
                          const nlohmann::ordered_json& extra) const;

 private:
  ChatClientOptions options_;
  std::string endpoint_;
};

}  // namespace phi
