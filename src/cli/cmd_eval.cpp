// phi eval lego --model DIR --input heldout.jsonl [--limit N] [--json]: the LEGO evaluation of
// phi/eval/lego.h, printed as a table or JSON.
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "phi/eval/lego.h"
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
}

}  // namespace phi::cli
