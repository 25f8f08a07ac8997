#include "phi/serve/request.h"

#include <algorithm>
#include <random>

#include <nlohmann/json.hpp>

#include "phi/core/error.h"

namespace phi {

using Json = nlohmann::json;

namespace {

[[noreturn]] void bad_request(const std::string& message, const std::string& param = "") {
  throw ApiError{400, message, param};
}

Json parse_body(const std::string& text) {
  auto body = Json::parse(text, nullptr, false);
  if (body.is_discarded()) bad_request("the request body is not valid JSON");
  if (!body.is_object()) bad_request("the request body must be a JSON object");
  return body;
}

// Typed optional fields of a request body; wrong types are 400 errors naming the parameter.
double get_number(const Json& body, const char* key, double fallback) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  if (!body[key].is_number()) bad_request(std::string(key) + " must be a number", key);
  return body[key].get<double>();
}
int64_t get_integer(const Json& body, const char* key, int64_t fallback) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  if (!body[key].is_number_integer()) bad_request(std::string(key) + " must be an integer", key);
  return body[key].get<int64_t>();
}
bool get_bool(const Json& body, const char* key, bool fallback) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  if (!body[key].is_boolean()) bad_request(std::string(key) + " must be a boolean", key);
  return body[key].get<bool>();
}

// Sampling parameters shared by both endpoints.
SamplingParams sampling(const Json& body, int64_t default_max_tokens, const RequestLimits& limits,
                        int64_t min_max_tokens = 1) {
  SamplingParams p;
  p.temperature = get_number(body, "temperature", 1.0);
  p.top_p = get_number(body, "top_p", 1.0);
  p.top_k = get_integer(body, "top_k", 0);
  p.min_p = get_number(body, "min_p", 0.0);
  p.repetition_penalty = get_number(body, "repetition_penalty", 1.0);
  p.presence_penalty = get_number(body, "presence_penalty", 0.0);
  p.frequency_penalty = get_number(body, "frequency_penalty", 0.0);
  if (body.contains("seed") && !body["seed"].is_null()) {
    const auto& seed = body["seed"];
    if (!seed.is_number_integer()) bad_request("seed must be an integer", "seed");
    if (seed.is_number_unsigned()) p.seed = seed.get<uint64_t>();
    else if (seed.get<int64_t>() < 0) bad_request("seed must be a non-negative integer", "seed");
    else p.seed = static_cast<uint64_t>(seed.get<int64_t>());
  } else {
    p.seed = static_cast<uint64_t>(std::random_device{}());
  }
  // OpenAI's ranges (answered with 400 as OpenAI does), beyond the sampler's own checks.
  if (!(p.temperature >= 0 && p.temperature <= 2)) bad_request("temperature must be in [0, 2]", "temperature");
  if (!(p.repetition_penalty > 0 && p.repetition_penalty <= 10)) {
    bad_request("repetition_penalty must be in (0, 10]", "repetition_penalty");
  }
  int64_t max_tokens = get_integer(body, "max_tokens", get_integer(body, "max_completion_tokens", default_max_tokens));
  if (max_tokens < min_max_tokens) {
    bad_request("max_tokens must be at least " + std::to_string(min_max_tokens), "max_tokens");
  }
  if (max_tokens > limits.max_tokens_limit) {
    bad_request("max_tokens " + std::to_string(max_tokens) + " exceeds this server's limit of " +
                    std::to_string(limits.max_tokens_limit),
                "max_tokens");
  }
  p.max_new_tokens = max_tokens;
  if (body.contains("stop") && !body["stop"].is_null()) {
    const auto& stop = body["stop"];
    if (stop.is_string()) {
      p.stop_strings.push_back(stop.get<std::string>());
    } else if (stop.is_array() && stop.size() <= 4) {
      for (const auto& s : stop) {
        if (!s.is_string() || s.get<std::string>().empty()) bad_request("stop must hold non-empty strings", "stop");
        p.stop_strings.push_back(s.get<std::string>());
      }
    } else {
      bad_request("stop must be a string or an array of at most 4 strings", "stop");
    }
  }
  if (get_integer(body, "n", 1) != 1) bad_request("only n = 1 is supported", "n");
  if (body.contains("model") && !body["model"].is_string()) bad_request("model must be a string", "model");
  try {
    p.validate();
  } catch (const Error& e) {
    bad_request(e.message());
  }
  return p;
}

