// The data pipeline's stages as functions (one file per stage, cmd_data_<stage>.cpp), shared by their
// commands (registered in cmd_data_stages.cpp) and by `phi data run` (cmd_data_run.cpp). Each reads
// documents from its inputs and writes the output directory described at the top of cmd_data_stages.cpp.
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
  int64_t memory_limit_mb = 1024;  // band records held in memory while clustering; past it, sorted runs on disk
  bool skip_bad_records = false;   // count and skip input lines that are not documents
};

struct FilterOptions {
  std::string rules = "gopher";
  std::vector<std::string> inputs;
  std::string output;
  nlohmann::json params = nlohmann::json::object();  // the rule set's parameters (JSON names)
  bool skip_bad_records = false;                     // count and skip input lines that are not documents
};

struct DecontaminateOptions {
  std::vector<std::string> inputs;
  std::string output;
  std::vector<std::string> eval = {"../shared/data/eval"};
  DecontaminationOptions index;
  std::string action = "drop";
  int64_t cut_margin = 200, min_piece = 200, max_pieces = 10;
  bool skip_bad_records = false;  // count and skip input lines that are not documents
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

/// A teacher model behind an OpenAI-compatible endpoint, as synth and annotate ask it (the same
/// recipe keys in both).
struct TeacherSettings {
  std::string endpoint;  // ".../v1"
  std::string model = "phi";
  std::string api_key_env;  // the environment variable holding the API key ("": none)
  std::string system;       // a system message ("": none)
  double temperature = 0.8;
  int64_t max_tokens = 512;
  int64_t concurrency = 4;
  int64_t retries = 6;
  double timeout_seconds = 120;
};

/// Synthetic documents from a teacher behind an OpenAI-compatible endpoint (cmd_data_synth.cpp).
struct SynthOptions {
  TeacherSettings teacher;
  std::vector<std::string> templates;  // with {topic}, {audience}, {style}
  std::vector<std::string> topics, audiences, styles;
  int64_t count = 0;
  uint64_t seed = 0;
  int64_t documents_per_shard = 1000;
};
SynthOptions synth_options_from_json(const nlohmann::json& spec, const std::string& source, const std::string& path,
                                     nlohmann::json& resolved);
/// Prompt i: {prompt, template, topic, audience, style, seed}.
nlohmann::json synth_prompt(const SynthOptions& o, int64_t i);
int run_synth(const SynthOptions& o, const std::string& output, const TaskSlice& slice = {});

/// Ratings of documents by a teacher behind an OpenAI-compatible endpoint (phi-1's annotation of
/// educational value): metadata.annotation {score, reply} and metadata.label (score >=
/// label_threshold), the classifier's training labels (cmd_data_synth.cpp).
struct AnnotateOptions {
  TeacherSettings teacher = rating_teacher();
  std::string prompt =
      "Here is a document from a training corpus for a language model that learns to code.\n\n{text}\n\n"
      "Determine its educational value for a student whose goal is to learn basic coding concepts. "
      "Answer with one integer from 0 (none) to 10 (excellent textbook quality) and nothing else.";
  int64_t max_chars = 6000;  // the document is cut to this many bytes in the prompt
  int64_t every = 1;         // rate one document in `every` of each file (a sample for labels)
  double score_min = 0, score_max = 10;
  double label_threshold = 5;

  static TeacherSettings rating_teacher() {  // greedy, a few tokens: the reply is one number
    TeacherSettings t;
    t.temperature = 0;
    t.max_tokens = 8;
    return t;
  }
};
AnnotateOptions annotate_options_from_json(const nlohmann::json& spec, const std::string& source,
                                           const std::string& path, nlohmann::json& resolved);
int run_annotate(const AnnotateOptions& o, const std::vector<std::string>& inputs, const std::string& output,
                 const TaskSlice& slice = {});

/// The phi-1 quality classifier (cmd_data_classify.cpp).
struct ClassifierTrainOptions {
  std::string model;                // feature model (a phi checkpoint)
  std::vector<std::string> labels;  // labelled JSONL
  std::string output;
  int64_t max_tokens = 512;
  double l2 = 1.0;
  int64_t batch_size = 8;
  std::string device = "cpu";
  std::string features_out;  // optional: features + labels safetensors
};
int train_classifier(const ClassifierTrainOptions& o);

struct ClassifyOptions {
  std::string classifier;  // directory written by train_classifier
  std::vector<std::string> inputs;
  std::string output;
  double threshold = 0.5;
  int64_t batch_size = 8;
  std::string device = "cpu";
  bool skip_bad_records = false;  // count and skip input lines that are not documents
};
int run_classify(const ClassifyOptions& o, const TaskSlice& slice = {});

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
