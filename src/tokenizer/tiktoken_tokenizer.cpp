// tiktoken ranks files (cl100k_base for Phi-3-small): the rank of a token is both its merge priority
// and its id.
#include <fstream>

#include "phi/core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/kinds.h"

namespace phi {

const char* const kCl100kPattern =
    R"('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s)";

namespace {

std::string base64_decode(const std::string& text, const std::string& path, int64_t line) {
  static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    auto pos = alphabet.find(c);
    if (pos == std::string::npos) {
      throw Error("malformed base64 on line " + std::to_string(line), path);
    }
    buffer = (buffer << 6) | static_cast<uint32_t>(pos);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return out;
}

class TiktokenTokenizer final : public Tokenizer {
 public:
  explicit TiktokenTokenizer(std::unique_ptr<BytePairEncoder> bpe) : bpe_(std::move(bpe)), pre_(kCl100kPattern) {}
  TokenizerKind kind() const override { return TokenizerKind::kTiktoken; }
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
  std::optional<int64_t> base_token_to_id(const std::string& token) const override { return bpe_->id_of(token); }
  std::string base_id_to_token(int64_t id) const override { return bpe_->bytes_of(id); }
  int64_t base_vocab_size() const override { return bpe_->size(); }

 private:
  std::unique_ptr<BytePairEncoder> bpe_;
  PreTokenizer pre_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_tiktoken(const std::string& ranks_path) {
  std::ifstream in(ranks_path);
  if (!in) throw Error("cannot open tiktoken ranks file", ranks_path);
  std::unordered_map<std::string, int64_t> ranks;
  std::string line;
  int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.empty()) continue;
    auto space = line.find(' ');
    if (space == std::string::npos) {
      throw Error("malformed line " + std::to_string(line_number) + " (expected \"base64 rank\")", ranks_path);
    }
    int64_t rank = 0;
    try {
      rank = std::stoll(line.substr(space + 1));
    } catch (const std::exception&) {
      throw Error("malformed rank on line " + std::to_string(line_number), ranks_path);
    }
    ranks.emplace(base64_decode(line.substr(0, space), ranks_path, line_number), rank);
  }
  auto ids = ranks;
  return std::make_unique<TiktokenTokenizer>(std::make_unique<BytePairEncoder>(std::move(ranks), std::move(ids)));
}

}  // namespace phi
