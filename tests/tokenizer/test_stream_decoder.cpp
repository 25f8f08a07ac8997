// Streaming detokenization never emits a broken UTF-8 character, and the pieces add up to the
// full decode, for every tokenizer kind (needs ../shared/data; skipped without it).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "phi/tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;

fs::path shared_tokenizers() {
  const char* env = std::getenv("PHI_SHARED_DATA");
  return fs::path(env ? env : PHI_DEFAULT_SHARED_DATA) / "tokenizers";
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

class StreamDecoderTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StreamDecoderTest, ChunksAreWholeCharactersAndAddUpToTheText) {
  const auto root = shared_tokenizers();
  if (!fs::exists(root)) GTEST_SKIP() << "shared data not found at " << root << "; set PHI_SHARED_DATA";
  phi::TokenizerFiles files;
  if (GetParam() == "bpe") {
    files.vocab = (root / "gpt2" / "encoder.json").string();
    files.merges = (root / "gpt2" / "vocab.bpe").string();
  } else if (GetParam() == "spm") {
    files.sentencepiece = (root / "llama2" / "tokenizer.model").string();
  } else {
    files.tiktoken = (root / "tiktoken" / "cl100k_base.tiktoken").string();
  }
  auto tokenizer = phi::load_tokenizer(files);
  const std::string text = "Hello 世界! Ünïcødé 🙂👍🏽 — emoji, CJK 漢字かな, Кириллица.\n\tend";
  auto ids = tokenizer->encode(text);
  phi::StreamDecoder stream(*tokenizer);
  std::string joined;
  for (auto id : ids) {
    auto chunk = stream.push(id);
    EXPECT_TRUE(valid_utf8(chunk)) << "broken UTF-8 chunk after id " << id;
    EXPECT_EQ(chunk.find("\xEF\xBF\xBD"), std::string::npos) << "replacement character emitted";
    joined += chunk;
  }
  joined += stream.flush();
  EXPECT_EQ(joined, tokenizer->decode(ids));
  EXPECT_EQ(joined, text);
}

INSTANTIATE_TEST_SUITE_P(Kinds, StreamDecoderTest, ::testing::Values("bpe", "spm", "tiktoken"));

}  // namespace
