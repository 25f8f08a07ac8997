// phi chat --model DIR: an interactive chat that streams tokens, keeps the multi-turn history and
// understands /reset, /system TEXT, /quit.
#include <cstdint>
#include <unistd.h>

#include <chrono>
#include <iostream>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/inference_model.h"
#include "cli/sampling_options.h"
#include "phi/core/error.h"
#include "phi/infer/chat_template.h"
#include "phi/infer/generator.h"
#include "phi/models/model_loader.h"

namespace phi::cli {

namespace {

struct ChatOptions {
  InferenceModelOptions model;
  std::string system;
  SamplingParams sampling;
};

int run_chat(const ChatOptions& o) {
  auto loaded = InferenceModel::load(o.model);
  const auto& model = loaded.model;
  const auto& tokenizer = loaded.tokenizer;
  const auto& chat = loaded.chat;
  GeneratorOptions gen_options;
  gen_options.max_batch_size = 1;
  gen_options.end_token_ids = loaded.end_token_ids;
  Generator generator(model, *tokenizer, gen_options);
  const bool interactive = isatty(STDIN_FILENO);

  std::vector<ChatMessage> history;
  std::string system = o.system;
  std::cout << "phi chat (" << chat.name() << " template). Commands: /reset, /system TEXT, /quit" << std::endl;
  uint64_t turn = 0;
  while (true) {
    std::cout << "\n>>> " << std::flush;
    std::string line;
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (line == "/quit" || line == "/exit") break;
    if (line == "/reset") {
      history.clear();
      std::cout << "[history cleared]" << std::endl;
      continue;
    }
    if (line.rfind("/system", 0) == 0) {
      system = line.size() > 8 ? line.substr(8) : "";
      history.clear();
      std::cout << "[system prompt set; history cleared]" << std::endl;
      continue;
    }
    if (line[0] == '/') {
      std::cout << "[unknown command " << line << "; try /reset, /system TEXT, /quit]" << std::endl;
      continue;
    }
    std::vector<ChatMessage> messages;
    if (!system.empty()) messages.push_back({"system", system});
    messages.insert(messages.end(), history.begin(), history.end());
    messages.push_back({"user", line});
    GenerationRequest request;
    request.params = o.sampling;
    request.params.seed = o.sampling.seed + turn++;
    try {
      EncodeOptions options;
      options.max_tokens = loaded.model.config().max_position_embeddings;
      request.prompt = chat.encode(*tokenizer, messages, true, options);
      const auto start = std::chrono::steady_clock::now();
      auto outputs = generator.generate({request}, [&](size_t, const SampledToken&, const std::string& delta) {
        std::cout << delta << std::flush;
        return true;
      });
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const auto& out = outputs[0];
      std::cout << "\n" << (interactive ? "\x1b[2m" : "")
                << fmt::format("[{} tokens, {:.1f} tok/s, {}]", out.tokens.size(), out.tokens.size() / std::max(seconds, 1e-9),
                               out.finish_reason)
                << (interactive ? "\x1b[0m" : "") << std::endl;
      history.push_back({"user", line});
      history.push_back({"assistant", out.text});
    } catch (const Error& e) {
      // A turn that cannot be generated (too long, ...) is reported; the session goes on.
      std::cout << "\n[error: " << e.message() << (e.hint().empty() ? "" : "; " + e.hint()) << "]" << std::endl;
    }
  }
  std::cout << std::endl;
  return 0;
}

}  // namespace

void add_chat_command(CLI::App& root, Runner& run) {
  auto o = std::make_shared<ChatOptions>();
  o->sampling.max_new_tokens = 512;
  o->sampling.temperature = 0.7;
  auto* cmd = root.add_subcommand("chat", "Interactive chat that streams tokens (/reset, /system TEXT, /quit)");
  o->model.add_options(cmd);
  cmd->add_option("--system", o->system, "system prompt");
  add_sampling_options(cmd, o->sampling);
  cmd->callback([&run, o]() { run = [o]() { return run_chat(*o); }; });
}

}  // namespace phi::cli
