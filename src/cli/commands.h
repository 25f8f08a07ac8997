// Each `phi` subcommand registers itself on the root app and sets `run` when it is selected.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

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
void add_train_command(CLI::App& root, Runner& run);
void add_eval_command(CLI::App& root, Runner& run);

}  // namespace phi::cli
