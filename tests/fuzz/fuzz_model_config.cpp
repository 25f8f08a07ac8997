// Fuzz target: model configs, the engine's own JSON format and Hugging Face config.json (phi,
// phi3, phi3small), then validation and the size arithmetic that follows a valid config.
#include "fuzz_util.h"
#include "phi/config/model_config.h"
#include "phi/models/family.h"
#include "phi/models/model_info.h"
#include "phi/models/transformer.h"

using namespace phi;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  for (int hf = 0; hf < 2; ++hf) {
    fuzz::expect_clean([&] {
      ModelConfig c = hf ? model_config_from_hf_json(j, "fuzz") : model_config_from_json(j, "fuzz");
      c.validate("fuzz");
      (void)model_info(c);
      (void)expected_parameters(c);
      (void)model_config_to_json(c);
      (void)model_config_to_hf_json(c, "float32");
    });
  }
  return 0;
}
