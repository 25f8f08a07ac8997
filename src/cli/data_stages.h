// The data pipeline's stages as functions, shared by their commands (cmd_data_stages.cpp) and by
// `phi data run` (cmd_data_run.cpp). Each reads documents from its inputs and writes the output
// directory described at the top of cmd_data_stages.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "phi/core/error.h"
#include "phi/data/decontamination.h"
#include "phi/data/dedup.h"

namespace phi::cli {

// Which input files this process takes (--tasks N --task-index I: every N-th from I), and how long
// the task that finishes a stage waits for the others' files (0: it stops and a rerun finishes).
struct TaskSlice {
  int64_t tasks = 1, index = 0;
  double wait_seconds = 0;
  bool mine(size_t file) const { return static_cast<int64_t>(file % static_cast<size_t>(tasks)) == index; }
  bool finisher() const { return index == 0; }
  void validate() const {
    if (tasks < 1 || index < 0 || index >= tasks) {
      throw Error("--task-index must be in [0, --tasks), got " + std::to_string(index) + " of " +
                  std::to_string(tasks));
    }
  }
};

struct DedupOptions {
  std::string method = "minhash";
  std::vector<std::string> inputs;
  std::string output;
  MinhashConfig minhash;
  std::string permutations;
};

struct FilterOptions {
  std::string rules = "gopher";
  std::vector<std::string> inputs;
  std::string output;
  nlohmann::json params = nlohmann::json::object();  // the rule set's parameters (JSON names)
};

struct DecontaminateOptions {
  std::vector<std::string> inputs;
  std::string output;
  std::vector<std::string> eval = {"../shared/data/eval"};
  DecontaminationOptions index;
  std::string action = "drop";
  int64_t cut_margin = 200, min_piece = 200, max_pieces = 10;
};

struct ImportOptions {
  std::vector<std::string> from;  // files or directories (searched recursively)
  std::string output;
  std::vector<std::string> extensions;  // e.g. ".py"; empty: every file
  std::string separator;                // split each file into documents at this text; "": one per file
  std::string source;                   // the documents' source; "": the name of the root given
  int64_t files_per_shard = 1000;
  int64_t max_bytes = 1 << 20;  // larger files are dropped ("too_large")
  int64_t max_files = 0;        // per directory given: at most this many, evenly spread over its sorted files (0: all)
};

/// Synthetic documents from a teacher behind an OpenAI-compatible endpoint (cmd_data_synth.cpp).
struct SynthOptions {
  std::string endpoint;  // ".../v1"
  std::string model = "phi";
  std::string api_key_env;  // the environment variable holding the API key ("": none)
  std::string system;       // a system message ("": none)
  std::vector<std::string> templates;  // with {topic}, {audience}, {style}
  std::vector<std::string> topics, audiences, styles;
  int64_t count = 0;
  uint64_t seed = 0;
  double temperature = 0.8;
  int64_t max_tokens = 512;
  int64_t concurrency = 4;
  int64_t retries = 6;
  double timeout_seconds = 120;
  int64_t documents_per_shard = 1000;
};
SynthOptions synth_options_from_json(const nlohmann::json& spec, const std::string& source, const std::string& path,
                                     nlohmann::json& resolved);
/// Prompt i: {prompt, template, topic, audience, style, seed}.
nlohmann::json synth_prompt(const SynthOptions& o, int64_t i);
int run_synth(const SynthOptions& o, const std::string& output, const TaskSlice& slice = {});

/// Source trees or text files into JSONL documents (`phi data import`).
int run_import(const ImportOptions& o, const TaskSlice& slice = {});
int run_filter(const FilterOptions& o, const TaskSlice& slice = {});
int run_dedup(const DedupOptions& o, const TaskSlice& slice = {});
int run_decontaminate(const DecontaminateOptions& o, const TaskSlice& slice = {});

/// A filter rule set's parameters read from JSON (unknown keys are errors naming `path`), resolved
/// with their defaults into `resolved`.
void check_filter_params(const std::string& rules, const nlohmann::json& params, const std::string& source,
                         const std::string& path, nlohmann::json& resolved);

/// The documents an earlier stage wrote (its NNNNN.jsonl files, in order).
std::vector<std::string> stage_documents(const std::string& directory);

/// Whether a stage's directory is complete (stats.json written).
bool stage_complete(const std::string& directory);

}  // namespace phi::cli
