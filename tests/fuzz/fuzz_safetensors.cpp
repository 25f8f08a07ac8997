// Fuzz target: the safetensors reader (header, offsets, dtypes, data region) and the sharded
// checkpoint index (model.safetensors.index.json). First byte: 0 = a .safetensors file, 1 = an
// index JSON naming a valid shard beside it.
#include <ATen/ATen.h>

#include "fuzz_util.h"
#include "phi/io/safetensors.h"

using namespace phi;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 0) {
    const auto path = fuzz::write_file("model.safetensors", bytes);
    fuzz::expect_clean([&] {
      auto file = SafetensorsFile::open(path);
      for (const auto& info : file->tensors()) {
        auto t = file->tensor(info.name);
        if (t.numel() > 0 && t.numel() < (1 << 20)) (void)t.to(at::kDouble).sum().item<double>();
      }
    });
  } else {
    static const bool shard_written = [] {
      std::filesystem::create_directories(fuzz::scratch() / "index");
      save_safetensors((fuzz::scratch() / "index" / "model-00001-of-00001.safetensors").string(),
                       {{"a", at::ones({2, 3})}, {"b", at::zeros({4}, at::kLong)}});
      return true;
    }();
    (void)shard_written;
    fuzz::write_file("index/model.safetensors.index.json", bytes);
    fuzz::expect_clean([&] {
      auto store = TensorStore::open_directory((fuzz::scratch() / "index").string());
      for (const auto& name : store.names()) (void)store.tensor(name).sum();
    });
  }
  return 0;
}
