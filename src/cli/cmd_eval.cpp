// phi eval lego --model DIR --input heldout.jsonl: accuracy of every variable's resolved sign by
// position in the chain, teacher-forced (the model sees the prompt and the gold answers before the
// one it predicts), like the LEGO paper's per-position accuracy. An answer item that restates its
// clause before the value ("b=-a=+1") counts only when both its signs are predicted right.
#include <algorithm>
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
  std::vector<int64_t> correct, total;
  int64_t examples_all_correct = 0, examples = 0;
  for_each_jsonl(o.input, [&](const nlohmann::json& j, const std::string& where) {
    if (!j.is_object() || !j.contains("prompt") || !j.contains("answer")) {
      throw Error("line is not a LEGO example (prompt, answer)", where);
    }
    const std::string text = j["prompt"].get<std::string>() + j["answer"].get<std::string>();
    const size_t answer_start = j["prompt"].get<std::string>().size();
    // Character positions of the answer's signs ("x=+1": 2 characters after the name; an item that
    // restates its clause, "x=-w=+1", has two) and the item (chain position) each belongs to.
    std::vector<size_t> sign_positions, sign_items;
    size_t item = 0;
    for (size_t p = answer_start; p + 2 < text.size(); ++p) {
      if (text[p] == ',') ++item;
      if (text[p + 1] == '=' && (text[p + 2] == '+' || text[p + 2] == '-')) {
        sign_positions.push_back(p + 2);
        sign_items.push_back(item);
      }
    }
    std::vector<bool> item_right(item + 1, true);
    auto ids = tokenizer->encode(text);
    if (static_cast<int64_t>(ids.size()) > model.config().max_position_embeddings) {
      throw Error("example is longer than the model's context", where);
    }
    auto logprobs = at::log_softmax(model.forward(at::tensor(ids, at::kLong).unsqueeze(0))[0], -1);
    bool all = true;
    for (size_t k = 0; k < sign_positions.size(); ++k) {
      // Score "+" against "-" whatever the tokenizer does with the sign (a character of its own, or
      // merged with "=" by a BPE): the two prefixes ending in either sign share a token prefix and
      // differ in their tails; compare the tails' log-probabilities under the teacher-forced prefix.
      const size_t p = sign_positions[k];
      const bool gold_plus = text[p] == '+';
      const auto gold = tokenizer->encode(text.substr(0, p + 1));
      const auto other = tokenizer->encode(text.substr(0, p) + (gold_plus ? "-" : "+"));
      size_t common = 0;
      while (common < gold.size() && common < other.size() && gold[common] == other[common]) ++common;
      if (common == 0 || common == gold.size() || common == other.size()) {
        throw Error("cannot tell the two signs apart in the tokenization", where);
      }
      // The whole text's logits serve when its tokens start with this prefix (true unless a merge
      // crosses the sign); otherwise run the candidate itself.
      const bool prefix_of_text = gold.size() <= ids.size() && std::equal(gold.begin(), gold.begin() + common, ids.begin());
      auto tail_logprob = [&](const std::vector<int64_t>& seq) {
        if (prefix_of_text && seq.size() == common + 1) return logprobs[common - 1][seq[common]].item<double>();
        auto lp = at::log_softmax(model.forward(at::tensor(seq, at::kLong).unsqueeze(0))[0], -1);
        double sum = 0;
        for (size_t i = common; i < seq.size(); ++i) sum += lp[i - 1][seq[i]].item<double>();
        return sum;
      };
      const bool right = tail_logprob(gold) > tail_logprob(other);
      item_right[sign_items[k]] = item_right[sign_items[k]] && right;
      all = all && right;
    }
    // A chain position counts as resolved when every sign of its item is.
    for (size_t i = 0; i < item_right.size() && !sign_positions.empty(); ++i) {
      if (correct.size() <= i) {
        correct.push_back(0);
        total.push_back(0);
      }
      correct[i] += item_right[i];
      total[i] += 1;
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
