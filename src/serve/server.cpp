#include "phi/serve/server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <random>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "phi/core/error.h"
#include "phi/eval/loglikelihood.h"
#include "phi/serve/request.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi {

using Json = nlohmann::json;

namespace {

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

}  // namespace

struct Server::Impl {
  Scheduler& scheduler;
  const Tokenizer& tokenizer;
  const ChatTemplate& chat;
  ServerOptions options;
  httplib::Server http;

  Impl(Scheduler& s, const Tokenizer& t, const ChatTemplate& c, ServerOptions o)
      : scheduler(s), tokenizer(t), chat(c), options(std::move(o)) {}

  RequestLimits limits() const { return {scheduler.options().slot_capacity, options.max_tokens_limit}; }

  std::shared_ptr<RequestHandle> submit(std::vector<int64_t> prompt, const SamplingParams& params) {
    try {
      return scheduler.submit(std::move(prompt), params);
    } catch (const Error& e) {
      throw ApiError{400, e.message() + (e.hint().empty() ? "" : " (" + e.hint() + ")"), "messages"};
    }
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

  // echo: each prompt scored (every token's logprob after the ones before it, with the top
  // alternatives), and with max_tokens 1 the greedy next token appended: one forward per prompt,
  // run here rather than through the scheduler (lm-eval's local-completions log-likelihoods).
  void echo_completions(const ParsedRequest& request, httplib::Response& res) {
    const int64_t top = std::max<int64_t>(request.completion_logprobs, 0);
    Json choices = Json::array();
    int64_t prompt_tokens = 0, completion_tokens = 0;
    for (size_t i = 0; i < request.prompts.size(); ++i) {
      const auto& ids = request.prompts[i];
      const auto scores = score_prompt(scheduler.model(), ids, top);
      std::vector<const PromptTokenScore*> shown;
      for (const auto& t : scores.tokens) shown.push_back(&t);
      if (request.params.max_new_tokens == 1) shown.push_back(&scores.next);
      Json logprobs = {{"tokens", Json::array()}, {"token_logprobs", Json::array()}, {"top_logprobs", Json::array()},
                       {"text_offset", Json::array()}};
      // Each token's text is what it adds to the text decoded so far (a SentencePiece token alone
      // would lose its leading space; ids of a padded embedding add nothing): the streaming decoder.
      std::string text;
      StreamDecoder decoder(tokenizer, /*skip_special=*/false);
      for (size_t p = 0; p < shown.size(); ++p) {
        const auto& t = *shown[p];
        auto piece = decoder.push(t.id);
        if (p + 1 == shown.size()) piece += decoder.flush();
        logprobs["tokens"].push_back(piece);
        logprobs["text_offset"].push_back(text.size());
        text += piece;
        if (p == 0) {
          logprobs["token_logprobs"].push_back(nullptr);
          logprobs["top_logprobs"].push_back(nullptr);
          continue;
        }
        logprobs["token_logprobs"].push_back(t.logprob);
        Json alternatives = Json::object();
        for (const auto& [id, lp] : t.top) alternatives[token_text(id)] = lp;
        logprobs["top_logprobs"].push_back(alternatives);
      }
      choices.push_back({{"index", i},
                         {"text", text},
                         {"finish_reason", "length"},
                         {"logprobs", request.completion_logprobs >= 0 ? logprobs : Json(nullptr)}});
      prompt_tokens += static_cast<int64_t>(ids.size());
      completion_tokens += request.params.max_new_tokens;
    }
    Json response = {{"id", random_id("cmpl")},
                     {"object", "text_completion"},
                     {"created", now_seconds()},
                     {"model", options.model_name},
                     {"choices", choices},
                     {"usage",
                      {{"prompt_tokens", prompt_tokens},
                       {"completion_tokens", completion_tokens},
                       {"total_tokens", prompt_tokens + completion_tokens}}}};
    res.set_content(response.dump(), "application/json");
  }

  void completions(const httplib::Request& req, httplib::Response& res) {
    auto request = parse_completion_request(req.body, tokenizer, limits());
    if (request.echo) {
      echo_completions(request, res);
      return;
    }
    const int64_t logprobs = request.completion_logprobs;
    auto handle = submit(std::move(request.prompt), request.params);
    const std::string id = random_id("cmpl");
    const int64_t created = now_seconds();
    auto base = [&, id, created](const Json& choice) {
      return Json{{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", options.model_name},
                  {"choices", Json::array({choice})}};
    };
    if (request.stream) {
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
    auto request = parse_chat_request(req.body, tokenizer, chat, limits());
    const bool want_logprobs = request.chat_logprobs;
    auto handle = submit(std::move(request.prompt), request.params);
    const std::string id = random_id("chatcmpl");
    const int64_t created = now_seconds();
    auto base = [&, id, created](const char* object, const Json& choice) {
      return Json{{"id", id}, {"object", object}, {"created", created}, {"model", options.model_name},
                  {"system_fingerprint", nullptr}, {"choices", Json::array({choice})}};
    };
    if (request.stream) {
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
