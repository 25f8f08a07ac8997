// Decontamination: n-gram overlap between training documents and evaluation sets, as the GPT-3
// report and the phi reports describe it (13-grams of normalised words by default), with
// lm-evaluation-harness's normalisation (its decontamination Janitor): words are the text split on
// whitespace (Python's str.split), ASCII letters lower-cased and ASCII punctuation deleted, so case,
// whitespace and punctuation edits do not hide an eval item. One difference, on purpose: a word
// that was only punctuation is skipped rather than kept empty, so a dash between two words does not
// hide the n-grams across it (docs/data.md).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace phi {

struct DecontaminationOptions {
  int64_t n_gram = 13;
  /// An eval text with fewer words than n_gram but at least this many is matched whole; shorter
  /// ones are too common to mean contamination and are skipped (counted in the summary).
  int64_t min_words = 13;
};

/// One normalised word of a text: its byte range and the hash of its lower-cased form.
struct NormalizedWord {
  size_t begin = 0, end = 0;
  uint64_t hash = 0;
};

/// The normalised words of `text` (UTF-8), in order; punctuation-only words are left out.
std::vector<NormalizedWord> normalized_words(const std::string& text);

/// A run of a document's words that matches one eval item: byte range [begin, end) and how many
/// of the item's n-grams fall in it.
struct EvalMatch {
  int32_t item = 0;
  size_t begin = 0, end = 0;
  int64_t n_grams = 0;
};

/// The n-grams of every eval item, and lookups of documents against them.
class EvalIndex {
 public:
  explicit EvalIndex(DecontaminationOptions options = {}) : options_(options) {}

  /// Adds the eval sets under `paths` (files or directories, searched recursively): JSONL (.jsonl,
  /// .jsonl.gz, .jsonl.zst) and JSON arrays (.json) whose records hold the texts in known fields
  /// (HumanEval prompt + canonical_solution, MBPP text + code or prompt + code, MT-bench turns and
  /// reference, generic question / text); MMLU-style CSV files (question, four choices, answer);
  /// tar archives of them (.tar, .tar.gz). An item is named "<file>:<task_id | question_id | id |
  /// row>". A file of none of these kinds is skipped; a malformed one is an error naming it.
  void add(const std::vector<std::string>& paths);

  /// Every match of `text` against the index, merged per item into runs, sorted by begin.
  std::vector<EvalMatch> find(const std::string& text) const;

  const std::string& item_name(int32_t item) const { return items_[static_cast<size_t>(item)]; }
  size_t items() const { return items_.size(); }
  size_t n_grams() const { return grams_.size(); }
  /// Items, texts, n-grams and skipped short texts per eval file.
  const nlohmann::json& summary() const { return summary_; }

 private:
  void add_text(int32_t item, const std::string& text, nlohmann::json& file_summary);
  int32_t new_item(const std::string& name);
  void add_json_record(const nlohmann::json& record, const std::string& file, const std::string& fallback_id,
                       nlohmann::json& file_summary);
  void add_csv(const std::string& text, const std::string& file, const std::string& where,
               nlohmann::json& file_summary);
  void add_file_bytes(const std::string& name, const std::string& bytes, const std::string& where);

  DecontaminationOptions options_;
  std::vector<std::string> items_;
  std::unordered_map<uint64_t, int32_t> grams_;  // n-gram hash (seeded by its length) -> first item
  std::vector<int64_t> lengths_;                 // the n-gram lengths present, ascending
  nlohmann::json summary_ = nlohmann::json::object();
};

}  // namespace phi
