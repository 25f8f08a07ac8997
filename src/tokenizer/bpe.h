// The byte-pair-encoding core shared by GPT-2 style and tiktoken tokenizers: a PCRE2
// pre-tokenizer and rank-ordered merging of byte strings (tiktoken's algorithm: repeatedly merge the
// adjacent pair whose concatenation has the lowest rank).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace phi {

/// A compiled PCRE2 pattern (UTF + Unicode properties, JIT) that splits text into pieces.
class PreTokenizer {
 public:
  explicit PreTokenizer(const std::string& pattern);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;
  /// Calls `piece(begin, length)` for each match, in order, and for each stretch of text between
  /// matches that no alternative matched (its own piece, as tokenizers' Split "Isolated" does; the
  /// built-in patterns match every character, so they have none). An empty match is a boundary
  /// too, and the search moves on a whole character. `text` must be valid UTF-8.
  template <typename F>
  void split(std::string_view text, F&& piece) const {
    size_t offset = 0, emitted = 0;
    while (offset < text.size()) {
      size_t begin = 0, end = 0;
      if (!next_match(text, offset, begin, end)) break;
      if (begin > emitted) piece(emitted, begin - emitted);
      if (end > begin) piece(begin, end - begin);
      emitted = std::max(emitted, end);
      offset = end > offset ? end : next_character(text, offset);
    }
    if (emitted < text.size()) piece(emitted, text.size() - emitted);
  }

 private:
  bool next_match(std::string_view text, size_t offset, size_t& begin, size_t& end) const;
  /// The offset of the UTF-8 character after the one at `offset`.
  static size_t next_character(std::string_view text, size_t offset) {
    ++offset;
    while (offset < text.size() && (static_cast<unsigned char>(text[offset]) & 0xC0) == 0x80) ++offset;
    return offset;
  }
  void* code_ = nullptr;  // pcre2_code*
};

/// Byte strings with ranks: merge priority and id. For tiktoken files both are the rank; for GPT-2
/// files the merge rank comes from merges.txt and the id from vocab.json.
class BytePairEncoder {
 public:
  /// `ranks`: token bytes -> merge rank (lower merges first); `ids`: token bytes -> id.
  /// `ids` must be non-negative, distinct and not far beyond their count (a table is sized by the
  /// largest); errors name the entry and `where` (the file).
  BytePairEncoder(std::unordered_map<std::string, int64_t> ranks, std::unordered_map<std::string, int64_t> ids,
                  const std::string& where = "");
  /// Appends the ids of one pre-tokenized piece.
  void encode_piece(std::string_view piece, std::vector<int64_t>& out) const;
  /// The bytes of token `id` (empty if unknown).
  const std::string& bytes_of(int64_t id) const;
  std::optional<int64_t> id_of(const std::string& bytes) const;
  int64_t size() const { return static_cast<int64_t>(id_to_bytes_.size()); }

 private:
  std::unordered_map<std::string, int64_t> ranks_;
  std::unordered_map<std::string, int64_t> ids_;
  std::vector<std::string> id_to_bytes_;
  // Piece -> ids cache (pieces repeat a lot in natural text).
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

/// GPT-2's reversible byte <-> printable-unicode mapping used by vocab.json and merges.txt.
std::string gpt2_unicode_to_bytes(std::string_view token);
std::string gpt2_bytes_to_unicode(std::string_view bytes);

}  // namespace phi
