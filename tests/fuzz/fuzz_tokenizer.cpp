// Fuzz target: every tokenizer file kind. First byte picks the file the rest of the input becomes:
//   0 vocab.json + merges.txt (split at the first NUL), 1 tokenizer.json, 2 tokenizer.model
//   (SentencePiece protobuf), 3 *.tiktoken ranks, 4 added_tokens.json over the fixture's BPE,
//   5 tokenizer_config.json over the fixture's BPE.
// A tokenizer that loads then encodes a fixed text and the input itself (when valid UTF-8) and
// decodes the ids back.
#include "fuzz_util.h"
#include "tokenizer/utf8.h"

using namespace phi;

namespace {

void exercise(const std::string& dir, std::string_view input) {
  auto tokenizer = load_tokenizer(dir);
  const std::string fixed = "Hello <|user|> world\n\t  the end<|end|>";
  auto ids = tokenizer->encode(fixed);
  (void)tokenizer->decode(ids);
  if (utf8::find_invalid(input) == std::string_view::npos && input.size() < 4096) {
    EncodeOptions options;
    options.max_tokens = 64;
    try {
      ids = tokenizer->encode(input, options);
      (void)tokenizer->decode(ids, true);
    } catch (const Error&) {
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int kind = data[0] % 6;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::string dir = (fuzz::scratch() / ("kind" + std::to_string(kind))).string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string fixture = fuzz::tokenizer_fixture();
  switch (kind) {
    case 0: {
      const size_t split = rest.find('\0');
      fuzz::write_file("kind0/vocab.json", rest.substr(0, split));
      fuzz::write_file("kind0/merges.txt", split == std::string_view::npos ? "" : rest.substr(split + 1));
      break;
    }
    case 1: fuzz::write_file("kind1/tokenizer.json", rest); break;
    case 2: fuzz::write_file("kind2/tokenizer.model", rest); break;
    case 3: fuzz::write_file("kind3/ranks.tiktoken", rest); break;
    default:
      std::filesystem::copy_file(fixture + "/vocab.json", dir + "/vocab.json");
      std::filesystem::copy_file(fixture + "/merges.txt", dir + "/merges.txt");
      fuzz::write_file("kind" + std::to_string(kind) + (kind == 4 ? "/added_tokens.json" : "/tokenizer_config.json"), rest);
  }
  fuzz::expect_clean([&] { exercise(dir, rest); });
  return 0;
}
