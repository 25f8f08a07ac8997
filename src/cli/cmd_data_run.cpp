// phi data run --recipe R.json [--output DIR] [--set STAGE.key=value]... [--stage NAME]
//   [--tasks N --task-index I --wait SECONDS]
// A data recipe (docs/data.md): {"output": DIR, "stages": [{"name", "stage", "input", ...}]}. Each
// stage writes DIR/<name>; "input" is an earlier stage's name, or paths (a list may mix both). Stages
// run in order; a complete stage (its stats.json, or done.json for tokenize and mix, with the same
// parameters) is skipped, so a killed run resumes where it stopped, file by file inside a stage. The
// resolved recipe, defaults included, is saved as DIR/recipe.json.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/data_stages.h"
#include "cli/stage_output.h"
#include "phi/config/overrides.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/data/documents.h"
#include "phi/data/shards.h"

namespace phi::cli {

namespace {

namespace fs = std::filesystem;

struct RunOptions {
  std::string recipe;
  std::string output;
  std::vector<std::string> set;
  std::string only_stage;
  bool dry_run = false;
  std::set<std::string> skip;
  TaskSlice slice;
};

const std::set<std::string> kStages = {"import",   "filter",   "dedup", "decontaminate", "synth", "annotate",
                                       "classify", "tokenize", "mix"};

// A stage's inputs: earlier stages' documents (or datasets, for mix) and paths as given.
std::vector<std::string> resolve_inputs(const nlohmann::json& input,
                                        const std::map<std::string, std::vector<std::string>>& done, JsonReader& r,
                                        const char* key = "input") {
  std::vector<std::string> out;
  const auto list = input.is_array() ? input : nlohmann::json::array({input});
  if (list.empty()) r.fail(key, "must name an earlier stage or paths");
  for (const auto& v : list) {
    if (!v.is_string()) r.fail(key, "must be a string or a list of strings");
    const auto name = v.get<std::string>();
    const auto it = done.find(name);
    if (it != done.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
    } else {
      out.push_back(name);
    }
  }
  return out;
}

// Where a stage's documents are for the next one: its NNNNN.jsonl files.
std::vector<std::string> documents_of(const std::vector<std::string>& inputs, const std::set<std::string>& stage_dirs) {
  std::vector<std::string> out;
  for (const auto& in : inputs) {
    if (stage_dirs.count(in)) {
      const auto files = stage_documents(in);
      out.insert(out.end(), files.begin(), files.end());
    } else {
      out.push_back(in);
    }
  }
  return out;
}

bool done_with(const std::string& dir, const nlohmann::json& parameters) {
  const auto path = fs::path(dir) / "done.json";
  return fs::exists(path) && read_json_file(path.string()).value("parameters", nlohmann::json()) == parameters;
}

void mark_done(const std::string& dir, const nlohmann::json& parameters, const nlohmann::json& extra) {
  nlohmann::json j = {{"parameters", parameters}};
  j.update(extra);
  write_json_file_atomic((fs::path(dir) / "done.json").string(), j);
}

// Waits (as a task other than 0) for task 0 to finish a stage; whether it did within the wait.
bool await_stage(const std::string& dir, const TaskSlice& slice, const char* marker) {
  if (slice.finisher()) return true;
  return wait_until([&] { return fs::exists(fs::path(dir) / marker); }, slice.wait_seconds);
}

// ${NAME} in every string of the recipe becomes the environment variable's value; an unset one is
// an error naming where it is used.
void expand_environment(nlohmann::json& v, const std::string& source, const std::string& path) {
  if (v.is_object()) {
    for (auto& [key, value] : v.items()) {
      if (key.empty() || key[0] != '_') expand_environment(value, source, path + "." + key);  // not in comments
    }
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) expand_environment(v[i], source, path + "[" + std::to_string(i) + "]");
  } else if (v.is_string()) {
    auto text = v.get<std::string>();
    for (size_t at = text.find("${"); at != std::string::npos; at = text.find("${", at)) {
      const auto end = text.find('}', at);
      if (end == std::string::npos) break;
      const auto name = text.substr(at + 2, end - at - 2);
      const char* value = std::getenv(name.c_str());
      if (value == nullptr) {
        throw Error("environment variable " + name + " is not set", source + ": " + path,
                    "export it, or replace ${" + name + "} with --set");
      }
      text.replace(at, end - at + 1, value);
      at += std::strlen(value);
    }
    v = text;
  }
}

int run_recipe(const RunOptions& o) {
  o.slice.validate();
  nlohmann::json recipe = read_json_file(o.recipe);
  if (!recipe.is_object()) throw Error("a data recipe is a JSON object", o.recipe);
  // --set: "<stage name>.<key>=value" edits that stage, anything else the recipe's top level.
  for (const auto& assignment : o.set) {
    const auto dot = assignment.find('.');
    const auto eq = assignment.find('=');
    bool applied = false;
    if (dot != std::string::npos && dot < eq && recipe.contains("stages") && recipe["stages"].is_array()) {
      for (auto& stage : recipe["stages"]) {
        if (stage.is_object() && stage.value("name", "") == assignment.substr(0, dot)) {
          apply_overrides(stage, {assignment.substr(dot + 1)});
          applied = true;
        }
      }
    }
    if (!applied) apply_overrides(recipe, {assignment});
  }
  expand_environment(recipe, o.recipe, "$");
  JsonReader top(recipe, o.recipe);
  top.ignore({"_comment", "description"});
  const std::string output = o.output.empty() ? top.required<std::string>("output") : o.output;
  if (o.output.empty() == false) top.ignore({"output"});
  const auto& stages = top.raw("stages");
  if (!stages.is_array() || stages.empty()) top.fail("stages", "must be a non-empty array of stages");
  top.finish();

  // Read and check every stage before running any: a typo in the last stage fails at once.
  struct Planned {
    std::string name, kind, dir;
    nlohmann::json spec;
  };
  std::vector<Planned> plan;
  std::set<std::string> names;
  for (size_t i = 0; i < stages.size(); ++i) {
    const auto where = "$.stages[" + std::to_string(i) + "]";
    if (!stages[i].is_object()) throw Error(where + " must be an object", o.recipe);
    JsonReader r(stages[i], o.recipe, where);
    Planned p;
    p.name = r.required<std::string>("name");
    p.kind = r.required<std::string>("stage");
    if (!kStages.count(p.kind)) {
      r.fail("stage", "unknown stage '" + p.kind +
                          "' (import, filter, dedup, decontaminate, synth, annotate, classify, tokenize, mix)");
    }
    if (p.name.empty() || p.name.find('/') != std::string::npos || p.name[0] == '.') {
      r.fail("name", "must be a plain directory name");
    }
    if (!names.insert(p.name).second) r.fail("name", "'" + p.name + "' names two stages");
    p.dir = (fs::path(output) / p.name).string();
    p.spec = stages[i];
    plan.push_back(std::move(p));
  }
  for (const auto& name : o.skip) {
    if (!names.count(name)) throw Error("--skip " + name + " is not a stage of the recipe", o.recipe);
  }
  if (!o.only_stage.empty() && !names.count(o.only_stage)) {
    throw Error("--stage " + o.only_stage + " is not a stage of the recipe", o.recipe);
  }

  // Two passes: the first reads every stage's parameters (a typo anywhere fails before anything
  // runs), the second runs them.
  for (const bool execute : {false, true}) {
    std::map<std::string, std::vector<std::string>> dirs;  // stage name -> its directory (or a skipped one's inputs)
    std::set<std::string> stage_dirs;
    nlohmann::json resolved = {{"output", output}, {"stages", nlohmann::json::array()}};
    for (size_t i = 0; i < plan.size(); ++i) {
      const auto& p = plan[i];
      const auto where = "$.stages[" + std::to_string(i) + "]";
      JsonReader r(p.spec, o.recipe, where);
      r.ignore({"name", "stage", "_comment"});
      const bool skipped = o.skip.count(p.name) > 0;
      const bool run_it = execute && !skipped && (o.only_stage.empty() || o.only_stage == p.name);
      nlohmann::json res = {{"name", p.name}, {"stage", p.kind}};
      auto inputs = [&]() {
        auto in = resolve_inputs(r.raw("input"), dirs, r);
        res["input"] = p.spec["input"];
        return documents_of(in, stage_dirs);
      };
      if (run_it) fs::create_directories(output);
      if (p.kind == "import") {
        ImportOptions opt;
        opt.output = p.dir;
        opt.from = r.required<std::vector<std::string>>("from");
        opt.extensions = r.optional("extensions", opt.extensions);
        opt.separator = r.optional("separator", opt.separator);
        opt.source = r.optional("source", opt.source);
        opt.files_per_shard = r.optional("files_per_shard", opt.files_per_shard);
        opt.max_bytes = r.optional("max_bytes", opt.max_bytes);
        opt.max_files = r.optional("max_files", opt.max_files);
        r.finish();
        res.update({{"from", opt.from},
                    {"extensions", opt.extensions},
                    {"separator", opt.separator},
                    {"source", opt.source},
                    {"files_per_shard", opt.files_per_shard},
                    {"max_bytes", opt.max_bytes},
                    {"max_files", opt.max_files}});
        if (run_it) {
          run_import(opt, o.slice);
          if (!await_stage(p.dir, o.slice, "stats.json")) return 0;
        }
      } else if (p.kind == "filter") {
        FilterOptions opt;
        opt.output = p.dir;
        opt.skip_bad_records = r.optional("skip_bad_records", false);
        res["skip_bad_records"] = opt.skip_bad_records;
        opt.inputs = inputs();
        opt.rules = r.required<std::string>("rules");
        opt.params = r.has("params") ? r.raw("params") : nlohmann::json::object();
        r.finish();
        nlohmann::json params_resolved = nlohmann::json::object();
        check_filter_params(opt.rules, opt.params, o.recipe, where + ".params", params_resolved);
        res.update({{"rules", opt.rules}, {"params", params_resolved}});
        if (run_it) {
          run_filter(opt, o.slice);
          if (!await_stage(p.dir, o.slice, "stats.json")) return 0;
        }
      } else if (p.kind == "dedup") {
        DedupOptions opt;
        opt.output = p.dir;
        opt.skip_bad_records = r.optional("skip_bad_records", false);
        res["skip_bad_records"] = opt.skip_bad_records;
        opt.inputs = inputs();
        opt.method = r.optional("method", opt.method);
        opt.minhash.n_grams = r.optional("n_grams", opt.minhash.n_grams);
        opt.minhash.buckets = r.optional("buckets", opt.minhash.buckets);
        opt.minhash.hashes_per_bucket = r.optional("hashes_per_bucket", opt.minhash.hashes_per_bucket);
        opt.minhash.seed = static_cast<uint64_t>(r.optional<int64_t>("seed", static_cast<int64_t>(opt.minhash.seed)));
        opt.permutations = r.optional("permutations", opt.permutations);
        opt.memory_limit_mb = r.optional("memory_limit_mb", opt.memory_limit_mb);
        r.finish();
        res.update({{"method", opt.method},
                    {"n_grams", opt.minhash.n_grams},
                    {"buckets", opt.minhash.buckets},
                    {"hashes_per_bucket", opt.minhash.hashes_per_bucket},
                    {"seed", opt.minhash.seed},
                    {"permutations", opt.permutations},
                    {"memory_limit_mb", opt.memory_limit_mb}});
        if (run_it) {
          run_dedup(opt, o.slice);
          if (!await_stage(p.dir, o.slice, "stats.json")) return 0;
        }
      } else if (p.kind == "decontaminate") {
        DecontaminateOptions opt;
        opt.output = p.dir;
        opt.skip_bad_records = r.optional("skip_bad_records", false);
        res["skip_bad_records"] = opt.skip_bad_records;
        opt.inputs = inputs();
        opt.eval = r.optional("eval", opt.eval);
        opt.index.n_gram = r.optional("n_gram", opt.index.n_gram);
        opt.index.min_words = r.optional("min_words", opt.index.min_words);
        opt.action = r.optional("action", opt.action);
        opt.cut_margin = r.optional("cut_margin", opt.cut_margin);
        opt.min_piece = r.optional("min_piece", opt.min_piece);
        opt.max_pieces = r.optional("max_pieces", opt.max_pieces);
        r.finish();
        res.update({{"eval", opt.eval},
                    {"n_gram", opt.index.n_gram},
                    {"min_words", opt.index.min_words},
                    {"action", opt.action},
                    {"cut_margin", opt.cut_margin},
                    {"min_piece", opt.min_piece},
                    {"max_pieces", opt.max_pieces}});
        if (run_it) {
          run_decontaminate(opt, o.slice);
          if (!await_stage(p.dir, o.slice, "stats.json")) return 0;
        }
      } else if (p.kind == "classify") {
        ClassifyOptions opt;
        opt.output = p.dir;
        opt.skip_bad_records = r.optional("skip_bad_records", false);
        res["skip_bad_records"] = opt.skip_bad_records;
        opt.inputs = inputs();
        opt.classifier = r.optional("classifier", std::string());
        opt.threshold = r.optional("threshold", opt.threshold);
        opt.batch_size = r.optional("batch_size", opt.batch_size);
        opt.device = r.optional("device", opt.device);
        // Or trained here: on `labels` (an annotate stage or labelled JSONL) with `model`'s features.
        ClassifierTrainOptions train;
        const bool trains = r.has("labels");
        if (trains) {
          train.labels = documents_of(resolve_inputs(r.raw("labels"), dirs, r, "labels"), stage_dirs);
          train.model = r.required<std::string>("model");
          train.max_tokens = r.optional("max_tokens", train.max_tokens);
          train.l2 = r.optional("l2", train.l2);
          train.batch_size = opt.batch_size;
          train.device = opt.device;
          train.output = (fs::path(p.dir) / "classifier").string();
          if (!opt.classifier.empty())
            r.fail("classifier", "give a trained classifier or labels to train one, not both");
          opt.classifier = train.output;
          res.update({{"labels", p.spec["labels"]},
                      {"model", train.model},
                      {"max_tokens", train.max_tokens},
                      {"l2", train.l2}});
        } else if (opt.classifier.empty()) {
          r.fail("classifier", "give a trained classifier, or labels and a model to train one");
        }
        r.finish();
        res.update({{"classifier", opt.classifier},
                    {"threshold", opt.threshold},
                    {"batch_size", opt.batch_size},
                    {"device", opt.device}});
        if (run_it) {
          if (trains && o.slice.finisher()) {
            // Trained once per labels / model / settings: classifier.json records them.
            nlohmann::json info;
            const auto info_path = fs::path(train.output) / "classifier.json";
            if (fs::exists(info_path)) info = read_json_file(info_path.string());
            const bool same =
                info.is_object() && info.value("labels", nlohmann::json()) == nlohmann::json(train.labels) &&
                info.value("model", std::string()) == fs::absolute(train.model).lexically_normal().string() &&
                info.value("l2", 0.0) == train.l2 && info.value("max_tokens", int64_t{0}) == train.max_tokens;
            if (!same) train_classifier(train);
          } else if (trains && !wait_until([&] { return fs::exists(fs::path(train.output) / "classifier.json"); },
                                           o.slice.wait_seconds)) {
            return 0;
          }
          run_classify(opt, o.slice);
          if (!await_stage(p.dir, o.slice, "stats.json")) return 0;
        }
      } else if (p.kind == "annotate") {
        const auto in = inputs();
        nlohmann::json annotate_resolved = nlohmann::json::object();
        const auto opt = annotate_options_from_json(p.spec, o.recipe, where, annotate_resolved);
        res.update(annotate_resolved);
        if (run_it) {
          run_annotate(opt, in, p.dir, o.slice);
          if (!await_stage(p.dir, o.slice, "stats.json")) return 0;
        }
      } else if (p.kind == "synth") {
        nlohmann::json synth_resolved = nlohmann::json::object();
        const auto opt = synth_options_from_json(p.spec, o.recipe, where, synth_resolved);
        res.update(synth_resolved);
        if (run_it) {
          run_synth(opt, p.dir, o.slice);
          if (!await_stage(p.dir, o.slice, "stats.json")) return 0;
        }
      } else if (p.kind == "tokenize") {
        TokenizeJob job;
        job.output = p.dir;
        job.inputs = inputs();
        if (execute) job.inputs = document_files(job.inputs);  // directories: their JSONL files
        job.tokenizer = r.required<std::string>("tokenizer");
        job.shard_tokens = r.optional("shard_tokens", job.shard_tokens);
        job.no_eos = !r.optional("eos", true);
        r.finish();
        res.update({{"tokenizer", job.tokenizer}, {"shard_tokens", job.shard_tokens}, {"eos", !job.no_eos}});
        const nlohmann::json parameters = {{"inputs", job.inputs},
                                           {"tokenizer", job.tokenizer},
                                           {"shard_tokens", job.shard_tokens},
                                           {"eos", !job.no_eos}};
        if (run_it && !done_with(p.dir, parameters)) {
          for (const auto& in : job.inputs) {
            if (!fs::exists(in)) throw Error("tokenize input does not exist", in, "did the stage before it finish?");
          }
          job.per_file = true;  // a killed run resumes file by file; tasks split the files
          job.slice = o.slice;
          tokenize_dataset(job);
          if (o.slice.finisher() && fs::exists(fs::path(p.dir) / "manifest.json")) {
            const auto manifest = read_manifest(p.dir);
            mark_done(p.dir, parameters, {{"tokens", manifest.n_tokens()}, {"documents", manifest.n_documents()}});
          }
        }
        if (run_it && !await_stage(p.dir, o.slice, "done.json")) return 0;
      } else {  // mix
        const auto& sources = r.raw("sources");
        if (!sources.is_array() || sources.empty()) {
          r.fail("sources", "must be a non-empty array of {input, epochs} or {input, weight}");
        }
        r.finish();
        nlohmann::json list = nlohmann::json::array(), res_sources = nlohmann::json::array();
        std::vector<std::pair<std::string, double>> parts;  // dataset, epochs
        bool by_weight = false;
        std::vector<double> weights;
        for (size_t k = 0; k < sources.size(); ++k) {
          JsonReader s(sources[k], o.recipe, where + ".sources[" + std::to_string(k) + "]");
          const auto input = s.required<std::string>("input");
          const bool has_weight = s.has("weight");
          if (k == 0) by_weight = has_weight;
          if (has_weight != by_weight) s.fail("weight", "give every source a weight, or every source epochs");
          if (has_weight && s.has("epochs")) s.fail("epochs", "a source has a weight or epochs, not both");
          const auto epochs = by_weight ? 0.0 : s.optional("epochs", 1.0);
          const auto weight = by_weight ? s.required<double>("weight") : 0.0;
          if (!by_weight && !(epochs > 0)) s.fail("epochs", "must be > 0");
          if (by_weight && !(weight > 0)) s.fail("weight", "must be > 0");
          s.finish();
          const auto it = dirs.find(input);
          parts.emplace_back(it != dirs.end() ? it->second.front() : input, epochs);
          weights.push_back(weight);
          res_sources.push_back(by_weight ? nlohmann::json{{"input", input}, {"weight", weight}}
                                          : nlohmann::json{{"input", input}, {"epochs", epochs}});
        }
        res["sources"] = res_sources;
        const nlohmann::json parameters = {{"sources", res_sources}};
        if (run_it && o.slice.finisher() && !done_with(p.dir, parameters)) {
          // By epochs: weights in proportion to tokens x epochs, so that a run over the mixture's
          // tokens sees each source its number of epochs. By weight: the weights normalised, and
          // the epochs that a pass over all the tokens implies.
          double total = 0, weight_sum = 0;
          std::vector<int64_t> tokens;
          for (size_t k = 0; k < parts.size(); ++k) {
            tokens.push_back(read_manifest(parts[k].first).n_tokens());
            total += static_cast<double>(tokens.back()) * (by_weight ? 1.0 : parts[k].second);
            weight_sum += weights[k];
          }
          if (!(total > 0)) throw Error("the mixture's sources hold no tokens", o.recipe + ": " + where);
          fs::create_directories(p.dir);
          for (size_t k = 0; k < parts.size(); ++k) {
            const double w =
                by_weight ? weights[k] / weight_sum : static_cast<double>(tokens[k]) * parts[k].second / total;
            const double epochs =
                by_weight ? (tokens[k] > 0 ? w * total / static_cast<double>(tokens[k]) : 0.0) : parts[k].second;
            list.push_back({{"path", fs::relative(fs::absolute(parts[k].first), fs::absolute(p.dir)).generic_string()},
                            {"weight", w},
                            {"tokens", tokens[k]},
                            {"epochs", epochs}});
          }
          write_json_file_atomic((fs::path(p.dir) / "mixture.json").string(),
                                 {{"sources", list}, {"tokens_per_pass", static_cast<int64_t>(total)}});
          mark_done(p.dir, parameters, {{"tokens_per_pass", static_cast<int64_t>(total)}});
          spdlog::info("mix: {} sources, {} tokens per pass over the mixture, in {}/mixture.json", parts.size(),
                       static_cast<int64_t>(total), p.dir);
        }
        if (run_it && !await_stage(p.dir, o.slice, "done.json")) return 0;
      }
      if (skipped) {
        // A skipped stage passes its input on (only stages that read documents can be skipped).
        if (!p.spec.contains("input") || p.kind == "tokenize" || p.kind == "mix") {
          throw Error("--skip " + p.name + ": only a stage that reads documents and writes documents can be skipped",
                      o.recipe + ": " + where);
        }
        res["skipped"] = true;
        resolved["stages"].push_back(res);
        dirs[p.name] = resolve_inputs(p.spec["input"], dirs, r);
        if (execute) spdlog::info("data run: stage {} skipped (--skip): its input goes on", p.name);
        continue;
      }
      resolved["stages"].push_back(res);
      dirs[p.name] = {p.dir};
      stage_dirs.insert(p.dir);
      if (run_it && o.slice.finisher()) {
        const bool complete = fs::exists(fs::path(p.dir) / "stats.json") || fs::exists(fs::path(p.dir) / "done.json");
        if (!complete) {
          spdlog::warn("data run: stage {} is not complete (other tasks' files are missing); stopping here", p.name);
          return 0;
        }
      }
    }
    if (!execute && o.dry_run) {
      std::cout << resolved.dump(2) << std::endl;
      spdlog::info("data run: {} stages of {} checked (--dry-run: nothing ran)", plan.size(), o.recipe);
      return 0;
    }
    if (execute && o.slice.finisher()) write_json_file_atomic((fs::path(output) / "recipe.json").string(), resolved);
  }
  spdlog::info("data run: {} stages of {} done in {}", plan.size(), o.recipe, output);
  return 0;
}

}  // namespace

void add_data_run_command(CLI::App* data, Runner& run) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = data->add_subcommand("run", "Run a data recipe: its stages in order, resuming what is done");
  cmd->add_option("--recipe", o->recipe, "data recipe JSON (data_recipes/)")->required();
  cmd->add_option("--output", o->output, "output directory (default: the recipe's \"output\")");
  cmd->add_option("--set", o->set, "override: STAGE.key=value (a stage's parameter) or key=value (the recipe's)");
  cmd->add_option("--stage", o->only_stage, "run this stage only (the ones before it must be complete)");
  cmd->add_flag("--dry-run", o->dry_run, "check the recipe and print it resolved, run nothing");
  cmd->add_option("--skip", o->skip, "pass this stage's input on instead of running it (a filtering stage)");
  cmd->add_option("--tasks", o->slice.tasks, "split each stage's files over this many tasks")->capture_default_str();
  cmd->add_option("--task-index", o->slice.index, "which task this is, 0 to --tasks - 1")->capture_default_str();
  cmd->add_option("--wait", o->slice.wait_seconds, "seconds a task waits for the others at the end of each stage")
      ->capture_default_str();
  cmd->callback([&run, o]() { run = [o]() { return run_recipe(*o); }; });
}

}  // namespace phi::cli
