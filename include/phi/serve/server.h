// The OpenAI-compatible HTTP server (cpp-httplib): /v1/models, /v1/completions,
// /v1/chat/completions (stream true/false, server-sent events), /health. Requests go to the
// continuous-batching Scheduler; malformed requests get a 4xx with an OpenAI-style error body.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "phi/infer/chat_template.h"
#include "phi/infer/scheduler.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                       // 0: any free port (logged)
  std::string model_name = "phi";        // the id /v1/models reports and requests may name
  int64_t max_request_bytes = 1 << 20;   // larger bodies get 413
  int64_t max_tokens_limit = 4096;       // max_tokens above this get 400
  int threads = 64;                      // HTTP worker threads (concurrent connections)
};

class Server {
 public:
  Server(Scheduler& scheduler, const Tokenizer& tokenizer, const ChatTemplate& chat, ServerOptions options);
  ~Server();
  /// Binds and serves until stop(); throws phi::Error when the address cannot be bound.
  void run();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace phi
