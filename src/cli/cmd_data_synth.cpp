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
#include <cctype>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>
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

// A teacher behind an OpenAI-compatible endpoint, asked through a cache: every answer is written
// to cache_dir/<hash of the request>.json as it arrives, and a request already there is not sent.
class Teacher {
 public:
  Teacher(const TeacherSettings& settings, fs::path cache_dir) : settings_(settings), cache_dir_(std::move(cache_dir)) {
    fs::create_directories(cache_dir_);
    ChatClientOptions client_options;
    client_options.url = settings.endpoint;
    client_options.model = settings.model;
    client_options.timeout_seconds = settings.timeout_seconds;
    client_options.max_retries = static_cast<int>(settings.retries);
    client_options.backoff_seconds = 0.5;
    if (!settings.api_key_env.empty()) {
      const char* key = std::getenv(settings.api_key_env.c_str());
      if (key == nullptr) throw Error("environment variable " + settings.api_key_env + " (api_key_env) is not set");
      client_options.api_key = key;
    }
    client_ = std::make_unique<ChatClient>(client_options);
  }

  struct Request {
    nlohmann::ordered_json messages;
    nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  };

  /// The answers to `requests`, in order: {"request", "content", "usage"}, `concurrency` requests at
  /// a time. When one fails after its retries the rest stop and phi::Error says so (the answers so
  /// far are cached). `on_answer` runs once per request (from worker threads, serialised).
  std::vector<nlohmann::json> ask(const std::vector<Request>& requests, const std::function<void()>& on_answer) {
    std::vector<nlohmann::json> answers(requests.size());
    std::atomic<size_t> next{0};
    std::mutex mutex;
    std::string first_error;
    auto worker = [&]() {
      for (size_t i = next++; i < requests.size(); i = next++) {
        const auto& rq = requests[i];
        const auto key_text =
            nlohmann::ordered_json{
                {"endpoint", settings_.endpoint},       {"model", settings_.model},           {"messages", rq.messages},
                {"temperature", settings_.temperature}, {"max_tokens", settings_.max_tokens}, {"extra", rq.extra}}
                .dump();
        const auto cache_file = cache_dir_ / (hex64(XXH3_64bits(key_text.data(), key_text.size())) + ".json");
        auto& answer = answers[i];
        bool have = false;
        if (fs::exists(cache_file)) {
          try {
            answer = read_json_file(cache_file.string());
            have = answer.value("request", "") == key_text;
          } catch (const Error&) {
            // a torn cache entry (not possible with atomic writes): ask again
          }
        }
        if (have) {
          ++cached;
        } else {
          try {
            const auto reply =
                client_->complete_with(rq.messages, settings_.temperature, settings_.max_tokens, rq.extra);
            ++asked;
            tries += reply.tries;
            answer = {{"request", key_text}, {"content", reply.content}, {"usage", reply.usage}};
            write_json_file_atomic(cache_file.string(), answer);
          } catch (const Error& e) {
            std::lock_guard<std::mutex> lock(mutex);
            if (first_error.empty()) first_error = e.what();
            next = requests.size();  // stop; what is cached stays
            continue;
          }
        }
        std::lock_guard<std::mutex> lock(mutex);
        on_answer();
      }
    };
    std::vector<std::thread> threads;
    const auto n = std::min<size_t>(static_cast<size_t>(settings_.concurrency), requests.size());
    for (size_t t = 0; t < n; ++t) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    if (!first_error.empty()) throw Error(first_error, settings_.endpoint, "answers so far are cached: run again");
    return answers;
  }

  std::atomic<int64_t> asked{0}, cached{0}, tries{0};

 private:
  TeacherSettings settings_;
  fs::path cache_dir_;
  std::unique_ptr<ChatClient> client_;
};

// Prompt and completion tokens of answers, from their usage.
std::pair<int64_t, int64_t> usage_of(const std::vector<nlohmann::json>& answers) {
  int64_t prompt = 0, completion = 0;
  for (const auto& a : answers) {
    const auto usage = a.value("usage", nlohmann::json());
    if (usage.is_object()) {
      prompt += usage.value("prompt_tokens", int64_t{0});
      completion += usage.value("completion_tokens", int64_t{0});
    }
  }
  return {prompt, completion};
}

