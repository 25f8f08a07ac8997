// Each `phi` subcommand registers itself on the root app and sets `run` when it is selected.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/data_stages.h"

namespace phi::cli {

using Runner = std::function<int()>;

void add_info_command(CLI::App& root, Runner& run);
void add_forward_command(CLI::App& root, Runner& run);
void add_convert_command(CLI::App& root, Runner& run);
void add_init_command(CLI::App& root, Runner& run);
void add_tokenizer_command(CLI::App& root, Runner& run);
void add_generate_command(CLI::App& root, Runner& run);
void add_chat_command(CLI::App& root, Runner& run);
void add_serve_command(CLI::App& root, Runner& run);
void add_data_command(CLI::App& root, Runner& run);
/// The pipeline stages under the data command: import, filter, dedup, decontaminate
/// (cmd_data_stages.cpp).
void add_data_stage_commands(CLI::App* data, Runner& run);
/// `phi data synth teacher` and `phi data annotate` (cmd_data_synth.cpp).
void add_data_annotate_command(CLI::App* data, Runner& run);
void add_synth_teacher_command(CLI::App* synth, Runner& run);
/// `phi data classify train|apply` (cmd_data_classify.cpp).
void add_data_classify_command(CLI::App* data, Runner& run);
/// `phi data run --recipe R.json` (cmd_data_run.cpp).
void add_data_run_command(CLI::App* data, Runner& run);
void add_train_command(CLI::App& root, Runner& run);
void add_eval_command(CLI::App& root, Runner& run);
void add_finetune_command(CLI::App& root, Runner& run);
/// `phi launch` and `phi dist check`.
void add_launch_command(CLI::App& root, Runner& run);

/// `phi data tokenize`: text / prompt+answer / conversation files into a token-shard dataset.
struct TokenizeJob {
  std::string tokenizer;  // a tokenizer or model directory
  std::vector<std::string> inputs;
  std::string output;
  int64_t shard_tokens = 64 << 20;
  bool no_eos = false;
  int64_t threads = 0;                     // 0: every core (at::get_num_threads)
  bool per_file = false;                   // resumable: shards and a completion marker per input file
  TaskSlice slice;                         // with tasks > 1 (implies per_file): this task's input files
  std::string chat_template;               // "" = the model directory's own, else phi3
  bool special_tokens_in_content = false;  // opt-in: special-token text in messages becomes control ids
};
int tokenize_dataset(const TokenizeJob& job);

}  // namespace phi::cli
