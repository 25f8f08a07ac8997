// phi eval lego --model DIR --input heldout.jsonl: accuracy of every variable's resolved sign by
// position in the chain, teacher-forced (the model sees the prompt and the gold answers before the
// one it predicts), like the LEGO paper's per-position accuracy.
#include <fstream>
#include <iostream>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "phi/core/error.h"
#include "phi/core/text_io.h"
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
  at::NoGradGuard no_grad;
  auto model = load_model(o.model);
  auto tokenizer = load_tokenizer(o.model);
  const auto plus = tokenizer->encode("+");
  const auto minus = tokenizer->encode("-");
  if (plus.size() != 1 || minus.size() != 1) throw Error("the tokenizer must encode \"+\" and \"-\" as single tokens", o.model);
  std::vector<int64_t> correct, total;
  int64_t examples_all_correct = 0, examples = 0;
  for_each_jsonl(o.input, [&](const nlohmann::json& j, const std::string& where) {
    if (!j.is_object() || !j.contains("prompt") || !j.contains("answer")) {
      throw Error("line is not a LEGO example (prompt, answer)", where);
    }
    const std::string text = j["prompt"].get<std::string>() + j["answer"].get<std::string>();
    const size_t answer_start = j["prompt"].get<std::string>().size();
    // Character positions of each answer's sign ("x=+1": the sign is 2 characters after the name).
    std::vector<size_t> sign_positions;
    for (size_t p = answer_start; p + 2 < text.size(); ++p) {
      if (text[p + 1] == '=' && (text[p + 2] == '+' || text[p + 2] == '-')) sign_positions.push_back(p + 2);
    }
    // Token boundaries: encode the prefix up to each sign to find the sign token's index.
    auto ids = tokenizer->encode(text);
    if (static_cast<int64_t>(ids.size()) > model.config().max_position_embeddings) {
      throw Error("example is longer than the model's context", where);
    }
    auto logits = model.forward(at::tensor(ids, at::kLong).unsqueeze(0))[0];
    bool all = true;
    for (size_t k = 0; k < sign_positions.size(); ++k) {
      const auto prefix = tokenizer->encode(text.substr(0, sign_positions[k]));
      const int64_t at_index = static_cast<int64_t>(prefix.size()) - 1;  // predicts the next token
      const float p_plus = logits[at_index][plus[0]].item<float>();
      const float p_minus = logits[at_index][minus[0]].item<float>();
      const bool predicted_plus = p_plus > p_minus;
      const bool gold_plus = text[sign_positions[k]] == '+';
      if (correct.size() <= k) {
        correct.push_back(0);
        total.push_back(0);
      }
      correct[k] += predicted_plus == gold_plus;
      total[k] += 1;
      all = all && predicted_plus == gold_plus;
    }
    examples_all_correct += all;
    ++examples;
    return o.limit == 0 || examples < o.limit;
  });
  if (examples == 0) throw Error("no LEGO examples in the input", o.input);
  nlohmann::json report = {{"examples", examples}, {"by_position", nlohmann::json::array()}};
  int64_t c = 0, t = 0;
  for (size_t k = 0; k < correct.size(); ++k) {
    report["by_position"].push_back({{"position", k + 1}, {"accuracy", static_cast<double>(correct[k]) / total[k]}});
    c += correct[k];
    t += total[k];
  }
  report["accuracy"] = static_cast<double>(c) / t;
  report["all_correct"] = static_cast<double>(examples_all_correct) / examples;
  if (o.json) {
    std::cout << report.dump(2) << std::endl;
  } else {
    std::cout << "| position | accuracy |\n|---|---|\n";
    for (const auto& row : report["by_position"]) {
      std::cout << fmt::format("| {} | {:.3f} |\n", row["position"].get<int64_t>(), row["accuracy"].get<double>());
    }
    std::cout << fmt::format("| all | {:.3f} |\n", report["accuracy"].get<double>());
    std::cout << fmt::format("examples fully resolved: {:.3f} of {}\n", report["all_correct"].get<double>(), examples);
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
}

}  // namespace phi::cli