// The stats every teacher stage adds: tokens over all answers (from the per-file usage parts) and
// this run's requests.
void finish_teacher_stage(StageOutput& out, const std::string& output, const Teacher& teacher, nlohmann::json extra) {
  extra["this_run"] = {
      {"requests", teacher.asked.load()}, {"tries", teacher.tries.load()}, {"cached", teacher.cached.load()}};
  auto stats = out.finish(extra, {"usage.jsonl"});
  int64_t total_prompt = 0, total_completion = 0;
  for_each_jsonl((fs::path(output) / "usage.jsonl").string(), [&](const nlohmann::json& u, const std::string&) {
    total_prompt += u.value("prompt_tokens", int64_t{0});
    total_completion += u.value("completion_tokens", int64_t{0});
    return true;
  });
  stats["prompt_tokens"] = total_prompt;
  stats["completion_tokens"] = total_completion;
  write_json_file_atomic((fs::path(output) / "stats.json").string(), stats);
}

void write_usage_part(StageOutput& out, size_t file, const std::vector<nlohmann::json>& answers) {
  const auto [prompt, completion] = usage_of(answers);
  out.part_file(file, "usage.jsonl",
                nlohmann::json{{"prompt_tokens", prompt}, {"completion_tokens", completion}}.dump() + "\n");
}

// The teacher keys of a synth or annotate spec, checked; their resolved values go to `resolved`.
TeacherSettings read_teacher_settings(JsonReader& r, TeacherSettings t, nlohmann::json& resolved) {
  t.endpoint = r.required<std::string>("endpoint");
  t.model = r.optional("model", t.model);
  t.api_key_env = r.optional("api_key_env", t.api_key_env);
  t.system = r.optional("system", t.system);
  t.temperature = r.optional("temperature", t.temperature);
  t.max_tokens = r.optional("max_tokens", t.max_tokens);
  t.concurrency = r.optional("concurrency", t.concurrency);
  t.retries = r.optional("retries", t.retries);
  t.timeout_seconds = r.optional("timeout_seconds", t.timeout_seconds);
  if (t.concurrency < 1 || t.concurrency > 256) r.fail("concurrency", "must be in [1, 256]");
  if (t.max_tokens < 1) r.fail("max_tokens", "must be positive");
  if (t.retries < 0) r.fail("retries", "must not be negative");
  if (!(t.timeout_seconds > 0)) r.fail("timeout_seconds", "must be positive");
  resolved.update({{"endpoint", t.endpoint},
                   {"model", t.model},
                   {"api_key_env", t.api_key_env},
                   {"system", t.system},
                   {"temperature", t.temperature},
                   {"max_tokens", t.max_tokens},
                   {"concurrency", t.concurrency},
                   {"retries", t.retries},
                   {"timeout_seconds", t.timeout_seconds}});
  return t;
}

// What of the teacher settings decides the answers (for a stage's fingerprint).
nlohmann::json teacher_fingerprint(const TeacherSettings& t) {
  return {{"endpoint", t.endpoint},
          {"model", t.model},
          {"system", t.system},
          {"temperature", t.temperature},
          {"max_tokens", t.max_tokens}};
}

}  // namespace

SynthOptions synth_options_from_json(const nlohmann::json& spec, const std::string& source, const std::string& path,
                                     nlohmann::json& resolved) {
  SynthOptions o;
  JsonReader r(spec, source, path);
  r.ignore({"_comment", "name", "stage", "output"});
  o.teacher = read_teacher_settings(r, o.teacher, resolved);
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
  o.documents_per_shard = r.optional("documents_per_shard", o.documents_per_shard);
  r.finish();
  if (o.templates.empty()) r.fail("templates", "must hold at least one prompt template");
  if (o.topics.empty()) r.fail("topics", "give topics (a list) or topics_file");
  if (o.count < 1) r.fail("count", "must be positive");
  if (o.documents_per_shard < 1) r.fail("documents_per_shard", "must be positive");
  resolved.update({{"templates", o.templates},
                   {"topics", o.topics},
                   {"audiences", o.audiences},
                   {"styles", o.styles},
                   {"count", o.count},
                   {"seed", o.seed},
                   {"documents_per_shard", o.documents_per_shard}});
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
  return {{"prompt", fill(tmpl, values)}, {"template", tmpl},
          {"topic", values.at("topic")},  {"audience", values.at("audience")},
          {"style", values.at("style")},  {"seed", static_cast<int64_t>(mix64(state) >> 33)}};
}

