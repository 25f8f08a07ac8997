// Fuzz target: JSONL inputs (the line reader with its line cap) and what is read from each line:
// chat messages and per-line sampling parameters, as `phi generate` and the data tools read them.
#include "fuzz_util.h"
#include "phi/core/text_io.h"
#include "phi/infer/chat_template.h"
#include "phi/infer/sampling.h"

using namespace phi;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = fuzz::write_file("input.jsonl", std::string_view(reinterpret_cast<const char*>(data), size));
  fuzz::expect_clean([&] {
    for_each_jsonl(
        path,
        [](const nlohmann::json& j, const std::string& where) {
          if (!j.is_object()) return true;
          try {
            if (j.contains("messages")) (void)parse_chat_messages(j["messages"], where);
          } catch (const Error&) {
          }
          nlohmann::json sampling = j;
          sampling.erase("messages");
          sampling.erase("prompt");
          sampling.erase("prompt_ids");
          sampling.erase("id");
          sampling_params_from_json(sampling, where).validate();
          return true;
        },
        4096);
  });
  return 0;
}
