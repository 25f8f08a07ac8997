// tiktoken ranks files (cl100k_base for Phi-3-small): the rank of a token is both its merge priority
// and its id.
#include <cstdint>
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
  return make_bpe_tokenizer(TokenizerKind::kTiktoken,
                            std::make_unique<BytePairEncoder>(std::move(ranks), std::move(ids), ranks_path), kCl100kPattern);
}

}  // namespace phi
