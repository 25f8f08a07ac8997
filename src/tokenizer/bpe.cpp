#include "tokenizer/bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cstdint>
#include <pcre2.h>

#include <array>
#include <limits>
#include <optional>

#include "phi/core/error.h"
#include "tokenizer/kinds.h"
#include "tokenizer/utf8.h"

namespace phi {

// ---- PreTokenizer ----------------------------------------------------------------------------------

PreTokenizer::PreTokenizer(const std::string& pattern) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  auto* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                             PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    throw Error("cannot compile the pre-tokenizer pattern at offset " + std::to_string(error_offset) + ": " +
                reinterpret_cast<const char*>(message));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
  code_ = code;
}

PreTokenizer::~PreTokenizer() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

bool PreTokenizer::next_match(std::string_view text, size_t offset, size_t& begin, size_t& end) const {
  struct MatchData {
    pcre2_match_data* data = pcre2_match_data_create(4, nullptr);
    ~MatchData() { pcre2_match_data_free(data); }
  };
  thread_local MatchData match;
  int rc = pcre2_match(static_cast<pcre2_code*>(code_), reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(),
                       offset, PCRE2_NO_UTF_CHECK, match.data, nullptr);
  if (rc < 0) {
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    throw Error("pre-tokenizer match failed (PCRE2 error " + std::to_string(rc) + ")");
  }
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.data);
  begin = ovector[0];
  end = ovector[1];
  return true;
}

// ---- BytePairEncoder -------------------------------------------------------------------------------

BytePairEncoder::BytePairEncoder(std::unordered_map<std::string, int64_t> ranks,
                                 std::unordered_map<std::string, int64_t> ids, const std::string& where)
    : ranks_(std::move(ranks)), ids_(std::move(ids)) {
  // Ids index a table: a hostile file with one id of 100,000,000 must not allocate gigabytes.
  // Real vocabularies are dense; allow gaps up to the entry count plus 64k.
  const int64_t limit = static_cast<int64_t>(ids_.size()) + 65536;
  auto printable = [](const std::string& bytes) {
    std::string out;
    for (unsigned char c : bytes.substr(0, 40)) {
      if (c >= 0x20 && c < 0x7f && c != '"') out += static_cast<char>(c);
      else out += "\\x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
    }
    return out;
  };
  int64_t max_id = -1;
  for (const auto& item : ids_) {
    if (item.second < 0 || item.second >= limit) {
      throw Error("token \"" + printable(item.first) + "\" has id " + std::to_string(item.second) + ", outside [0, " +
                      std::to_string(limit) + ") for a vocabulary of " + std::to_string(ids_.size()) + " entries",
                  where, "the vocabulary file is damaged or not a tokenizer vocabulary");
    }
    max_id = std::max(max_id, item.second);
  }
  id_to_bytes_.resize(static_cast<size_t>(max_id + 1));
  std::vector<bool> taken(static_cast<size_t>(max_id + 1), false);
  for (const auto& item : ids_) {
    if (taken[static_cast<size_t>(item.second)]) {
      throw Error("token id " + std::to_string(item.second) + " is given to two tokens (one is \"" + printable(item.first) +
                      "\")", where, "the vocabulary file is damaged");
    }
    taken[static_cast<size_t>(item.second)] = true;
    id_to_bytes_[item.second] = item.first;
  }
}

const std::string& BytePairEncoder::bytes_of(int64_t id) const {
  static const std::string empty;
  return id >= 0 && id < size() ? id_to_bytes_[id] : empty;
}

