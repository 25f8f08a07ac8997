// MT-bench as FastChat's llm_judge runs it (single-answer grading):
//   generate: the 80 two-turn questions through the model's own chat template, the second turn
//     seeing the first answer, FastChat's per-category temperatures, answers in its model-answer
//     JSONL format;
//   judge: for each answer and turn FastChat's judge prompt (single-v1 / single-math-v1 with the
//     reference answer for math, reasoning and coding; the multi-turn prompts for turn 2), sent to
//     any OpenAI-compatible endpoint; the [[rating]] parsed as FastChat does; judgments in its format;
//   show: per-turn, per-category and overall averages (judgments without a score left out, and
//     counted), the median over repeated judge runs.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace phi {

class ChatTemplate;
class Tokenizer;
class Transformer;

struct MtBenchQuestion {
  int64_t question_id = 0;
  std::string category;
  std::vector<std::string> turns;
};

struct JudgePrompt {
  std::string name, type, category, system_prompt, prompt_template, output_format;
};

/// question.jsonl (question_id, category, turns).
std::vector<MtBenchQuestion> load_mt_bench_questions(const std::string& path);
/// judge_prompts.jsonl, by name.
std::map<std::string, JudgePrompt> load_judge_prompts(const std::string& path);
/// A model-answer file (FastChat's format, reference answers too): the turns of choice 0 by question id.
std::map<int64_t, std::vector<std::string>> load_answer_turns(const std::string& path);

/// FastChat's gen_model_answer temperatures: writing / roleplay 0.7, stem / humanities 0.1,
/// extraction / math / coding / reasoning 0 (greedy), any other category 0.7.
double mt_bench_temperature(const std::string& category);
/// The categories judged against a reference answer (FastChat's NEED_REF_CATS).
bool mt_bench_needs_reference(const std::string& category);

/// Python's str.format with named fields ({name}, {{ and }}); an unknown field is an error naming it.
std::string python_format(const std::string& format, const std::map<std::string, std::string>& values);

/// FastChat's [[rating]] parse: the first "[[x]]", else the first "[x]" (x digits with an optional
/// fraction); the number as written (an integer, or a float when it has a point); -1 when none.
nlohmann::json parse_judge_rating(const std::string& judgment);

/// One judge call: FastChat's messages for one answer and turn.
struct JudgeRequest {
  int64_t question_id = 0;
  std::string category, model;
  int turn = 1;
  std::string prompt_name;  // the judge prompt used
  std::string system_prompt, user_prompt;
};

/// Every judge request for one model's answers, in FastChat's match order (turn 1 of the general
/// questions, turn 1 of the reference-graded ones, then their second turns). `references` may lack
/// questions outside the reference categories; a missing needed one is an error naming it.
std::vector<JudgeRequest> mt_bench_judge_requests(const std::vector<MtBenchQuestion>& questions,
                                                  const std::map<int64_t, std::vector<std::string>>& answers,
                                                  const std::map<std::string, JudgePrompt>& prompts,
                                                  const std::map<int64_t, std::vector<std::string>>& references,
                                                  const std::string& model);

/// FastChat's judgment line (question_id, model, judge [judge model, prompt name], user_prompt,
/// judgment, score, turn, tstamp) plus "run" (the judge run it belongs to).
nlohmann::json mt_bench_judgment(const JudgeRequest& request, const std::string& judge_model,
                                 const std::string& judgment, int run);

/// show_result's numbers per model: {"turn_1", "turn_2", "average", "categories": {c: avg},
/// "judgments", "no_score", "runs": [average per run], "median_of_runs"}; judgments with score -1
/// are left out of the averages and counted in no_score.
nlohmann::json mt_bench_summary(const std::vector<nlohmann::json>& judgments,
                                const std::vector<MtBenchQuestion>& questions);

struct MtBenchGenerateOptions {
  int64_t max_new_tokens = 1024;
  int64_t batch_size = 16;
  uint64_t seed = 42;
  std::string model_id;
  std::string cache_dir;     // finished questions (eval/report.h's EvalCache), for resumed runs
  std::string fingerprint;
};

/// Answers every question, both turns (turn 2 sees the stripped turn-1 answer), with `chat` (the
/// model's own template) and `end_ids`; FastChat's model-answer lines in question order.
std::vector<nlohmann::json> generate_mt_bench_answers(const Transformer& model, const Tokenizer& tokenizer,
                                                      const ChatTemplate& chat, const std::vector<int64_t>& end_ids,
                                                      const std::vector<MtBenchQuestion>& questions,
                                                      const MtBenchGenerateOptions& options);

struct MtBenchJudgeOptions {
  std::string url;          // an OpenAI-compatible base URL (".../v1") or its /chat/completions
  std::string judge_model;  // the model name sent, and written into the judgments
  std::string api_key;      // sent as a bearer token when not empty
  int runs = 1;             // judge everything this many times (show reports the median)
  int64_t parallel = 8;     // requests in flight
  int64_t max_tokens = 2048;
  double timeout_seconds = 300;
  int max_retries = 6;           // per request, on connection errors, 429 and 5xx
  double backoff_seconds = 1.0;  // doubled after each retry (at most 60 s)
  std::string cache_dir;         // finished judgments, so that a killed run asks nothing twice
  std::string fingerprint;
};

/// Sends every request (temperature 0, FastChat's system + user messages) `runs` times, `parallel`
/// at a time, with retries and exponential backoff; judgments in request order, run after run.
std::vector<nlohmann::json> judge_mt_bench(const std::vector<JudgeRequest>& requests, const MtBenchJudgeOptions& options);

}  // namespace phi
