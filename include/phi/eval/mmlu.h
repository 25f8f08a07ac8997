// MMLU (Hendrycks et al.) exactly as lm-evaluation-harness's default `mmlu` task runs it: per
// subject the line "The following are multiple choice questions (with answers) about <subject>.",
// the first k dev questions as worked examples, then the question, its choices lettered A-D and
// "Answer:"; the choice is the letter among " A" … " D" with the highest log-likelihood. Accuracy
// per subject, per category (lm-eval's four groups), and overall three ways: the micro average over
// questions (lm-eval's `mmlu` group), the macro average of the four categories and of the 57
// subjects. docs/eval.md has the protocol and how it matches lm-eval.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace phi {

class Tokenizer;
class Transformer;

struct MmluQuestion {
  std::string question;
  std::array<std::string, 4> choices;
  int answer = 0;  // 0-3
};

struct MmluSubject {
  std::string name;      // e.g. "abstract_algebra"
  std::string category;  // "stem", "humanities", "social_sciences" or "other"
  std::vector<MmluQuestion> dev, test;
};

/// The 57 subjects with their category, as lm-eval's mmlu groups have them.
const std::vector<std::pair<std::string, std::string>>& mmlu_subjects();

/// Reads one subject from `data_dir`: `dev/<subject>_dev.csv` and `test/<subject>_test.csv` (the
/// layout of hendrycks' data.tar, also under `data/`). Either CSV form: Hendrycks' original (no
/// header, answer A-D) or the reformatted one (header `question,choice0,...,choice3,answer`,
/// answer 0-3). Errors name the file and record.
MmluSubject load_mmlu_subject(const std::string& data_dir, const std::string& subject);

/// lm-eval's context for `question`: the subject line, the first `shots` dev questions answered
/// ("\nAnswer: B", examples separated by a blank line), the question ending in "Answer:".
std::string mmlu_context(const MmluSubject& subject, int64_t shots, const MmluQuestion& question);

struct MmluOptions {
  int64_t shots = 5;
  int64_t limit = 0;        // > 0: the first `limit` test questions of each subject
  int64_t batch_size = 16;  // questions per forward
  /// Finished subjects are kept here (eval/report.h's EvalCache) so that a killed run resumes;
  /// empty: no cache.
  std::string cache_dir;
  /// Stored in the cache's fingerprint with the settings above (a changed model is not resumed).
  std::string model_fingerprint;
};

struct MmluSample {
  std::string subject;
  int64_t index = 0;  // row in the subject's test CSV (0-based, header not counted)
  std::array<double, 4> loglikelihoods{};
  int pred = 0, gold = 0;
  int64_t shots = 0;           // examples in the prompt (fewer than asked when it did not fit)
  int64_t context_tokens = 0;  // tokens the model read
  bool truncated = false;      // even without examples the question was longer than the context
};

struct MmluRun {
  std::vector<MmluSample> samples;  // subjects in the order given, questions in file order
  double seconds = 0;               // this run's scoring (cached subjects not counted)
  int64_t questions_scored = 0;     // by this run (not from the cache)
  int64_t prefix_tokens = 0;        // computed once per subject
  int64_t forward_tokens = 0;       // computed per question
  int64_t questions_with_fewer_shots = 0;
  int64_t questions_truncated = 0;
};

/// Runs the subjects. A question whose prompt does not fit the model's context drops examples from
/// the front until it does (as Hendrycks' evaluation does; counted in the run), and one that does not fit
/// even alone keeps its last max_position_embeddings tokens (as lm-eval truncates). Progress with
/// rate and ETA on a terminal (core/progress.h).
MmluRun evaluate_mmlu(const Transformer& model, const Tokenizer& tokenizer, const std::vector<MmluSubject>& subjects,
                      const MmluOptions& options);

/// {"acc" (micro), "acc_macro_categories", "acc_macro_subjects", "questions", "categories": {name:
/// {"acc", "questions", "subjects"}}, "subjects": {name: {"acc", "acc_stderr", "questions",
/// "category"}}}.
nlohmann::json mmlu_metrics(const std::vector<MmluSample>& samples);

/// One samples-JSONL line: subject, index, loglikelihoods (A-D), pred, gold, shots, context_tokens,
/// truncated.
nlohmann::json mmlu_sample_to_json(const MmluSample& sample);
MmluSample mmlu_sample_from_json(const nlohmann::json& j);

}  // namespace phi
