// phi generate --model DIR --input prompts.jsonl --output out.jsonl [sampling flags]
// Each input line: {"prompt": "text"} | {"prompt_ids": [..]} | {"messages": [{"role", "content"}..]},
// optionally with per-line sampling fields (max_new_tokens, temperature, top_k, top_p, min_p, seed,
// stop, ...). Each output line: {"index", "text", "tokens", "finish_reason", "prompt_tokens",
// "logprobs"?}.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/inference_model.h"
#include "cli/sampling_options.h"
#include "core/file_util.h"
#include "phi/core/error.h"
#include "phi/core/text_io.h"
#include "phi/infer/chat_template.h"
#include "phi/infer/generator.h"
#include "phi/models/model_loader.h"

namespace phi::cli {

namespace {

struct GenerateOptions {
  InferenceModelOptions model;
  std::string input;
  std::string output;
  int64_t batch_size = 8;
  bool truncate = false;
  bool no_cuda_graph = false;
  SamplingParams sampling;
};

void draw_progress(size_t done, size_t total, int64_t tokens, double seconds) {
  if (!isatty(STDERR_FILENO)) return;
  const int width = 30;
  const int filled = total ? static_cast<int>(width * done / total) : width;
  std::fprintf(stderr, "\r[%.*s%*s] %zu/%zu requests, %lld tokens, %.1f tok/s", filled,
               "##############################", width - filled, "", done, total, static_cast<long long>(tokens),
               seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0);
  std::fflush(stderr);
}

int run_generate(const GenerateOptions& o) {
  auto loaded = InferenceModel::load(o.model);
  const auto& model = loaded.model;
  const auto& tokenizer = loaded.tokenizer;
  const auto& chat = loaded.chat;
  GeneratorOptions gen_options;
  gen_options.max_batch_size = o.batch_size;
  gen_options.end_token_ids = loaded.end_token_ids;
  gen_options.truncate_prompt_left = o.truncate;
  gen_options.cuda_graph = !o.no_cuda_graph;
  Generator generator(model, *tokenizer, gen_options);

  std::vector<GenerationRequest> requests;
  for_each_jsonl(o.input, [&](const nlohmann::json& j, const std::string& where) {
    if (!j.is_object()) throw Error("line is not a JSON object", where);
    GenerationRequest request;
    request.params = o.sampling;
    nlohmann::json sampling = nlohmann::json::object();
    for (const auto& item : j.items()) {
      if (item.key() == "prompt" || item.key() == "prompt_ids" || item.key() == "messages" || item.key() == "id") continue;
      sampling[item.key()] = item.value();
    }
    if (!sampling.empty()) {
      // Per-line fields override the command-line flags.
      nlohmann::json merged = {
          {"temperature", o.sampling.temperature}, {"top_k", o.sampling.top_k}, {"top_p", o.sampling.top_p},
          {"min_p", o.sampling.min_p}, {"repetition_penalty", o.sampling.repetition_penalty},
          {"presence_penalty", o.sampling.presence_penalty}, {"frequency_penalty", o.sampling.frequency_penalty},
          {"seed", static_cast<int64_t>(o.sampling.seed)}, {"max_new_tokens", o.sampling.max_new_tokens},
          {"stop", o.sampling.stop_strings}, {"ignore_eos", o.sampling.ignore_eos},
          {"top_logprobs", o.sampling.top_logprobs}};
      for (const auto& item : sampling.items()) merged[item.key()] = item.value();
      request.params = sampling_params_from_json(merged, where);
    }
    if (j.contains("prompt_ids")) {
      const auto& ids = j["prompt_ids"];
      if (!ids.is_array()) throw Error("$.prompt_ids must be an array of token ids", where);
      for (const auto& id : ids) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= model.config().vocab_size) {
          throw Error("$.prompt_ids holds " + id.dump() + ", not a token id of this model", where);
        }
        request.prompt.push_back(id.get<int64_t>());
      }
    } else if (j.contains("messages") || (j.contains("prompt") && j["prompt"].is_string())) {
      // Unless left truncation is asked, a prompt that cannot fit the context is refused before
      // it is tokenized (a huge line costs a length check, not gigabytes).
      const int64_t max_tokens = o.truncate ? 0 : model.config().max_position_embeddings;
      try {
        if (j.contains("messages")) {
          EncodeOptions options;
          options.max_tokens = max_tokens;
          request.prompt = chat.encode(*tokenizer, parse_chat_messages(j["messages"], where), true, options);
        } else {
          request.prompt = tokenizer->encode(j["prompt"].get<std::string>(), tokenizer->prompt_options(max_tokens));
        }
      } catch (const Error& e) {
        throw Error(e.message(), e.where().empty() ? where : e.where(), e.hint());
      }
    } else {
      throw Error("line needs \"prompt\" (string), \"prompt_ids\" or \"messages\"", where);
    }
    requests.push_back(std::move(request));
    return true;
  });
  if (requests.empty()) throw Error("no prompts in the input", o.input);

  const auto start = std::chrono::steady_clock::now();
  size_t done = 0;
  int64_t tokens = 0;
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  auto outputs = generator.generate(requests, [&](size_t, const SampledToken& token, const std::string&) {
    if (token.id >= 0) ++tokens;
    if (tokens % 16 == 0) draw_progress(done, requests.size(), tokens, seconds());
    return true;
  });
  done = requests.size();
  draw_progress(done, requests.size(), tokens, seconds());
  if (isatty(STDERR_FILENO)) std::fprintf(stderr, "\n");

  std::string text;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const auto& out = outputs[i];
    nlohmann::json j = {{"index", i}, {"text", out.text}, {"tokens", out.tokens},
                        {"finish_reason", out.finish_reason}, {"prompt_tokens", out.prompt_tokens}};
    {  // the chosen token's log-probability, and the top-N alternatives when asked
      nlohmann::json lp = nlohmann::json::array();
      for (const auto& d : out.details) {
        nlohmann::json top = nlohmann::json::array();
        for (const auto& [id, value] : d.top) top.push_back({{"id", id}, {"logprob", value}});
        lp.push_back({{"id", d.id}, {"logprob", d.logprob}, {"top", top}});
      }
      j["logprobs"] = lp;
    }
    text += j.dump() + "\n";
  }
  write_file_atomic(o.output, text.data(), text.size());
  spdlog::info("generated {} tokens for {} prompts in {:.1f} s ({:.1f} tok/s) -> {}", tokens, outputs.size(), seconds(),
               tokens / std::max(seconds(), 1e-9), o.output);
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& root, Runner& run) {
  auto o = std::make_shared<GenerateOptions>();
  auto* cmd = root.add_subcommand("generate", "Batch generation: prompts.jsonl in, completions.jsonl out");
  o->model.add_options(cmd);
  cmd->add_option("--input", o->input, "prompts.jsonl: {\"prompt\"} | {\"prompt_ids\"} | {\"messages\"} per line")
      ->required();
  cmd->add_option("--output", o->output, "output JSONL (written atomically)")->required();
  cmd->add_option("--batch-size", o->batch_size, "sequences decoded together")->capture_default_str();
  cmd->add_flag("--truncate", o->truncate, "truncate prompts longer than the context from the left");
  cmd->add_flag("--no-cuda-graph", o->no_cuda_graph,
                "on CUDA, decode batch 1 by launching each step's kernels instead of replaying a captured step");
  add_sampling_options(cmd, o->sampling);
  cmd->callback([&run, o]() { run = [o]() { return run_generate(*o); }; });
}

}  // namespace phi::cli