int run_synth(const SynthOptions& o, const std::string& output, const TaskSlice& slice) {
  slice.validate();
  const auto per = o.documents_per_shard;
  const auto shards = static_cast<size_t>((o.count + per - 1) / per);
  auto parameters = teacher_fingerprint(o.teacher);
  parameters.update({{"templates", o.templates},
                     {"topics", o.topics},
                     {"audiences", o.audiences},
                     {"styles", o.styles},
                     {"count", o.count},
                     {"seed", o.seed},
                     {"documents_per_shard", per}});
  StageOutput out("synth", output, parameters, shards, {"empty_answer"});
  if (out.complete()) return 0;
  Teacher teacher(o.teacher, fs::path(output) / "cache");
  Progress progress("synth", o.count, "documents");
  for (size_t shard = 0; shard < shards; ++shard) {
    const int64_t first = static_cast<int64_t>(shard) * per, last = std::min(o.count, first + per);
    if (!slice.mine(shard) || out.file_done(shard)) {
      progress.advance(last - first);
      continue;
    }
    std::vector<nlohmann::json> prompts;
    std::vector<Teacher::Request> requests;
    for (int64_t i = first; i < last; ++i) {
      prompts.push_back(synth_prompt(o, i));
      Teacher::Request rq;
      rq.messages = nlohmann::ordered_json::array();
      if (!o.teacher.system.empty()) rq.messages.push_back({{"role", "system"}, {"content", o.teacher.system}});
      rq.messages.push_back({{"role", "user"}, {"content", prompts.back()["prompt"].get<std::string>()}});
      rq.extra = {{"seed", prompts.back()["seed"]}};
      requests.push_back(std::move(rq));
    }
    const auto answers = teacher.ask(requests, [&] { progress.advance(); });
    for (int64_t i = first; i < last; ++i) {
      const auto& p = prompts[static_cast<size_t>(i - first)];
      const auto& a = answers[static_cast<size_t>(i - first)];
      Document d;
      d.id = "synth-" + std::to_string(i);
      d.source = "synth";
      d.text = a.value("content", "");
      d.metadata = {{"prompt", p["prompt"]}, {"template", p["template"]},
                    {"topic", p["topic"]},   {"audience", p["audience"]},
                    {"style", p["style"]},   {"usage", a.value("usage", nlohmann::json())}};
      if (d.text.find_first_not_of(" \t\r\n") == std::string::npos) {
        out.drop(d, "empty_answer");
      } else {
        out.keep(d);
      }
    }
    write_usage_part(out, shard, answers);
    out.end_file(shard);
  }
  progress.finish();
  spdlog::info("synth: {} requests answered by {} ({} tries), {} from the cache", teacher.asked.load(),
               o.teacher.endpoint, teacher.tries.load(), teacher.cached.load());
  if (!out.ready_to_finish(slice)) return 0;
  finish_teacher_stage(out, output, teacher, {{"prompts", o.count}});
  return 0;
}

AnnotateOptions annotate_options_from_json(const nlohmann::json& spec, const std::string& source,
                                           const std::string& path, nlohmann::json& resolved) {
  AnnotateOptions o;
  JsonReader r(spec, source, path);
  r.ignore({"_comment", "name", "stage", "output", "input"});
  o.teacher = read_teacher_settings(r, o.teacher, resolved);
  o.prompt = r.optional("prompt", o.prompt);
  o.max_chars = r.optional("max_chars", o.max_chars);
  o.every = r.optional("every", o.every);
  o.score_min = r.optional("score_min", o.score_min);
  o.score_max = r.optional("score_max", o.score_max);
  o.label_threshold = r.optional("label_threshold", o.label_threshold);
  r.finish();
  if (o.prompt.find("{text}") == std::string::npos) r.fail("prompt", "must hold {text}, where the document goes");
  if (!(o.score_min < o.score_max)) r.fail("score_max", "must be above score_min");
  if (o.every < 1) r.fail("every", "must be positive");
  resolved.update({{"prompt", o.prompt},
                   {"max_chars", o.max_chars},
                   {"every", o.every},
                   {"score_min", o.score_min},
                   {"score_max", o.score_max},
                   {"label_threshold", o.label_threshold}});
  return o;
}

std::optional<double> parse_rating(const std::string& reply, double lo, double hi) {
  // The first number in the reply (an integer or a decimal), within [lo, hi].
  for (size_t i = 0; i < reply.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(reply[i]))) continue;
    size_t j = i;
    while (j < reply.size() && std::isdigit(static_cast<unsigned char>(reply[j]))) ++j;
    if (j + 1 < reply.size() && reply[j] == '.' && std::isdigit(static_cast<unsigned char>(reply[j + 1]))) {
      ++j;
      while (j < reply.size() && std::isdigit(static_cast<unsigned char>(reply[j]))) ++j;
    }
    const double v = std::stod(reply.substr(i, j - i));
    if (v < lo || v > hi) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

