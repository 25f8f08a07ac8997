// phi serve --model DIR [--host 127.0.0.1] [--port 8080] [--max-batch 8] [--context N] ...
#include <cstdint>
#include <csignal>

#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/inference_model.h"
#include "phi/core/error.h"
#include "phi/infer/chat_template.h"
#include "phi/infer/generator.h"
#include "phi/infer/scheduler.h"
#include "phi/kernels/verified.h"
#include "phi/models/model_loader.h"
#ifdef PHI_WITH_SERVER
#include "phi/serve/server.h"
#endif

namespace phi::cli {

namespace {

struct ServeOptions {
  InferenceModelOptions model;
  int64_t max_batch = 8;
  int64_t context = 2048;
  int64_t page_size = 16;
  int64_t cache_tokens = 0;
  bool cuda_graphs = false;
#ifdef PHI_WITH_SERVER
  ServerOptions server;
#endif
};

#ifdef PHI_WITH_SERVER
Server* g_server = nullptr;
extern "C" void stop_server(int) {
  if (g_server) g_server->stop();
}
#endif

int run_serve(const ServeOptions& o) {
#ifndef PHI_WITH_SERVER
  throw Error("this phi was built without the server (cpp-httplib was not found)", "",
              "install libcpp-httplib-dev and rebuild");
#else
  auto loaded = InferenceModel::load(o.model);
  const auto& model = loaded.model;
  const auto& tokenizer = loaded.tokenizer;
  const auto& chat = loaded.chat;
  SchedulerOptions scheduling;
  scheduling.max_batch_size = o.max_batch;
  scheduling.slot_capacity = std::min(o.context, model.config().max_position_embeddings);
  scheduling.page_size = o.page_size;
  scheduling.cache_tokens = o.cache_tokens;
  if (o.cuda_graphs && !model.device().is_cuda()) {
    throw Error("--cuda-graphs needs a CUDA model", "", "add --device cuda, or leave --cuda-graphs out");
  }
  scheduling.fixed_shape_decode = o.cuda_graphs;
  scheduling.end_token_ids = loaded.end_token_ids;
  Scheduler scheduler(model, *tokenizer, scheduling);
  spdlog::info("up to {} sequences of {} tokens; paged KV cache: {} tokens ({} pages of {}), {:.1f} MiB; chat template {}",
               scheduling.max_batch_size, scheduler.options().slot_capacity, scheduler.options().cache_tokens,
               scheduler.cache_pages(), scheduling.page_size, scheduler.cache_bytes() / 1048576.0, chat.name());
  Server server(scheduler, *tokenizer, chat, o.server);
  g_server = &server;
  std::signal(SIGINT, stop_server);
  std::signal(SIGTERM, stop_server);
  server.run();
  g_server = nullptr;
  spdlog::info("server stopped");
  return 0;
#endif
}

}  // namespace

void add_serve_command(CLI::App& root, Runner& run) {
  auto o = std::make_shared<ServeOptions>();
  auto* cmd = root.add_subcommand("serve", "OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions)");
  o->model.add_options(cmd);
  cmd->add_option("--max-batch", o->max_batch, "requests decoded together")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--context", o->context, "tokens per request (prompt + completion), at most the model's and the cache's")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--page-size", o->page_size, "tokens per KV-cache page")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--kv-cache-tokens", o->cache_tokens,
                  "tokens the paged KV cache holds for all requests together (0: max-batch x context); "
                  "requests beyond it wait, or the latest are preempted and recomputed")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_flag("--cuda-graphs", o->cuda_graphs,
                std::string("decode steps replayed as CUDA graphs, one per batch size (1, 2, 4, ...); ") +
                    verified::status_text("paged_decode_graph"));
#ifdef PHI_WITH_SERVER
  cmd->add_option("--host", o->server.host, "address to bind")->capture_default_str();
  cmd->add_option("--port", o->server.port, "port (0: any free port)")->capture_default_str();
  cmd->add_option("--model-name", o->server.model_name, "the model id clients use")->capture_default_str();
  cmd->add_option("--max-request-bytes", o->server.max_request_bytes, "larger request bodies get 413")
      ->capture_default_str();
  cmd->add_option("--max-tokens-limit", o->server.max_tokens_limit, "largest max_tokens a request may ask for")
      ->capture_default_str();
  cmd->add_option("--threads", o->server.threads, "HTTP worker threads")->capture_default_str();
#endif
  cmd->callback([&run, o]() { run = [o]() { return run_serve(*o); }; });
}

}  // namespace phi::cli
