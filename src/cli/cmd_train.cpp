// phi train --config configs/train/X.json [--set a.b=v ...] [--resume]
// phi finetune --config configs/train/X.json ...: the same job from a model (model.init_from), and
// data sources may be chat / instruction JSONL files, tokenized with the model's tokenizer and chat
// template into the run directory (loss on assistant turns / answers only).
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>

#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "phi/core/error.h"
#include "phi/eval/mmlu.h"
#include "phi/eval/perplexity.h"
#include "phi/models/transformer.h"
#include "phi/tokenizer/tokenizer.h"
#include "phi/train/trainer.h"

namespace phi::cli {

namespace {
struct TrainOptions {
  std::string config;
  std::vector<std::string> overrides;
  bool resume = false;
  bool dry_run = false;
};

void add_options(CLI::App* cmd, const std::shared_ptr<TrainOptions>& o) {
  cmd->add_option("--config", o->config, "the recipe")->required();
  cmd->add_option("--set", o->overrides, "override a recipe value: --set training.max_steps=10 (repeatable)");
  cmd->add_flag("--resume", o->resume, "continue from the newest complete checkpoint of the run directory");
  cmd->add_flag("--dry-run", o->dry_run, "check the recipe and print it resolved, without training");
}

// A .jsonl data path becomes a dataset tokenized into run_dir/data/NAME (reused on --resume).
std::string tokenized_source(const std::string& path, const TrainConfig& config, const std::string& name, bool resume) {
  namespace fs = std::filesystem;
  if (fs::path(path).extension() != ".jsonl") return path;
  if (!fs::is_regular_file(path)) throw Error("fine-tuning data file not found", path);
  const fs::path out = fs::path(config.run.dir) / "data" / name;
  if (resume && fs::exists(out / "manifest.json")) return out.string();
  fs::remove_all(out);
  TokenizeJob job;
  job.tokenizer = config.model.init_from;
  job.inputs = {path};
  job.output = out.string();
  job.special_tokens_in_content = config.data.special_tokens_in_content;
  tokenize_dataset(job);
  return out.string();
}

// The recipe's eval tasks (train_config.h's evals) run with phi/eval: inputs are loaded once per
// task (tokens, MMLU subjects, tokenizer) and reused at every evaluation.
TrainHooks eval_hooks(const TrainConfig& config) {
  struct Loaded {
    std::unique_ptr<Tokenizer> tokenizer;
    std::vector<int64_t> tokens;
    std::vector<MmluSubject> subjects;
  };
  auto loaded = std::make_shared<std::map<std::string, Loaded>>();
  auto init_from = config.model.init_from;
  TrainHooks hooks;
  hooks.evaluate = [loaded, init_from](const Transformer& model, const EvalTaskSection& task) -> nlohmann::json {
    auto& state = (*loaded)[task.name];
    const std::string tokenizer_dir = task.tokenizer.empty() ? init_from : task.tokenizer;
    const bool needs_tokenizer = task.task == "mmlu" || !std::filesystem::is_directory(task.input);
    if (needs_tokenizer && !state.tokenizer) {
      if (tokenizer_dir.empty()) {
        throw Error("eval task '" + task.name + "' needs a tokenizer", "", "set its \"tokenizer\" (a model directory)");
      }
      state.tokenizer = load_tokenizer(tokenizer_dir);
    }
    if (task.task == "perplexity") {
      if (state.tokens.empty()) state.tokens = perplexity_tokens(task.input, state.tokenizer.get(), task.max_tokens);
      PerplexityOptions options;
      options.seq_len = task.seq_len;
      options.stride = task.stride;
      const auto r = sliding_window_perplexity(model, state.tokens, options);
      return {{"perplexity", r.perplexity_exact}, {"nll", r.nll_exact}, {"tokens", r.tokens}};
    }
    if (state.subjects.empty()) {
      auto names = task.subjects;
      if (names.empty()) {
        for (const auto& entry : mmlu_subjects()) names.push_back(entry.first);
      }
      for (const auto& name : names) state.subjects.push_back(load_mmlu_subject(task.data, name));
    }
    MmluOptions options;
    options.shots = task.shots;
    options.limit = task.limit;
    options.batch_size = task.batch_size;
    const auto run = evaluate_mmlu(model, *state.tokenizer, state.subjects, options);
    const auto metrics = mmlu_metrics(run.samples);
    return {{"acc", metrics["acc"]}, {"acc_macro_subjects", metrics["acc_macro_subjects"]},
            {"questions", metrics["questions"]}};
  };
  return hooks;
}

// One job for both commands; finetune checks init_from and tokenizes .jsonl sources first.
int run_job(const TrainOptions& o, bool finetune) {
  auto config = load_train_config(o.config, o.overrides);
  if (finetune && config.model.init_from.empty()) {
    throw Error("phi finetune starts from a trained model: the recipe has no model.init_from", o.config,
                "set model.init_from to a model directory, or use phi train");
  }
  if (o.dry_run) {
    std::cout << train_config_to_json(config).dump(2) << std::endl;
    return 0;
  }
  load_mixture_sources(config.data);
  if (finetune) {
    for (size_t i = 0; i < config.data.sources.size(); ++i) {
      config.data.sources[i].path =
          tokenized_source(config.data.sources[i].path, config, "source-" + std::to_string(i), o.resume);
    }
    if (!config.data.valid.empty()) config.data.valid = tokenized_source(config.data.valid, config, "valid", o.resume);
  }
  train(config, o.resume, eval_hooks(config));
  return 0;
}

}  // namespace

void add_finetune_command(CLI::App& root, Runner& run) {
  auto o = std::make_shared<TrainOptions>();
  auto* cmd = root.add_subcommand("finetune", "Fine-tune a model (model.init_from) on chat / instruction JSONL or shards");
  add_options(cmd, o);
  cmd->callback([&run, o]() { run = [o]() { return run_job(*o, true); }; });
}

void add_train_command(CLI::App& root, Runner& run) {
  auto o = std::make_shared<TrainOptions>();
  auto* cmd = root.add_subcommand("train", "Train or fine-tune from a JSON recipe (configs/train/*.json)");
  add_options(cmd, o);
  cmd->callback([&run, o]() { run = [o]() { return run_job(*o, false); }; });
}

}  // namespace phi::cli
