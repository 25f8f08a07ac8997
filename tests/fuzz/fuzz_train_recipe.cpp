// Fuzz target: training recipes (every section, unknown keys, ranges) and their round trip
// through the resolved-config writer.
#include "fuzz_util.h"
#include "phi/train/trainer.h"

using namespace phi;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  fuzz::expect_clean([&] {
    auto config = train_config_from_json(j, "fuzz");
    auto again = train_config_from_json(train_config_to_json(config), "fuzz (round trip)");
    if (again.training.max_steps != config.training.max_steps || again.data.sources.size() != config.data.sources.size()) {
      std::abort();
    }
  });
  return 0;
}
