// Parsing of the OpenAI-compatible request bodies (`/v1/completions`, `/v1/chat/completions`)
// into a prompt and sampling parameters, apart from HTTP so that it can be tested and fuzzed on
// its own. Every client mistake is an ApiError (status 400, the message, the offending parameter).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "phi/infer/chat_template.h"
#include "phi/infer/sampling.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi {

/// A client error answered with `status` and an OpenAI error body naming `param`.
struct ApiError {
  int status = 400;
  std::string message;
  std::string param;
};

struct RequestLimits {
  int64_t context = 4096;           // tokens a request may hold (prompt + completion)
  int64_t max_tokens_limit = 4096;  // max_tokens above this are refused
};

struct ParsedRequest {
  std::vector<int64_t> prompt;                 // the (first) prompt
  std::vector<std::vector<int64_t>> prompts;   // /v1/completions: every prompt (several only with echo)
  bool echo = false;                           // /v1/completions: score the prompt, return it with its logprobs
  SamplingParams params;
  bool stream = false;
  int64_t completion_logprobs = -1;  // /v1/completions: `logprobs` (0-5), -1 when not asked
  bool chat_logprobs = false;        // /v1/chat/completions: `logprobs: true`
};

/// `/v1/completions`: prompt as text (BOS as the tokenizer's add_bos_token says), token ids, or an
/// array of texts or token-id arrays (several only with `echo`); sampling parameters in OpenAI's
/// ranges. `echo: true` (what lm-eval's local-completions sends for log-likelihoods) takes
/// max_tokens 0 or 1 (greedy).
ParsedRequest parse_completion_request(const std::string& body, const Tokenizer& tokenizer, const RequestLimits& limits);
/// `/v1/chat/completions`: messages through the chat template (content never becomes control
/// tokens, ChatTemplate::encode), default max_tokens the room left in the context.
ParsedRequest parse_chat_request(const std::string& body, const Tokenizer& tokenizer, const ChatTemplate& chat,
                                 const RequestLimits& limits);

}  // namespace phi
