// phi eval: the benchmarks of phi/eval/*.h with their reports (docs/eval.md).
//   phi eval lego --model DIR --input heldout.jsonl [--limit N] [--json]
//   phi eval mmlu --model DIR --data DIR [--shots K] [--subjects a,b] [--limit N] --output R.json
//                 [--samples S.jsonl]
#include <iostream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/inference_model.h"
#include "phi/eval/lego.h"
#include "phi/eval/mmlu.h"
#include "phi/eval/report.h"
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
  Transformer load() const {
    kernels.apply();
    LoadOptions load;
    load.dtype = parse_dtype(dtype);
    load.device = parse_device(device);
    return load_model(model, load);
  }
  nlohmann::json settings() const { return {{"device", device}, {"dtype", dtype}}; }
};

// Where finished items wait for a resumed run: --cache (kept afterwards, so that a rerun with the
// same settings reuses it), else REPORT.cache (removed once the report is written).
std::string cache_dir_for(const std::string& cache, bool no_cache, const std::string& output) {
  if (no_cache) return "";
  if (!cache.empty()) return cache;
  return output.empty() ? "" : output + ".cache";
}

struct MmluEvalOptions {
  EvalModelOptions model;
  std::string data;
  std::string subjects;
  MmluOptions run;
  std::string output, samples, cache;
  bool no_cache = false;
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
  o.run.cache_dir = cache_dir_for(o.cache, o.no_cache, o.output);
  o.run.model_fingerprint = o.model.model + " " + report["model"]["config_hash"].get<std::string>() + " " +
                            o.model.dtype + " " + o.data;
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
  if (!o.output.empty()) write_json_file(o.output, report);
  if (o.cache.empty()) EvalCache::remove(o.run.cache_dir);  // the default one, beside the report
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
  mmlu->add_option("--cache", m->cache, "keep finished subjects here, for resumed runs and reruns (default: REPORT.cache, removed after the report)");
  mmlu->add_flag("--no-cache", m->no_cache, "keep no cache of finished subjects");
  mmlu->callback([&run, m]() { run = [m]() { return run_mmlu_eval(*m); }; });
}

}  // namespace phi::cli