// The prompts of a completion request: text, token ids, or an array of either (a batch).
std::vector<std::vector<int64_t>> completion_prompts(const Json& body, const Tokenizer& tokenizer,
                                                     const RequestLimits& limits) {
  if (!body.contains("prompt")) bad_request("prompt is required", "prompt");
  const auto& prompt = body["prompt"];
  auto encode = [&](const std::string& text) {
    try {
      // A text prompt starts with BOS when the tokenizer says so (add_bos_token), as in transformers,
      // llama.cpp and vLLM; one that cannot fit the context is refused before tokenizing.
      return tokenizer.encode(text, tokenizer.prompt_options(limits.context));
    } catch (const Error& e) {
      bad_request(e.message(), "prompt");
    }
  };
  auto ids_of = [&](const Json& array) {
    std::vector<int64_t> ids;
    for (const auto& id : array) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= tokenizer.vocab_size()) {
        bad_request("prompt token " + id.dump() + " is not a token id", "prompt");
      }
      ids.push_back(id.get<int64_t>());
    }
    return ids;
  };
  const char* shapes = "prompt must be a string, token ids, or an array of strings or of token-id arrays";
  if (prompt.is_string()) return {encode(prompt.get<std::string>())};
  if (!prompt.is_array() || prompt.empty()) bad_request(shapes, "prompt");
  if (prompt[0].is_number_integer()) return {ids_of(prompt)};
  std::vector<std::vector<int64_t>> prompts;
  for (const auto& item : prompt) {
    if (item.is_string()) {
      prompts.push_back(encode(item.get<std::string>()));
    } else if (item.is_array() && !item.empty()) {
      prompts.push_back(ids_of(item));
    } else {
      bad_request(shapes, "prompt");
    }
  }
  return prompts;
}

}  // namespace

ParsedRequest parse_completion_request(const std::string& text, const Tokenizer& tokenizer, const RequestLimits& limits) {
  auto body = parse_body(text);
  ParsedRequest request;
  request.echo = get_bool(body, "echo", false);
  // echo scores the prompt (lm-eval's log-likelihood requests: max_tokens 0 or 1, greedy).
  request.params = sampling(body, 16, limits, request.echo ? 0 : 1);
  if (request.echo && request.params.max_new_tokens > 1) {
    bad_request("echo supports max_tokens 0 or 1 (scoring a prompt); generate without echo", "max_tokens");
  }
  if (request.echo && request.params.max_new_tokens == 1 && !request.params.greedy()) {
    bad_request("echo with max_tokens 1 needs temperature 0", "temperature");
  }
  request.completion_logprobs = get_integer(body, "logprobs", -1);
  if (body.contains("logprobs") && !body["logprobs"].is_null() &&
      (request.completion_logprobs < 0 || request.completion_logprobs > 5)) {
    bad_request("logprobs must be in [0, 5]", "logprobs");
  }
  request.params.top_logprobs = std::max<int64_t>(0, request.completion_logprobs);
  request.prompts = completion_prompts(body, tokenizer, limits);
  request.stream = get_bool(body, "stream", false);
  if (request.prompts.size() > 1 && !request.echo) {
    bad_request("several prompts in one request are supported with echo only: send one request per prompt", "prompt");
  }
  if (request.echo && request.stream) bad_request("echo cannot be streamed", "stream");
  for (const auto& p : request.prompts) {
    if (p.empty()) bad_request("the prompt is empty", "prompt");
    if (request.echo && static_cast<int64_t>(p.size()) + request.params.max_new_tokens > limits.context) {
      bad_request("the prompt has " + std::to_string(p.size()) + " tokens; with max_tokens it exceeds the context of " +
                      std::to_string(limits.context) + " tokens",
                  "prompt");
    }
  }
  request.prompt = request.prompts[0];
  return request;
}

ParsedRequest parse_chat_request(const std::string& text, const Tokenizer& tokenizer, const ChatTemplate& chat,
                                 const RequestLimits& limits) {
  auto body = parse_body(text);
  ParsedRequest request;
  if (!body.contains("messages")) bad_request("messages is required", "messages");
  std::vector<ChatMessage> messages;
  try {
    messages = parse_chat_messages(body["messages"], "request");
  } catch (const Error& e) {
    bad_request(e.message(), "messages");
  }
  try {
    EncodeOptions options;
    options.max_tokens = limits.context;
    request.prompt = chat.encode(tokenizer, messages, true, options);
  } catch (const Error& e) {
    bad_request(e.message(), "messages");
  }
  const int64_t room = limits.context - static_cast<int64_t>(request.prompt.size());
  request.params = sampling(body, std::max<int64_t>(1, std::min(room, limits.max_tokens_limit)), limits);
  request.chat_logprobs = get_bool(body, "logprobs", false);
  request.params.top_logprobs = request.chat_logprobs ? get_integer(body, "top_logprobs", 0) : 0;
  if (request.params.top_logprobs < 0 || request.params.top_logprobs > 20) {
    bad_request("top_logprobs must be in [0, 20]", "top_logprobs");
  }
  request.stream = get_bool(body, "stream", false);
  return request;
}

}  // namespace phi