int run_annotate(const AnnotateOptions& o, const std::vector<std::string>& inputs, const std::string& output,
                 const TaskSlice& slice) {
  slice.validate();
  const auto files = document_files(inputs);
  if (files.empty()) throw Error("no document files (.jsonl, .jsonl.gz, .jsonl.zst) in the inputs");
  auto parameters = teacher_fingerprint(o.teacher);
  parameters.update({{"inputs", files},
                     {"prompt", o.prompt},
                     {"max_chars", o.max_chars},
                     {"every", o.every},
                     {"score_min", o.score_min},
                     {"score_max", o.score_max},
                     {"label_threshold", o.label_threshold}});
  StageOutput out("annotate", output, parameters, files.size(), {"unrated"});
  if (out.complete()) return 0;
  Teacher teacher(o.teacher, fs::path(output) / "cache");
  Progress progress("annotate", static_cast<int64_t>(files.size()), "files");
  for (size_t f = 0; f < files.size(); ++f) {
    if (!slice.mine(f) || out.file_done(f)) {
      progress.advance();
      continue;
    }
    std::vector<Document> docs;
    int64_t index = 0;
    for_each_document(files[f], [&](Document&& d) {
      if (index++ % o.every == 0) docs.push_back(std::move(d));
    });
    std::vector<Teacher::Request> requests;
    for (const auto& d : docs) {
      std::string text = d.text;
      if (o.max_chars > 0 && static_cast<int64_t>(text.size()) > o.max_chars) {
        size_t cut = static_cast<size_t>(o.max_chars);
        while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // a whole character
        text.resize(cut);
      }
      Teacher::Request rq;
      rq.messages = nlohmann::ordered_json::array();
      if (!o.teacher.system.empty()) rq.messages.push_back({{"role", "system"}, {"content", o.teacher.system}});
      std::string prompt = o.prompt;
      prompt.replace(prompt.find("{text}"), 6, text);
      rq.messages.push_back({{"role", "user"}, {"content", prompt}});
      requests.push_back(std::move(rq));
    }
    const auto answers = teacher.ask(requests, [] {});
    for (size_t i = 0; i < docs.size(); ++i) {
      auto& d = docs[i];
      const auto reply = answers[i].value("content", "");
      const auto score = parse_rating(reply, o.score_min, o.score_max);
      if (!score) {
        out.drop(d, "unrated", {{"reply", reply.substr(0, 300)}});
        continue;
      }
      if (!d.metadata.is_object()) d.metadata = nlohmann::json::object();
      d.metadata["annotation"] = {{"score", *score}, {"reply", reply.substr(0, 300)}};
      d.metadata["label"] = *score >= o.label_threshold ? 1 : 0;
      out.keep(d);
    }
    write_usage_part(out, f, answers);
    out.end_file(f);
    progress.advance();
  }
  progress.finish();
  spdlog::info("annotate: {} requests answered by {} ({} tries), {} from the cache", teacher.asked.load(),
               o.teacher.endpoint, teacher.tries.load(), teacher.cached.load());
  if (!out.ready_to_finish(slice)) return 0;
  finish_teacher_stage(out, output, teacher, {{"label_threshold", o.label_threshold}, {"every", o.every}});
  return 0;
}

void add_data_annotate_command(CLI::App* data, Runner& run) {
  struct Options {
    std::string spec, output;
    std::vector<std::string> inputs;
    TaskSlice slice;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = data->add_subcommand(
      "annotate", "Rate documents with a teacher model (phi-1's annotation): labels for the classifier");
  cmd->add_option("--spec", o->spec,
                  "JSON: endpoint, model, prompt (with {text}), score_min, score_max, label_threshold, ...")
      ->required();
  cmd->add_option("--input", o->inputs, "JSONL files or directories of them")->required();
  cmd->add_option("--output", o->output, "output directory")->required();
  add_task_options(cmd, o->slice);
  cmd->callback([&run, o]() {
    run = [o]() {
      nlohmann::json resolved = nlohmann::json::object();
      const auto options = annotate_options_from_json(read_json_file(o->spec), o->spec, "$", resolved);
      return run_annotate(options, o->inputs, o->output, o->slice);
    };
  });
}

void add_synth_teacher_command(CLI::App* synth, Runner& run) {
  struct Options {
    std::string spec, output;
    TaskSlice slice;
  };
  auto o = std::make_shared<Options>();
  auto* cmd =
      synth->add_subcommand("teacher", "Synthetic documents from a teacher model behind an OpenAI-compatible endpoint");
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