std::optional<int64_t> BytePairEncoder::id_of(const std::string& bytes) const {
  auto it = ids_.find(bytes);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

void BytePairEncoder::encode_piece(std::string_view piece, std::vector<int64_t>& out) const {
  std::string key(piece);
  if (auto it = ids_.find(key); it != ids_.end()) {
    out.push_back(it->second);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (auto it = cache_.find(key); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  // parts[i] = start offset of part i; rank of merging part i with part i+1.
  std::vector<size_t> parts(piece.size() + 1);
  for (size_t i = 0; i <= piece.size(); ++i) parts[i] = i;
  auto rank_at = [&](size_t i) -> int64_t {
    if (i + 2 >= parts.size()) return kNone;
    auto it = ranks_.find(std::string(piece.substr(parts[i], parts[i + 2] - parts[i])));
    return it == ranks_.end() ? kNone : it->second;
  };
  std::vector<int64_t> ranks(parts.size());
  for (size_t i = 0; i < parts.size(); ++i) ranks[i] = rank_at(i);
  while (parts.size() > 2) {
    size_t best = 0;
    int64_t best_rank = kNone;
    for (size_t i = 0; i + 2 < parts.size(); ++i) {
      if (ranks[i] < best_rank) {
        best_rank = ranks[i];
        best = i;
      }
    }
    if (best_rank == kNone) break;
    parts.erase(parts.begin() + best + 1);
    ranks.erase(ranks.begin() + best + 1);
    ranks[best] = rank_at(best);
    if (best > 0) ranks[best - 1] = rank_at(best - 1);
  }
  std::vector<int64_t> ids;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    std::string bytes(piece.substr(parts[i], parts[i + 1] - parts[i]));
    auto it = ids_.find(bytes);
    if (it == ids_.end()) {
      throw Error("byte sequence of length " + std::to_string(bytes.size()) +
                  " has no token id (the vocabulary lacks single bytes?)");
    }
    ids.push_back(it->second);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() > 200000) cache_.clear();
  cache_.emplace(std::move(key), std::move(ids));
}

// ---- GPT-2 byte <-> unicode ------------------------------------------------------------------------

namespace {
struct ByteTables {
  std::array<uint32_t, 256> byte_to_cp{};
  std::unordered_map<uint32_t, unsigned char> cp_to_byte;
  ByteTables() {
    std::array<bool, 256> printable{};
    for (int b = '!'; b <= '~'; ++b) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      byte_to_cp[b] = printable[b] ? static_cast<uint32_t>(b) : next++;
      cp_to_byte[byte_to_cp[b]] = static_cast<unsigned char>(b);
    }
  }
};
const ByteTables& byte_tables() {
  static const ByteTables tables;
  return tables;
}
}  // namespace

std::string gpt2_bytes_to_unicode(std::string_view bytes) {
  std::string out;
  for (unsigned char b : bytes) utf8::append(out, byte_tables().byte_to_cp[b]);
  return out;
}

std::string gpt2_unicode_to_bytes(std::string_view token) {
  std::string out;
  size_t i = 0;
  while (i < token.size()) {
    const auto c = static_cast<unsigned char>(token[i]);
    uint32_t cp;
    size_t n;
    if (c < 0x80) { cp = c; n = 1; }
    else if ((c & 0xE0) == 0xC0) { cp = c & 0x1F; n = 2; }
    else if ((c & 0xF0) == 0xE0) { cp = c & 0x0F; n = 3; }
    else { cp = c & 0x07; n = 4; }
    for (size_t k = 1; k < n && i + k < token.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(token[i + k]) & 0x3F);
    auto it = byte_tables().cp_to_byte.find(cp);
    if (it == byte_tables().cp_to_byte.end()) {
      throw Error("vocabulary entry is not in GPT-2's byte-level alphabet");
    }
    out.push_back(static_cast<char>(it->second));
    i += n;
  }
  return out;
}

// ---- The tokenizer over a BytePairEncoder -----------------------------------------------------------

namespace {

class BpeTokenizer final : public Tokenizer {
 public:
  BpeTokenizer(TokenizerKind kind, std::unique_ptr<BytePairEncoder> bpe, const std::string& pattern)
      : kind_(kind), bpe_(std::move(bpe)), pre_(pattern) {}
  TokenizerKind kind() const override { return kind_; }

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
    if (kind_ != TokenizerKind::kByteLevelBpe) return bpe_->id_of(token);
    try {
      return bpe_->id_of(gpt2_unicode_to_bytes(token));
    } catch (const Error&) {
      return std::nullopt;  // not spelled in GPT-2's alphabet: no such token
    }
  }
  std::string base_id_to_token(int64_t id) const override {
    return kind_ == TokenizerKind::kByteLevelBpe ? gpt2_bytes_to_unicode(bpe_->bytes_of(id)) : bpe_->bytes_of(id);
  }
  int64_t base_vocab_size() const override { return bpe_->size(); }

 private:
  TokenizerKind kind_;
  std::unique_ptr<BytePairEncoder> bpe_;
  PreTokenizer pre_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_tokenizer(TokenizerKind kind, std::unique_ptr<BytePairEncoder> bpe,
                                              const std::string& pattern) {
  return std::make_unique<BpeTokenizer>(kind, std::move(bpe), pattern);
}

}  // namespace phi
