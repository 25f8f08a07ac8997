// Fuzz target: the data pipeline's readers and text functions. The first byte picks what the rest
// is: 0 a document's text (the gopher, c4 and code filters, the Python check, normalisation,
// n-gram words), 1 a JSONL documents file, 2 an eval file (JSONL), 3 an eval file (MMLU CSV), 4 a
// tar archive of eval files. Eval files are indexed and then searched with their own bytes.
#include "fuzz_util.h"
#include "phi/core/text_io.h"
#include "phi/data/code_filters.h"
#include "phi/data/decontamination.h"
#include "phi/data/documents.h"
#include "phi/data/quality_filters.h"
#include "phi/data/text_norm.h"

using namespace phi;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 5) {
    case 0:
      fuzz::expect_clean([&] { gopher_quality(bytes); });
      fuzz::expect_clean([&] {
        std::string text = bytes;
        if (c4_quality(text).empty() && text.size() > bytes.size()) std::abort();  // kept lines only shrink
      });
      fuzz::expect_clean([&] {
        CodeFilterOptions o;
        o.python = true;
        code_quality(bytes, o);
      });
      fuzz::expect_clean([&] { python_syntax_error(bytes); });
      fuzz::expect_clean([&] { simplify_text(bytes); });
      fuzz::expect_clean([&] {
        for (const auto& w : normalized_words(bytes)) {
          if (w.begin >= w.end || w.end > bytes.size()) std::abort();
        }
      });
      break;
    case 1: {
      const auto path = fuzz::write_file("docs.jsonl", bytes);
      fuzz::expect_clean([&] { for_each_document(path, [](Document&&) {}); });
      break;
    }
    case 2:
    case 3:
    case 4: {
      const char* name = data[0] % 5 == 2 ? "eval/items.jsonl" : data[0] % 5 == 3 ? "eval/test.csv" : "eval/items.tar";
      std::filesystem::remove_all(fuzz::scratch() / "eval");
      fuzz::write_file(name, bytes);
      fuzz::expect_clean([&] {
        EvalIndex index;
        index.add({(fuzz::scratch() / "eval").string()});
        for (const auto& m : index.find(bytes)) {
          if (m.begin >= m.end || m.end > bytes.size() || m.item < 0 || static_cast<size_t>(m.item) >= index.items()) {
            std::abort();
          }
        }
      });
      break;
    }
  }
  return 0;
}
