// The shared part of every tokenizer: added/special tokens are matched as a whole (leftmost,
// longest) before the model's own splitting, BOS/EOS, and decoding around them.
#include "phi/tokenizer/tokenizer.h"

#include <cstdint>
#include <algorithm>

#include "phi/core/error.h"
#include "tokenizer/utf8.h"

namespace phi {

std::string to_string(TokenizerKind kind) {
  switch (kind) {
    case TokenizerKind::kByteLevelBpe: return "byte-level BPE";
    case TokenizerKind::kSentencePiece: return "SentencePiece";
    case TokenizerKind::kTiktoken: return "tiktoken";
  }
  return "?";
}

bool spelled_like_control_token(std::string_view content) {
  return content.size() >= 4 && content.substr(0, 2) == "<|" && content.substr(content.size() - 2) == "|>";
}

namespace {
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
}  // namespace

void Tokenizer::add_token(const AddedToken& token) {
  if (token.content.empty()) throw Error("added token " + std::to_string(token.id) + " has empty content");
  // Added ids extend the vocabulary a little (Phi-3: 32000-32063); one far away would size every
  // table (embedding checks, shard vocabularies) by it.
  const int64_t limit = base_vocab_size() + (int64_t{1} << 20);
  if (token.id < 0 || token.id >= limit) {
    throw Error("added token \"" + token.content.substr(0, 64) + "\" has id " + std::to_string(token.id) +
                    ", outside [0, " + std::to_string(limit) + ")",
                "", "added token ids follow the base vocabulary of " + std::to_string(base_vocab_size()) + " ids");
  }
  for (const auto& existing : added_) {
    if (existing.id == token.id && existing.content != token.content) {
      throw Error("added tokens \"" + existing.content.substr(0, 64) + "\" and \"" + token.content.substr(0, 64) +
                  "\" have the same id " + std::to_string(token.id));
    }
  }
  added_first_byte_[static_cast<unsigned char>(token.content[0])] = true;
  longest_token_bytes_.store(0);
  for (auto& existing : added_) {
    if (existing.content == token.content) {
      existing = token;
      return;
    }
  }
  added_.push_back(token);
}

const AddedToken* Tokenizer::added_by_id(int64_t id) const {
  for (const auto& t : added_) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

int64_t Tokenizer::vocab_size() const {
  int64_t n = base_vocab_size();
  for (const auto& t : added_) n = std::max(n, t.id + 1);
  return n;
}

bool Tokenizer::is_special(int64_t id) const {
  const auto* t = added_by_id(id);
  return t != nullptr && t->special;
}

std::optional<int64_t> Tokenizer::token_to_id(const std::string& token) const {
  for (const auto& t : added_) {
    if (t.content == token) return t.id;
  }
  return base_token_to_id(token);
}

std::string Tokenizer::id_to_token(int64_t id) const {
  if (const auto* t = added_by_id(id)) return t->content;
  if (id < 0 || id >= base_vocab_size()) {
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary");
  }
  return base_id_to_token(id);
}

size_t Tokenizer::longest_token_bytes() const {
  size_t longest = longest_token_bytes_.load();
  if (longest > 0) return longest;
  longest = 1;
  const int64_t n = base_vocab_size();
  for (int64_t id = 0; id < n; ++id) longest = std::max(longest, base_id_to_token(id).size());
  for (const auto& t : added_) longest = std::max(longest, t.content.size());
  longest_token_bytes_.store(longest);
  return longest;
}

EncodeOptions Tokenizer::prompt_options(int64_t max_tokens) const {
  EncodeOptions options;
  options.add_bos = add_bos_token_;
  options.max_tokens = max_tokens;
  return options;
}

std::vector<int64_t> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  if (options.max_tokens > 0) {
    const double most_bytes = static_cast<double>(options.max_tokens) * static_cast<double>(longest_token_bytes());
    if (static_cast<double>(text.size()) > most_bytes) {
      throw Error("the text of " + std::to_string(text.size()) + " bytes is longer than " +
                      std::to_string(options.max_tokens) + " tokens can be (no token of this tokenizer covers more than " +
                      std::to_string(longest_token_bytes()) + " bytes)",
                  "", "shorten it, or ask for truncation where the command offers it");
    }
  }
  utf8::require_valid(text, "text to encode");
  std::vector<int64_t> out;
  if (options.add_bos && bos_id_) out.push_back(*bos_id_);
  size_t start = 0;    // start of the pending ordinary segment
  size_t pos = 0;
  // Whether a barrier lies strictly inside [a, b).
  auto crosses_barrier = [&](size_t a, size_t b) {
    if (options.special_barriers == nullptr) return false;
    auto it = std::upper_bound(options.special_barriers->begin(), options.special_barriers->end(), a);
    return it != options.special_barriers->end() && *it < b;
  };
  while (pos < text.size()) {
    const AddedToken* best = nullptr;
    if (!added_first_byte_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    for (const auto& t : added_) {
      if (t.special && !options.allow_special) continue;
      if (text.compare(pos, t.content.size(), t.content) == 0 &&
          (best == nullptr || t.content.size() > best->content.size()) &&
          !crosses_barrier(pos, pos + t.content.size())) {
        best = &t;
      }
    }
    if (best == nullptr) {
      ++pos;
      continue;
    }
    size_t segment_end = pos;
    if (best->lstrip) {
      while (segment_end > start && is_space(text[segment_end - 1])) --segment_end;
    }
    if (segment_end > start) encode_ordinary(text.substr(start, segment_end - start), out);
    out.push_back(best->id);
    pos += best->content.size();
    if (best->rstrip) {
      while (pos < text.size() && is_space(text[pos])) ++pos;
    }
    start = pos;
  }
  if (start < text.size()) encode_ordinary(text.substr(start), out);
  if (options.add_eos && eos_id_) out.push_back(*eos_id_);
  return out;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  std::string bytes;
  std::vector<int64_t> run;
  auto flush = [&] {
    if (!run.empty()) bytes += decode_ordinary(run);
    run.clear();
  };
  for (auto id : ids) {
    if (const auto* t = added_by_id(id)) {
      flush();
      if (!(skip_special && t->special)) bytes += t->content;
      continue;
    }
    if (id < 0 || id >= base_vocab_size()) {
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                  std::to_string(vocab_size()) + ")");
    }
    run.push_back(id);
  }
  flush();
  return utf8::sanitize(bytes);
}

// ---- StreamDecoder ---------------------------------------------------------------------------------
// The prefix/read-offset scheme of transformers' and TGI's streamers: decode a short window of ids
// twice (with and without the newest) and emit the difference once it is complete UTF-8, so that
// SentencePiece's context-dependent spaces and byte-fallback pieces come out right.

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string StreamDecoder::push(int64_t id) {
  // Ids of a padded embedding that the tokenizer does not know decode to nothing (as in transformers).
  if (id < 0 || id >= tokenizer_.vocab_size()) return "";
  ids_.push_back(id);
  std::vector<int64_t> prefix(ids_.begin() + prefix_offset_, ids_.begin() + read_offset_);
  std::vector<int64_t> window(ids_.begin() + prefix_offset_, ids_.end());
  std::string prefix_text = tokenizer_.decode(prefix, skip_special_);
  std::string window_text = tokenizer_.decode(window, skip_special_);
  // decode() replaces incomplete UTF-8 by U+FFFD; a trailing replacement means "wait".
  static const std::string kReplacement = "\xEF\xBF\xBD";
  const bool incomplete = window_text.size() >= 3 &&
                          window_text.compare(window_text.size() - 3, 3, kReplacement) == 0;
  if (window_text.size() > prefix_text.size() && !incomplete &&
      window_text.compare(0, prefix_text.size(), prefix_text) == 0) {
    std::string out = window_text.substr(prefix_text.size());
    prefix_offset_ = read_offset_;
    read_offset_ = ids_.size();
    return out;
  }
  if (ids_.size() - read_offset_ > 8) {  // never hold more than a few tokens
    std::string out = window_text.size() > prefix_text.size() ? window_text.substr(prefix_text.size()) : "";
    prefix_offset_ = read_offset_;
    read_offset_ = ids_.size();
    return out;
  }
  return "";
}

std::string StreamDecoder::flush() {
  std::vector<int64_t> prefix(ids_.begin() + prefix_offset_, ids_.begin() + read_offset_);
  std::vector<int64_t> window(ids_.begin() + prefix_offset_, ids_.end());
  std::string prefix_text = tokenizer_.decode(prefix, skip_special_);
  std::string window_text = tokenizer_.decode(window, skip_special_);
  prefix_offset_ = read_offset_ = ids_.size();
  return window_text.size() > prefix_text.size() ? window_text.substr(prefix_text.size()) : "";
}

}  // namespace phi
