// phi data synth teacher --spec SPEC.json --output DIR [--tasks N --task-index I --wait S]
// Synthetic documents written by a teacher model behind any OpenAI-compatible endpoint (`phi serve`
// included), the phi-1.5 way: prompt i fills one of the spec's templates with a topic, an audience
// and a style drawn by a seeded generator from (seed, i), so the prompts are diverse and the same on
// every run. Requests go out `concurrency` at a time; 429, 5xx, timeouts and connection errors are
// retried with exponential backoff (ChatClient). Every answer is kept in DIR/cache/<request hash>.json
// as soon as it arrives, so a killed run resumes without asking again; shards of
// `documents_per_shard` prompts are the stage's files (StageOutput: resumable, split over tasks).
// The spec (also a recipe's "synth" stage): endpoint, model, api_key_env, templates, topics (or
// topics_file: one per line), audiences, styles, count, seed, temperature, max_tokens, concurrency,
// retries, timeout_seconds, documents_per_shard, system.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "cli/commands.h"
#include "cli/data_stages.h"
#include "cli/stage_output.h"
#include "core/file_util.h"
#include "eval/chat_client.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/core/progress.h"
#include "phi/core/text_io.h"

namespace phi::cli {

namespace {

namespace fs = std::filesystem;

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// "{topic}" and the like replaced in `text`.
std::string fill(std::string text, const std::map<std::string, std::string>& values) {
  for (const auto& [key, value] : values) {
    const std::string slot = "{" + key + "}";
    for (size_t at = text.find(slot); at != std::string::npos; at = text.find(slot, at + value.size())) {
      text.replace(at, slot.size(), value);
    }
  }
  return text;
}

std::string hex64(uint64_t v) {
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(v));
  return buffer;
}

}  // namespace

SynthOptions synth_options_from_json(const nlohmann::json& spec, const std::string& source, const std::string& path,
                                     nlohmann::json& resolved) {
  SynthOptions o;
  JsonReader r(spec, source, path);
  r.ignore({"_comment", "name", "stage", "output"});
  o.endpoint = r.required<std::string>("endpoint");
  o.model = r.optional("model", o.model);
  o.api_key_env = r.optional("api_key_env", o.api_key_env);
  o.system = r.optional("system", o.system);
  o.templates = r.required<std::vector<std::string>>("templates");
  if (r.has("topics_file")) {
    const auto file = r.required<std::string>("topics_file");
    std::istringstream in(read_text_file(file, "topics file"));
    for (std::string line; std::getline(in, line);) {
      if (line.find_first_not_of(" \t\r") != std::string::npos) o.topics.push_back(line);
    }
    resolved["topics_file"] = file;
  }
  o.topics = r.optional("topics", o.topics);
  o.audiences = r.optional("audiences", o.audiences);
  o.styles = r.optional("styles", o.styles);
  o.count = r.required<int64_t>("count");
  o.seed = static_cast<uint64_t>(r.optional<int64_t>("seed", static_cast<int64_t>(o.seed)));
  o.temperature = r.optional("temperature", o.temperature);
  o.max_tokens = r.optional("max_tokens", o.max_tokens);
  o.concurrency = r.optional("concurrency", o.concurrency);
  o.retries = r.optional("retries", o.retries);
  o.timeout_seconds = r.optional("timeout_seconds", o.timeout_seconds);
  o.documents_per_shard = r.optional("documents_per_shard", o.documents_per_shard);
  r.finish();
  if (o.templates.empty()) r.fail("templates", "must hold at least one prompt template");
  if (o.topics.empty()) r.fail("topics", "give topics (a list) or topics_file");
  if (o.count < 1) r.fail("count", "must be positive");
  if (o.concurrency < 1 || o.concurrency > 256) r.fail("concurrency", "must be in [1, 256]");
  if (o.documents_per_shard < 1) r.fail("documents_per_shard", "must be positive");
  resolved.update({{"endpoint", o.endpoint}, {"model", o.model}, {"api_key_env", o.api_key_env}, {"system", o.system},
                   {"templates", o.templates}, {"topics", o.topics}, {"audiences", o.audiences},
                   {"styles", o.styles}, {"count", o.count}, {"seed", o.seed}, {"temperature", o.temperature},
                   {"max_tokens", o.max_tokens}, {"concurrency", o.concurrency}, {"retries", o.retries},
                   {"timeout_seconds", o.timeout_seconds}, {"documents_per_shard", o.documents_per_shard}});
  return o;
}

