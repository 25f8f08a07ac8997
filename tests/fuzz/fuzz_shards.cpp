// Fuzz target: token shards (header, counts, document index, loss mask) and dataset manifests.
// First byte: 0 = a shard file, read through every accessor; 1 = a manifest.json.
#include "fuzz_util.h"
#include "phi/data/shards.h"

using namespace phi;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 0) {
    const auto path = fuzz::write_file("shard-00000.bin", bytes);
    fuzz::expect_clean([&] {
      auto shard = Shard::open(path);
      const int64_t n = std::min<int64_t>(shard->n_tokens(), 1 << 16);
      std::vector<int64_t> tokens(static_cast<size_t>(n));
      std::vector<uint8_t> mask(static_cast<size_t>(n));
      shard->read(0, n, tokens.data());
      shard->read_mask(0, n, mask.data());
      for (int64_t d = 0; d <= std::min<int64_t>(shard->n_documents(), 1 << 12); ++d) (void)shard->document_offset(d);
      if (n > 0) (void)shard->document_at(n - 1);
    });
  } else {
    fuzz::write_file("dataset/manifest.json", bytes);
    fuzz::expect_clean([&] { (void)read_manifest((fuzz::scratch() / "dataset").string()); });
  }
  return 0;
}
