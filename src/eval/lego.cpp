#include "phi/eval/lego.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include "phi/core/error.h"
#include "phi/core/text_io.h"
#include "phi/models/transformer.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi {

namespace {

// Character positions of the answer's signs ("x=+1": 2 characters after the name; an item that
// restates its clause, "x=-w=+1", has two) and the item (chain position) each belongs to.
struct Signs {
  std::vector<size_t> positions, items;
  size_t n_items = 0;
};

Signs answer_signs(const std::string& text, size_t answer_start) {
  Signs s;
  size_t item = 0;
  for (size_t p = answer_start; p + 2 < text.size(); ++p) {
    if (text[p] == ',') ++item;
    if (text[p + 1] == '=' && (text[p + 2] == '+' || text[p + 2] == '-')) {
      s.positions.push_back(p + 2);
      s.items.push_back(item);
    }
  }
  s.n_items = item + 1;
  return s;
}

// Whether the model prefers the gold sign at character p of `text`. "+" is scored against "-"
// whatever the tokenizer does with the sign (a character of its own, or merged with "=" by a BPE):
// the two prefixes ending in either sign share a token prefix and differ in their tails; the tails'
// log-probabilities under the teacher-forced prefix are compared. `logprobs` are the whole text's.
bool gold_sign_preferred(const Transformer& model, const Tokenizer& tokenizer, const std::string& text, size_t p,
                         const std::vector<int64_t>& ids, const at::Tensor& logprobs, const std::string& where) {
  const bool gold_plus = text[p] == '+';
  const auto gold = tokenizer.encode(text.substr(0, p + 1));
  const auto other = tokenizer.encode(text.substr(0, p) + (gold_plus ? "-" : "+"));
  size_t common = 0;
  while (common < gold.size() && common < other.size() && gold[common] == other[common]) ++common;
  if (common == 0 || common == gold.size() || common == other.size()) {
    throw Error("cannot tell the two signs apart in the tokenization", where);
  }
  // The whole text's logits serve when its tokens start with this prefix (true unless a merge
  // crosses the sign); otherwise the candidate itself runs.
  const bool prefix_of_text = gold.size() <= ids.size() && std::equal(gold.begin(), gold.begin() + common, ids.begin());
  auto tail_logprob = [&](const std::vector<int64_t>& seq) {
    if (prefix_of_text && seq.size() == common + 1) return logprobs[common - 1][seq[common]].item<double>();
    auto lp = at::log_softmax(model.forward(at::tensor(seq, at::kLong).unsqueeze(0))[0], -1);
    double sum = 0;
    for (size_t i = common; i < seq.size(); ++i) sum += lp[i - 1][seq[i]].item<double>();
    return sum;
  };
  return tail_logprob(gold) > tail_logprob(other);
}

}  // namespace

double LegoReport::accuracy() const {
  int64_t c = 0, t = 0;
  for (const auto& p : by_position) c += p.correct, t += p.total;
  return t > 0 ? static_cast<double>(c) / static_cast<double>(t) : 0.0;
}

double LegoReport::all_correct() const {
  return examples > 0 ? static_cast<double>(examples_all_correct) / static_cast<double>(examples) : 0.0;
}

LegoReport evaluate_lego(const Transformer& model, const Tokenizer& tokenizer, const std::string& jsonl_path,
                         int64_t limit) {
  at::NoGradGuard no_grad;
  LegoReport report;
  for_each_jsonl(jsonl_path, [&](const nlohmann::json& j, const std::string& where) {
    if (!j.is_object() || !j.contains("prompt") || !j.contains("answer") || !j["prompt"].is_string() ||
        !j["answer"].is_string()) {
      throw Error("line is not a LEGO example (prompt, answer)", where);
    }
    const std::string prompt = j["prompt"].get<std::string>();
    const std::string text = prompt + j["answer"].get<std::string>();
    const auto signs = answer_signs(text, prompt.size());
    auto ids = tokenizer.encode(text);
    if (static_cast<int64_t>(ids.size()) > model.config().max_position_embeddings) {
      throw Error("example is longer than the model's context", where);
    }
    auto logprobs = at::log_softmax(model.forward(at::tensor(ids, at::kLong).unsqueeze(0))[0], -1);
    std::vector<bool> item_right(signs.n_items, true);
    bool all = true;
    for (size_t k = 0; k < signs.positions.size(); ++k) {
      const bool right = gold_sign_preferred(model, tokenizer, text, signs.positions[k], ids, logprobs, where);
      item_right[signs.items[k]] = item_right[signs.items[k]] && right;
      all = all && right;
    }
    // A chain position counts as resolved when every sign of its item is.
    for (size_t i = 0; i < item_right.size() && !signs.positions.empty(); ++i) {
      if (report.by_position.size() <= i) report.by_position.push_back({static_cast<int64_t>(i) + 1, 0, 0});
      report.by_position[i].correct += item_right[i];
      report.by_position[i].total += 1;
    }
    report.examples_all_correct += all;
    ++report.examples;
    return limit == 0 || report.examples < limit;
  });
  if (report.examples == 0) throw Error("no LEGO examples in the input", jsonl_path);
  return report;
}

nlohmann::json lego_report_to_json(const LegoReport& report) {
  nlohmann::json j = {{"examples", report.examples}, {"by_position", nlohmann::json::array()}};
  for (const auto& p : report.by_position) j["by_position"].push_back({{"position", p.position}, {"accuracy", p.accuracy()}});
  j["accuracy"] = report.accuracy();
  j["all_correct"] = report.all_correct();
  return j;
}

}  // namespace phi