nlohmann::json synth_prompt(const SynthOptions& o, int64_t i) {
  uint64_t state = mix64(o.seed ^ mix64(static_cast<uint64_t>(i)));
  auto pick = [&](const std::vector<std::string>& list) -> std::string {
    state = mix64(state);
    return list.empty() ? std::string() : list[state % list.size()];
  };
  const auto tmpl = pick(o.templates);
  const std::map<std::string, std::string> values = {
      {"topic", pick(o.topics)}, {"audience", pick(o.audiences)}, {"style", pick(o.styles)}};
  return {{"prompt", fill(tmpl, values)}, {"template", tmpl}, {"topic", values.at("topic")},
          {"audience", values.at("audience")}, {"style", values.at("style")},
          {"seed", static_cast<int64_t>(mix64(state) >> 33)}};
}

int run_synth(const SynthOptions& o, const std::string& output, const TaskSlice& slice) {
  slice.validate();
  const auto per = o.documents_per_shard;
  const auto shards = static_cast<size_t>((o.count + per - 1) / per);
  const nlohmann::json parameters = {{"endpoint", o.endpoint}, {"model", o.model}, {"system", o.system},
                                     {"templates", o.templates}, {"topics", o.topics}, {"audiences", o.audiences},
                                     {"styles", o.styles}, {"count", o.count}, {"seed", o.seed},
                                     {"temperature", o.temperature}, {"max_tokens", o.max_tokens},
                                     {"documents_per_shard", per}};
  StageOutput out("synth", output, parameters, shards, {"empty_answer"});
  if (out.complete()) return 0;
  const auto cache_dir = fs::path(output) / "cache";
  fs::create_directories(cache_dir);
  ChatClientOptions client_options;
  client_options.url = o.endpoint;
  client_options.model = o.model;
  client_options.timeout_seconds = o.timeout_seconds;
  client_options.max_retries = o.retries;
  client_options.backoff_seconds = 0.5;
  if (!o.api_key_env.empty()) {
    const char* key = std::getenv(o.api_key_env.c_str());
    if (key == nullptr) throw Error("environment variable " + o.api_key_env + " (api_key_env) is not set");
    client_options.api_key = key;
  }
  const ChatClient client(client_options);
  std::atomic<int64_t> asked{0}, cached{0}, tries{0}, prompt_tokens{0}, completion_tokens{0};
  Progress progress("synth", o.count, "documents");
  std::mutex progress_mutex;
  auto advance = [&](int64_t n) {
    std::lock_guard<std::mutex> lock(progress_mutex);
    progress.advance(n);
  };
  for (size_t shard = 0; shard < shards; ++shard) {
    const int64_t first = static_cast<int64_t>(shard) * per, last = std::min(o.count, first + per);
    if (!slice.mine(shard) || out.file_done(shard)) {
      advance(last - first);
      continue;
    }
    std::vector<nlohmann::json> prompts, answers(static_cast<size_t>(last - first));
    for (int64_t i = first; i < last; ++i) prompts.push_back(synth_prompt(o, i));
    std::atomic<int64_t> next{first};
    std::mutex error_mutex;
    std::string first_error;
    auto worker = [&]() {
      for (int64_t i = next++; i < last; i = next++) {
        const auto& p = prompts[static_cast<size_t>(i - first)];
        nlohmann::ordered_json messages = nlohmann::ordered_json::array();
        if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
        messages.push_back({{"role", "user"}, {"content", p["prompt"].get<std::string>()}});
        const nlohmann::ordered_json extra = {{"seed", p["seed"]}};
        const auto key_text = nlohmann::ordered_json{{"endpoint", o.endpoint}, {"model", o.model}, {"messages", messages},
                                                     {"temperature", o.temperature}, {"max_tokens", o.max_tokens},
                                                     {"extra", extra}}
                                  .dump();
        const auto cache_file = cache_dir / (hex64(XXH3_64bits(key_text.data(), key_text.size())) + ".json");
        auto& answer = answers[static_cast<size_t>(i - first)];
        if (fs::exists(cache_file)) {
          try {
            answer = read_json_file(cache_file.string());
            if (answer.value("request", "") == key_text) {
              ++cached;
              advance(1);
              continue;
            }
          } catch (const Error&) {
            // a torn cache entry (not possible with atomic writes): ask again
          }
        }
        try {
          const auto reply = client.complete_with(messages, o.temperature, o.max_tokens, extra);
          ++asked;
          tries += reply.tries;
          if (reply.usage.is_object()) {
            prompt_tokens += reply.usage.value("prompt_tokens", int64_t{0});
            completion_tokens += reply.usage.value("completion_tokens", int64_t{0});
          }
          answer = {{"request", key_text}, {"content", reply.content}, {"usage", reply.usage}};
          write_json_file_atomic(cache_file.string(), answer);
        } catch (const Error& e) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (first_error.empty()) first_error = e.what();
          next = last;  // stop this shard; what is cached stays
        }
        advance(1);
      }
    };
    std::vector<std::thread> threads;
    for (int64_t t = 0; t < std::min<int64_t>(o.concurrency, last - first); ++t) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    if (!first_error.empty()) throw Error("synth: " + first_error, output, "answers so far are cached: run again");
    int64_t shard_prompt_tokens = 0, shard_completion_tokens = 0;
    for (int64_t i = first; i < last; ++i) {
      const auto& p = prompts[static_cast<size_t>(i - first)];
      const auto& a = answers[static_cast<size_t>(i - first)];
      const auto usage = a.value("usage", nlohmann::json());
      if (usage.is_object()) {
        shard_prompt_tokens += usage.value("prompt_tokens", int64_t{0});
        shard_completion_tokens += usage.value("completion_tokens", int64_t{0});
      }
      Document d;
      d.id = "synth-" + std::to_string(i);
      d.source = "synth";
      d.text = a.value("content", "");
      d.metadata = {{"prompt", p["prompt"]}, {"template", p["template"]}, {"topic", p["topic"]},
                    {"audience", p["audience"]}, {"style", p["style"]}, {"usage", a.value("usage", nlohmann::json())}};
      if (d.text.find_first_not_of(" \t\r\n") == std::string::npos) {
        out.drop(d, "empty_answer");
      } else {
        out.keep(d);
      }
    }
    out.part_file(shard, "usage.jsonl",
                  nlohmann::json{{"prompt_tokens", shard_prompt_tokens}, {"completion_tokens", shard_completion_tokens}}
                          .dump() +
                      "\n");
    out.end_file(shard);
  }
  progress.finish();
  spdlog::info("synth: {} requests answered by {} ({} tries), {} from the cache; {} prompt + {} completion tokens",
               asked.load(), o.endpoint, tries.load(), cached.load(), prompt_tokens.load(), completion_tokens.load());
  if (!out.ready_to_finish(slice)) return 0;
  // Tokens over every answer (from the endpoint's usage, kept with each answer); requests, tries
  // and cache hits of this run only (a resumed run asks less).
  auto stats = out.finish({{"this_run", {{"requests", asked.load()}, {"tries", tries.load()}, {"cached", cached.load()}}}},
                          {"usage.jsonl"});
  int64_t total_prompt = 0, total_completion = 0;
  for_each_jsonl((fs::path(output) / "usage.jsonl").string(), [&](const nlohmann::json& u, const std::string&) {
    total_prompt += u.value("prompt_tokens", int64_t{0});
    total_completion += u.value("completion_tokens", int64_t{0});
    return true;
  });
  stats["prompts"] = o.count;
  stats["prompt_tokens"] = total_prompt;
  stats["completion_tokens"] = total_completion;
  write_json_file_atomic((fs::path(output) / "stats.json").string(), stats);
  return 0;
}

void add_synth_teacher_command(CLI::App* synth, Runner& run) {
  struct Options {
    std::string spec, output;
    TaskSlice slice;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = synth->add_subcommand("teacher", "Synthetic documents from a teacher model behind an OpenAI-compatible endpoint");
  cmd->add_option("--spec", o->spec, "JSON: endpoint, model, templates, topics, audiences, styles, count, seed, ...")
      ->required();
  cmd->add_option("--output", o->output, "output directory")->required();
  add_task_options(cmd, o->slice);
  cmd->callback([&run, o]() {
    run = [o]() {
      nlohmann::json resolved = nlohmann::json::object();
      const auto options = synth_options_from_json(read_json_file(o->spec), o->spec, "$", resolved);
      return run_synth(options, o->output, o->slice);
    };
  });
}

}  // namespace phi::cli
