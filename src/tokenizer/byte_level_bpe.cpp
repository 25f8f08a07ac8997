// GPT-2 byte-level BPE (phi-1 / 1.5 / 2 use it with CodeGen's whitespace tokens as added tokens).
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "tokenizer/bpe.h"
#include "tokenizer/kinds.h"

namespace phi {

const char* const kGpt2Pattern = R"('(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s)";

namespace {

class ByteLevelBpeTokenizer final : public Tokenizer {
 public:
  ByteLevelBpeTokenizer(std::unique_ptr<BytePairEncoder> bpe, const char* pattern)
      : bpe_(std::move(bpe)), pre_(pattern) {}
  TokenizerKind kind() const override { return TokenizerKind::kByteLevelBpe; }
  int64_t vocab_size() const override {
    int64_t n = bpe_->size();
    for (const auto& t : added_tokens()) n = std::max(n, t.id + 1);
    return n;
  }

 protected:
  void encode_ordinary(std::string_view text, std::vector<int64_t>& out) const override {
    pre_.split(text, [&](size_t begin, size_t length) { bpe_->encode_piece(text.substr(begin, length), out); });
  }
  std::string decode_ordinary(const std::vector<int64_t>& ids) const override {
    std::string bytes;
    for (auto id : ids) bytes += bpe_->bytes_of(id);
    return bytes;
  }
  std::optional<int64_t> base_token_to_id(const std::string& token) const override {
    try {
      return bpe_->id_of(gpt2_unicode_to_bytes(token));
    } catch (const Error&) {
      return std::nullopt;
    }
  }
  std::string base_id_to_token(int64_t id) const override { return gpt2_bytes_to_unicode(bpe_->bytes_of(id)); }
  int64_t base_vocab_size() const override { return bpe_->size(); }

 private:
  std::unique_ptr<BytePairEncoder> bpe_;
  PreTokenizer pre_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_level_bpe(const std::string& vocab_path, const std::string& merges_path) {
  auto vocab = read_json_file(vocab_path);
  if (!vocab.is_object()) throw Error("vocabulary must be a JSON object of token -> id", vocab_path);
  std::unordered_map<std::string, int64_t> ids;
  for (const auto& item : vocab.items()) {
    if (!item.value().is_number_integer()) {
      throw Error("vocabulary entry $." + item.key() + " is not an integer id", vocab_path);
    }
    ids[gpt2_unicode_to_bytes(item.key())] = item.value().get<int64_t>();
  }
  std::ifstream in(merges_path);
  if (!in) throw Error("cannot open merges file", merges_path);
  std::unordered_map<std::string, int64_t> ranks;
  std::string line;
  int64_t rank = 0;
  int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    auto space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      throw Error("malformed merge on line " + std::to_string(line_number) + " (expected \"a b\")", merges_path);
    }
    auto merged = gpt2_unicode_to_bytes(line.substr(0, space)) + gpt2_unicode_to_bytes(line.substr(space + 1));
    if (!ids.count(merged)) {
      throw Error("merge on line " + std::to_string(line_number) + " produces a token missing from the vocabulary",
                  merges_path);
    }
    ranks.emplace(merged, rank++);
  }
  for (int b = 0; b < 256; ++b) {
    if (!ids.count(std::string(1, static_cast<char>(b)))) {
      throw Error("vocabulary lacks the byte 0x" + std::to_string(b) + " (not a byte-level BPE vocabulary?)",
                  vocab_path);
    }
  }
  return std::make_unique<ByteLevelBpeTokenizer>(std::make_unique<BytePairEncoder>(std::move(ranks), std::move(ids)),
                                                 kGpt2Pattern);
}

}  // namespace phi
