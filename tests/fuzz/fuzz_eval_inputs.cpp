// Fuzz target: what the evaluations read from users' files. The first byte picks the reader, the
// rest is the file: an MMLU CSV (as dev and test of one subject, each question rendered to its
// prompt), HumanEval / MBPP problem files, MT-bench questions and answers, a judge reply (the
// [[rating]] parse) and a judge prompt template (Python's str.format).
#include <map>

#include "fuzz_util.h"
#include "phi/eval/code_eval.h"
#include "phi/eval/mmlu.h"
#include "phi/eval/mt_bench.h"

using namespace phi;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  fuzz::expect_clean([&] {
    switch (data[0] % 6) {
      case 0: {
        fuzz::write_file("mmlu/dev/anatomy_dev.csv", body);
        fuzz::write_file("mmlu/test/anatomy_test.csv", body);
        const auto subject = load_mmlu_subject((fuzz::scratch() / "mmlu").string(), "anatomy");
        const int64_t shots = std::min<int64_t>(2, static_cast<int64_t>(subject.dev.size()));
        for (const auto& q : subject.test) (void)mmlu_context(subject, shots, q);
        break;
      }
      case 1:
        (void)load_humaneval(fuzz::write_file("problems.jsonl", body));
        break;
      case 2: {
        const auto tasks = load_mbpp(fuzz::write_file("mbpp.jsonl", body));
        for (const auto& t : mbpp_split(tasks, "test")) (void)mbpp_program(t, "pass");
        break;
      }
      case 3: {
        const auto path = fuzz::write_file("mt.jsonl", body);
        try {
          (void)load_mt_bench_questions(path);
        } catch (const Error&) {
        }
        (void)load_answer_turns(path);
        break;
      }
      case 4: {
        const auto rating = parse_judge_rating(std::string(body));
        if (!rating.is_number()) std::abort();
        break;
      }
      default:
        (void)python_format(std::string(body), {{"question", "q"}, {"answer", "a"}, {"ref_answer_1", "r"}});
    }
  });
  return 0;
}
