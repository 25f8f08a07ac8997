// The data pipeline's stages, each reading JSONL documents (phi/data/documents.h) from --input and
// writing --output DIR: NNNNN.jsonl (the documents kept, one file per input file, in order),
// removed.jsonl (each dropped id with its reason) and stats.json (written last: the stage is
// complete; a rerun with the same inputs and parameters does nothing).
////
// Every stage takes --tasks N --task-index I [--wait SECONDS]: the process works on every N-th
// input file from I; task 0 then finishes the stage (the reduce: removed.jsonl, stats.json, and
// dedup's clustering) once every file is done, waiting up to --wait for the others.
//
// The stages live one per file: cmd_data_import.cpp, cmd_data_filter.cpp, cmd_data_dedup.cpp,
// cmd_data_decontaminate.cpp, cmd_data_synth.cpp (synth, annotate), cmd_data_classify.cpp; this file
// registers their commands.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/data_stages.h"
#include "cli/stage_output.h"
#include "phi/core/error.h"
#include "phi/data/documents.h"
#include "phi/data/text_norm.h"

namespace phi::cli {

namespace fs = std::filesystem;

namespace {

// "key=value" pairs into a JSON object; a value that is not JSON is a string.
nlohmann::json parse_params(const std::vector<std::string>& pairs) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& p : pairs) {
    const auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) throw Error("--param takes key=value, got '" + p + "'");
    const auto key = p.substr(0, eq), value = p.substr(eq + 1);
    try {
      out[key] = nlohmann::json::parse(value);
    } catch (const nlohmann::json::exception&) {
      out[key] = value;
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> stage_documents(const std::string& directory) {
  std::vector<std::string> files;
  if (!fs::is_directory(directory)) return files;
  for (const auto& e : fs::directory_iterator(directory)) {
    const auto name = e.path().filename().string();
    if (e.is_regular_file() && name.size() == 11 && name.compare(5, 6, ".jsonl") == 0 &&
        std::all_of(name.begin(), name.begin() + 5, [](char c) { return c >= '0' && c <= '9'; })) {
      files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

bool stage_complete(const std::string& directory) { return fs::exists(fs::path(directory) / "stats.json"); }

void add_data_stage_commands(CLI::App* data, Runner& run) {
  auto norm_inputs = std::make_shared<std::vector<std::string>>();
  auto* norm = data->add_subcommand(
      "normalize", "Print each document's normalised text (what dedup compares: datatrove's simplify_text) as JSONL");
  norm->add_option("--input", *norm_inputs, "JSONL files or directories of them")->required();
  norm->callback([&run, norm_inputs]() {
    run = [norm_inputs]() {
      for (const auto& file : document_files(*norm_inputs)) {
        for_each_document(file, [](Document&& d) {
          std::cout << nlohmann::json{{"id", d.id}, {"text", simplify_text(d.text)}}.dump() << "\n";
        });
      }
      std::cout.flush();
      return 0;
    };
  });

  auto dc = std::make_shared<DecontaminateOptions>();
  auto* decon =
      data->add_subcommand("decontaminate", "Find documents that hold eval items (n-gram overlap); drop or cut them");
  decon->add_option("--input", dc->inputs, "JSONL files or directories of them")->required();
  decon->add_option("--output", dc->output, "output directory")->required();
  decon->add_option("--eval", dc->eval, "eval sets: files or directories (JSONL, JSON, MMLU CSV, tar archives)")
      ->capture_default_str();
  decon->add_option("--ngram", dc->index.n_gram, "words per n-gram")->capture_default_str();
  decon->add_option("--min-words", dc->index.min_words, "eval texts shorter than the n-gram but this long match whole")
      ->capture_default_str();
  decon->add_option("--action", dc->action, "drop the document, cut the matches out, or only report")
      ->capture_default_str();
  decon->add_option("--cut-margin", dc->cut_margin, "bytes cut on each side of a match")->capture_default_str();
  decon->add_option("--min-piece", dc->min_piece, "pieces left shorter than this are dropped")->capture_default_str();
  decon->add_option("--max-pieces", dc->max_pieces, "a document cut into more pieces is dropped")
      ->capture_default_str();
  add_skip_bad_records(decon, dc->skip_bad_records);
  auto dc_slice = std::make_shared<TaskSlice>();
  add_task_options(decon, *dc_slice);
  decon->callback([&run, dc, dc_slice]() { run = [dc, dc_slice]() { return run_decontaminate(*dc, *dc_slice); }; });

  auto im = std::make_shared<ImportOptions>();
  auto im_slice = std::make_shared<TaskSlice>();
  auto* import_cmd = data->add_subcommand(
      "import", "Source trees or text files into JSONL documents (one per file, or split at a separator)");
  import_cmd->add_option("--from", im->from, "files or directories (searched recursively)")->required();
  import_cmd->add_option("--output", im->output, "output directory")->required();
  import_cmd->add_option("--extensions", im->extensions, "only files ending so, e.g. .py (default: every file)");
  import_cmd->add_option("--separator", im->separator,
                         "split each file into documents at this text, e.g. '<|endoftext|>'");
  import_cmd->add_option("--source", im->source, "the documents' source (default: the name of each --from)");
  import_cmd->add_option("--files-per-shard", im->files_per_shard, "input files per output shard")
      ->capture_default_str();
  import_cmd->add_option("--max-bytes", im->max_bytes, "larger files are dropped as too_large (0: no limit)")
      ->capture_default_str();
  import_cmd
      ->add_option("--max-files", im->max_files, "at most this many files, evenly spread over those found (0: all)")
      ->capture_default_str();
  add_task_options(import_cmd, *im_slice);
  import_cmd->callback([&run, im, im_slice]() { run = [im, im_slice]() { return run_import(*im, *im_slice); }; });

  auto f = std::make_shared<FilterOptions>();
  auto* filter = data->add_subcommand("filter", "Drop documents by heuristic quality rules (gopher, c4, code)");
  filter
      ->add_option("--rules", f->rules,
                   "rule set: gopher or c4 (datatrove's GopherQualityFilter / C4QualityFilter defaults), code")
      ->capture_default_str();
  filter->add_option_function<std::vector<std::string>>(
      "--param", [f](const std::vector<std::string>& pairs) { f->params = parse_params(pairs); },
      "a rule parameter, key=value (JSON value), e.g. --param min_doc_words=20 or --param python=true");
  filter->add_option("--input", f->inputs, "JSONL files or directories of them")->required();
  filter->add_option("--output", f->output, "output directory")->required();
  add_skip_bad_records(filter, f->skip_bad_records);
  auto f_slice = std::make_shared<TaskSlice>();
  add_task_options(filter, *f_slice);
  filter->callback([&run, f, f_slice]() { run = [f, f_slice]() { return run_filter(*f, *f_slice); }; });

  auto o = std::make_shared<DedupOptions>();
  auto* cmd = data->add_subcommand("dedup", "Remove duplicate (exact) or near-duplicate (MinHash) documents");
  cmd->add_option("--method", o->method, "exact (normalised text) or minhash")->capture_default_str();
  cmd->add_option("--input", o->inputs, "JSONL files or directories of them")->required();
  cmd->add_option("--output", o->output, "output directory")->required();
  cmd->add_option("--ngrams", o->minhash.n_grams, "words per shingle")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--buckets", o->minhash.buckets, "LSH bands")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--hashes-per-bucket", o->minhash.hashes_per_bucket, "hashes per band")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seed", o->minhash.seed, "seed of the permutations")->capture_default_str();
  cmd->add_option("--memory-limit", o->memory_limit_mb,
                  "MiB of MinHash band records held while clustering; past it, sorted runs go to disk")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--permutations", o->permutations,
                  "JSON file {\"a\": [...], \"b\": [...]} with every hash's permutation (instead of --seed)");
  add_skip_bad_records(cmd, o->skip_bad_records);
  auto d_slice = std::make_shared<TaskSlice>();
  add_task_options(cmd, *d_slice);
  cmd->callback([&run, o, d_slice]() { run = [o, d_slice]() { return run_dedup(*o, *d_slice); }; });
}

}  // namespace phi::cli
