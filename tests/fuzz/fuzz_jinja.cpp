// Fuzz target: the Jinja chat-template parser and renderer, with small render budgets so that a
// run spends its time on parsing paths rather than on one long render.
#include "fuzz_util.h"
#include "phi/infer/jinja.h"

using namespace phi;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string source(reinterpret_cast<const char*>(data), size);
  jinja::Limits limits;
  limits.max_steps = 100000;
  limits.max_loop_iterations = 10000;
  limits.max_output_bytes = 1 << 20;
  limits.max_value_bytes = 1 << 20;
  static const nlohmann::json context = {
      {"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi <|end|>"}},
                    {{"role", "assistant"}, {"content", "Hello."}}}},
      {"add_generation_prompt", true}, {"bos_token", "<s>"}, {"eos_token", "</s>"}};
  fuzz::expect_clean([&] {
    jinja::Template t(source, "fuzz", limits);
    (void)t.render(context);
  });
  return 0;
}
