#include "phi/serve/server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <random>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "phi/core/error.h"

namespace phi {

using Json = nlohmann::json;

namespace {

// An OpenAI-style client error: 4xx status, message, offending parameter.
struct ApiError {
  int status;
  std::string message;
  std::string param;
};

[[noreturn]] void bad_request(const std::string& message, const std::string& param = "") {
  throw ApiError{400, message, param};
}

Json error_body(const std::string& message, const std::string& type, const std::string& param) {
  return {{"error",
           {{"message", message}, {"type", type}, {"param", param.empty() ? Json(nullptr) : Json(param)}, {"code", nullptr}}}};
}

std::string random_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s-%016llx%04llx", prefix, static_cast<unsigned long long>(salt),
                static_cast<unsigned long long>(++counter));
  return buf;
}

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
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

}  // namespace

struct Server::Impl {
  Scheduler& scheduler;
  const Tokenizer& tokenizer;
  const ChatTemplate& chat;
  ServerOptions options;
  httplib::Server http;

  Impl(Scheduler& s, const Tokenizer& t, const ChatTemplate& c, ServerOptions o)
      : scheduler(s), tokenizer(t), chat(c), options(std::move(o)) {}

  // Sampling parameters shared by both endpoints.
  SamplingParams sampling(const Json& body, int64_t default_max_tokens) const {
    SamplingParams p;
    p.temperature = get_number(body, "temperature", 1.0);
    p.top_p = get_number(body, "top_p", 1.0);
    p.top_k = get_integer(body, "top_k", 0);
    p.min_p = get_number(body, "min_p", 0.0);
    p.repetition_penalty = get_number(body, "repetition_penalty", 1.0);
    p.presence_penalty = get_number(body, "presence_penalty", 0.0);
    p.frequency_penalty = get_number(body, "frequency_penalty", 0.0);
    p.seed = static_cast<uint64_t>(get_integer(body, "seed", static_cast<int64_t>(std::random_device{}())));
    int64_t max_tokens = get_integer(body, "max_tokens", get_integer(body, "max_completion_tokens", default_max_tokens));
    if (max_tokens < 1) bad_request("max_tokens must be at least 1", "max_tokens");
    if (max_tokens > options.max_tokens_limit) {
      bad_request("max_tokens " + std::to_string(max_tokens) + " exceeds this server's limit of " +
                      std::to_string(options.max_tokens_limit),
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

  std::vector<int64_t> completion_prompt(const Json& body) const {
    if (!body.contains("prompt")) bad_request("prompt is required", "prompt");
    const auto& prompt = body["prompt"];
    auto encode = [&](const std::string& text) {
      try {
        return tokenizer.encode(text);
      } catch (const Error& e) {
        bad_request(e.message(), "prompt");
      }
    };
    if (prompt.is_string()) return encode(prompt.get<std::string>());
    if (prompt.is_array() && prompt.size() == 1 && prompt[0].is_string()) return encode(prompt[0].get<std::string>());
    if (prompt.is_array() && !prompt.empty() && prompt[0].is_number_integer()) {
      std::vector<int64_t> ids;
      for (const auto& id : prompt) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= tokenizer.vocab_size()) {
          bad_request("prompt token " + id.dump() + " is not a token id", "prompt");
        }
        ids.push_back(id.get<int64_t>());
      }
      return ids;
    }
    bad_request("prompt must be a string, a one-element array of strings, or an array of token ids", "prompt");
  }

  std::shared_ptr<RequestHandle> submit(std::vector<int64_t> prompt, const SamplingParams& params) {
    try {
      return scheduler.submit(std::move(prompt), params);
    } catch (const Error& e) {
      bad_request(e.message() + (e.hint().empty() ? "" : " (" + e.hint() + ")"), "messages");
    }
  }

  static Json parse_body(const httplib::Request& req) {
    auto body = Json::parse(req.body, nullptr, false);
    if (body.is_discarded()) bad_request("the request body is not valid JSON");
    if (!body.is_object()) bad_request("the request body must be a JSON object");
    return body;
  }

  // One token's text; ids of a padded embedding that the tokenizer does not know read as "" (as
  // StreamDecoder and transformers' fast tokenizers do).
  std::string token_text(int64_t id) const {
    return id >= 0 && id < tokenizer.vocab_size() ? tokenizer.decode({id}) : std::string();
  }

  // Completion logprobs (legacy format) for tokens [0, n).
  Json completion_logprobs(const std::vector<SampledToken>& tokens) const {
    Json out = {{"tokens", Json::array()}, {"token_logprobs", Json::array()}, {"top_logprobs", Json::array()},
                {"text_offset", Json::array()}};
    for (const auto& t : tokens) {
      out["tokens"].push_back(token_text(t.id));
      out["token_logprobs"].push_back(t.logprob);
      Json top = Json::object();
      for (const auto& [id, lp] : t.top) top[token_text(id)] = lp;
      out["top_logprobs"].push_back(top);
      out["text_offset"].push_back(0);
    }
    return out;
  }

  Json chat_logprobs(const std::vector<SampledToken>& tokens) const {
    Json content = Json::array();
    for (const auto& t : tokens) {
      Json top = Json::array();
      for (const auto& [id, lp] : t.top) top.push_back({{"token", token_text(id)}, {"logprob", lp}, {"bytes", nullptr}});
      content.push_back({{"token", token_text(t.id)}, {"logprob", t.logprob}, {"bytes", nullptr}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }

  Json usage(const GenerationOutput& out) const {
    const auto completion = static_cast<int64_t>(out.tokens.size());
    return {{"prompt_tokens", out.prompt_tokens}, {"completion_tokens", completion},
            {"total_tokens", out.prompt_tokens + completion}};
  }

  // Streams events as server-sent events; `chunk(event)` makes the JSON of one event.
  template <typename MakeChunk, typename MakeFinal>
  void stream(httplib::Response& res, std::shared_ptr<RequestHandle> handle, MakeChunk make_chunk, MakeFinal make_final) {
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [handle, make_chunk, make_final](size_t, httplib::DataSink& sink) {
          auto send = [&](const std::string& data) {
            std::string frame = "data: " + data + "\n\n";
            return sink.write(frame.data(), frame.size());
          };
          StreamEvent event;
          while (handle->next(event)) {
            if (event.done) {
              if (!event.error.empty()) {
                send(error_body(event.error, "server_error", "").dump());
              } else {
                send(make_final(event).dump());
              }
              send("[DONE]");
              sink.done();
              return true;
            }
            if (event.text.empty() && event.token.id < 0) continue;
            if (!send(make_chunk(event).dump())) {
              handle->cancel();  // the client went away
              return false;
            }
          }
          sink.done();
          return true;
        },
        [handle](bool success) {
          if (!success) handle->cancel();
        });
  }

  void completions(const httplib::Request& req, httplib::Response& res) {
    auto body = parse_body(req);
    if (get_bool(body, "echo", false)) bad_request("echo is not supported", "echo");
    auto params = sampling(body, 16);
    const int64_t logprobs = get_integer(body, "logprobs", -1);
    if (logprobs > 5) bad_request("logprobs must be at most 5", "logprobs");
    params.top_logprobs = std::max<int64_t>(0, logprobs);
    auto handle = submit(completion_prompt(body), params);
    const std::string id = random_id("cmpl");
    const int64_t created = now_seconds();
    auto base = [&, id, created](const Json& choice) {
      return Json{{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", options.model_name},
                  {"choices", Json::array({choice})}};
    };
    if (get_bool(body, "stream", false)) {
      stream(
          res, handle,
          [this, base, logprobs](const StreamEvent& e) {
            Json choice = {{"index", 0}, {"text", e.text}, {"finish_reason", nullptr},
                           {"logprobs", logprobs >= 0 && e.token.id >= 0 ? completion_logprobs({e.token}) : Json(nullptr)}};
            return base(choice);
          },
          [this, base](const StreamEvent& e) {
            Json out = base({{"index", 0}, {"text", ""}, {"finish_reason", e.output.finish_reason}, {"logprobs", nullptr}});
            out["usage"] = usage(e.output);
            return out;
          });
      return;
    }
    auto out = handle->wait();
    Json choice = {{"index", 0}, {"text", out.text}, {"finish_reason", out.finish_reason},
                   {"logprobs", logprobs >= 0 ? completion_logprobs(out.details) : Json(nullptr)}};
    Json response = base(choice);
    response["usage"] = usage(out);
    res.set_content(response.dump(), "application/json");
  }

  void chat_completions(const httplib::Request& req, httplib::Response& res) {
    auto body = parse_body(req);
    if (!body.contains("messages")) bad_request("messages is required", "messages");
    std::vector<ChatMessage> messages;
    try {
      messages = parse_chat_messages(body["messages"], "request");
    } catch (const Error& e) {
      bad_request(e.message(), "messages");
    }
    std::string prompt_text;
    try {
      prompt_text = chat.render(messages, true);
    } catch (const Error& e) {
      bad_request(e.message(), "messages");
    }
    std::vector<int64_t> prompt;
    try {
      prompt = tokenizer.encode(prompt_text);
    } catch (const Error& e) {
      bad_request(e.message(), "messages");
    }
    const int64_t room = scheduler.options().slot_capacity - static_cast<int64_t>(prompt.size());
    auto params = sampling(body, std::max<int64_t>(1, std::min(room, options.max_tokens_limit)));
    const bool want_logprobs = get_bool(body, "logprobs", false);
    params.top_logprobs = want_logprobs ? get_integer(body, "top_logprobs", 0) : 0;
    if (params.top_logprobs < 0 || params.top_logprobs > 20) bad_request("top_logprobs must be in [0, 20]", "top_logprobs");
    auto handle = submit(std::move(prompt), params);
    const std::string id = random_id("chatcmpl");
    const int64_t created = now_seconds();
    auto base = [&, id, created](const char* object, const Json& choice) {
      return Json{{"id", id}, {"object", object}, {"created", created}, {"model", options.model_name},
                  {"system_fingerprint", nullptr}, {"choices", Json::array({choice})}};
    };
    if (get_bool(body, "stream", false)) {
      auto first = std::make_shared<bool>(true);
      stream(
          res, handle,
          [this, base, first, want_logprobs](const StreamEvent& e) {
            Json delta = {{"content", e.text}};
            if (*first) {
              delta["role"] = "assistant";
              *first = false;
            }
            Json choice = {{"index", 0}, {"delta", delta}, {"finish_reason", nullptr},
                           {"logprobs", want_logprobs && e.token.id >= 0 ? chat_logprobs({e.token}) : Json(nullptr)}};
            return base("chat.completion.chunk", choice);
          },
          [this, base](const StreamEvent& e) {
            Json out = base("chat.completion.chunk",
                            {{"index", 0}, {"delta", Json::object()}, {"finish_reason", e.output.finish_reason}, {"logprobs", nullptr}});
            out["usage"] = usage(e.output);
            return out;
          });
      return;
    }
    auto out = handle->wait();
    Json choice = {{"index", 0},
                   {"message", {{"role", "assistant"}, {"content", out.text}}},
                   {"finish_reason", out.finish_reason},
                   {"logprobs", want_logprobs ? chat_logprobs(out.details) : Json(nullptr)}};
    Json response = base("chat.completion", choice);
    response["usage"] = usage(out);
    res.set_content(response.dump(), "application/json");
  }

  // Wraps a handler: ApiError -> its status and an OpenAI error body; anything else -> 500.
  template <typename F>
  httplib::Server::Handler guarded(F handler) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      try {
        (this->*handler)(req, res);
      } catch (const ApiError& e) {
        res.status = e.status;
        res.set_content(error_body(e.message, "invalid_request_error", e.param).dump(), "application/json");
      } catch (const std::exception& e) {
        spdlog::error("{} {}: {}", req.method, req.path, e.what());
        res.status = 500;
        res.set_content(error_body(e.what(), "server_error", "").dump(), "application/json");
      }
    };
  }

  void setup() {
    http.new_task_queue = [threads = options.threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
    http.set_payload_max_length(static_cast<size_t>(options.max_request_bytes));
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(Json{{"status", "ok"},
                           {"load", scheduler.load()},
                           {"peak_batch", scheduler.peak_batch()},
                           {"preemptions", scheduler.preemptions()},
                           {"kv_cache_pages", scheduler.cache_pages()},
                           {"kv_cache_free_pages", scheduler.free_pages()}}
                          .dump(),
                      "application/json");
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      Json model = {{"id", options.model_name}, {"object", "model"}, {"created", now_seconds()}, {"owned_by", "phi-engine"}};
      res.set_content(Json{{"object", "list"}, {"data", Json::array({model})}}.dump(), "application/json");
    });
    http.Post("/v1/completions", guarded(&Impl::completions));
    http.Post("/v1/chat/completions", guarded(&Impl::chat_completions));
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      std::string message = res.status == 404   ? "no route for " + req.method + " " + req.path
                            : res.status == 413 ? "the request body is too large"
                                                : "request failed with status " + std::to_string(res.status);
      res.set_content(error_body(message, "invalid_request_error", "").dump(), "application/json");
    });
  }
};

Server::Server(Scheduler& scheduler, const Tokenizer& tokenizer, const ChatTemplate& chat, ServerOptions options)
    : impl_(std::make_unique<Impl>(scheduler, tokenizer, chat, std::move(options))) {
  impl_->setup();
}

Server::~Server() = default;

void Server::run() {
  auto& o = impl_->options;
  int port = o.port;
  if (port == 0) {
    port = impl_->http.bind_to_any_port(o.host);
    if (port < 0) throw Error("cannot bind " + o.host + " to any port");
  } else if (!impl_->http.bind_to_port(o.host, port)) {
    throw Error("cannot bind " + o.host + ":" + std::to_string(port), "", "is the port already in use?");
  }
  spdlog::info("listening on http://{}:{} (model \"{}\")", o.host, port, o.model_name);
  impl_->http.listen_after_bind();
}

void Server::stop() { impl_->http.stop(); }

}  // namespace phi
