// LEGO evaluation: accuracy of every variable's resolved sign by position in the chain,
// teacher-forced (the model sees the prompt and the gold answers before the one it predicts), like
// the LEGO paper's per-position accuracy. An answer item that restates its clause before the value
// ("b=-a=+1") counts only when both its signs are predicted right. Examples come from
// `phi data synth lego` (phi/data/lego.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace phi {

class Transformer;
class Tokenizer;

struct LegoPositionAccuracy {
  int64_t position = 0;  // 1-based place in the chain
  int64_t correct = 0, total = 0;
  double accuracy() const { return total > 0 ? static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
};

struct LegoReport {
  int64_t examples = 0;
  int64_t examples_all_correct = 0;
  std::vector<LegoPositionAccuracy> by_position;
  double accuracy() const;     // over every chain position of every example
  double all_correct() const;  // share of examples with every sign right
};

/// Scores the examples of a JSONL file (`prompt`, `answer` per line; at most `limit`, 0: all).
/// Errors name the file and line (a line that is not an example, one longer than the context).
LegoReport evaluate_lego(const Transformer& model, const Tokenizer& tokenizer, const std::string& jsonl_path,
                         int64_t limit = 0);

/// {"examples", "by_position": [{"position", "accuracy"}], "accuracy", "all_correct"}.
nlohmann::json lego_report_to_json(const LegoReport& report);

}  // namespace phi
