// `phi`: the command-line entry point. It only wires options to library calls; every error is a
// phi::Error (or a torch error) caught here, printed on stderr, and turned into exit code 1.
#include <iostream>

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>
#include <spdlog/cfg/env.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/dist/env.h"
#include "phi/kernels/cuda_kernels.h"

namespace {

// Under torchrun, the failure also goes to TORCHELASTIC_ERROR_FILE so that torchrun names this
// rank's error as the root cause.
void record_failure(const std::string& message) {
  try {
    phi::write_torchelastic_error(phi::read_dist_env(), message);
  } catch (const std::exception&) {
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("phi");
  spdlog::set_default_logger(logger);
  spdlog::cfg::load_env_levels();  // SPDLOG_LEVEL=debug

  CLI::App app{"phi-engine: train, fine-tune, serve and evaluate the phi family of language models"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  phi::cli::Runner run;
  phi::cli::add_info_command(app, run);
  phi::cli::add_forward_command(app, run);
  phi::cli::add_convert_command(app, run);
  phi::cli::add_init_command(app, run);
  phi::cli::add_tokenizer_command(app, run);
  phi::cli::add_generate_command(app, run);
  phi::cli::add_chat_command(app, run);
  phi::cli::add_serve_command(app, run);
  phi::cli::add_data_command(app, run);
  phi::cli::add_train_command(app, run);
  phi::cli::add_eval_command(app, run);
  phi::cli::add_finetune_command(app, run);
  phi::cli::add_launch_command(app, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  spdlog::set_level(spdlog::level::from_str(log_level));
  try {
    // The kernel switches (PHI_ATTENTION, PHI_KERNELS, PHI_FLASH_KERNEL) are read here so that a
    // misspelt value fails every command, not only the ones that reach a CUDA kernel.
    phi::attention_backend();
    phi::elementwise_backend();
    phi::flash_kernel();
    return run ? run() : 1;
  } catch (const phi::Error& e) {
    std::cerr << "error: " << e.what() << std::endl;
    record_failure(e.what());
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << std::endl;
    record_failure(e.what_without_backtrace());
  } catch (const nlohmann::json::exception& e) {
    // A JSON value of an unexpected type that no reader above named (they name file and path).
    std::cerr << "error: unexpected JSON value: " << phi::json_error_text(e)
              << "\n  hint: check the JSON inputs of this command (files, --messages, --set values)" << std::endl;
  } catch (const std::bad_alloc&) {
    std::cerr << "error: out of memory\n  hint: an input or a setting asks for more memory than this machine has "
                 "(check sizes in the config and the length of the inputs)"
              << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    record_failure(e.what());
  }
  return 1;
}
