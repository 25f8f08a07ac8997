#include "tokenizer/sentencepiece_bpe.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <queue>

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

#include "phi/core/error.h"

namespace phi {

namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // "▁", U+2581

std::atomic<uint64_t> next_serial{1};  // SentencePieceBpe::serial_

// A protobuf message's fields (wire format): calls `field(number, wire_type, varint, bytes)`.
template <typename F>
void for_each_field(std::string_view message, const char* what, F&& field) {
  size_t i = 0;
  auto varint = [&]() -> uint64_t {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (i >= message.size()) throw Error(std::string("truncated varint in the SentencePiece model's ") + what);
      const auto b = static_cast<unsigned char>(message[i++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return v;
    }
    throw Error(std::string("overlong varint in the SentencePiece model's ") + what);
  };
  while (i < message.size()) {
    const uint64_t key = varint();
    const auto number = static_cast<int>(key >> 3);
    const auto wire = static_cast<int>(key & 7);
    uint64_t value = 0;
    std::string_view bytes;
    if (wire == 0) {
      value = varint();
    } else if (wire == 1 || wire == 5) {
      const size_t n = wire == 1 ? 8 : 4;
      if (message.size() - i < n) throw Error(std::string("truncated field in the SentencePiece model's ") + what);
      bytes = message.substr(i, n);
      i += n;
    } else if (wire == 2) {
      const uint64_t n = varint();
      if (n > message.size() - i) throw Error(std::string("truncated field in the SentencePiece model's ") + what);
      bytes = message.substr(i, static_cast<size_t>(n));
      i += static_cast<size_t>(n);
    } else {
      throw Error("unknown protobuf wire type " + std::to_string(wire) + " in the SentencePiece model's " + what);
    }
    field(number, wire, value, bytes);
  }
}

// sentencepiece's OneCharLen: the length of the UTF-8 character a lead byte starts.
inline size_t char_length(unsigned char lead) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[lead >> 4]; }

}  // namespace

SentencePieceModel parse_sentencepiece_model(std::string_view model_proto) {
  SentencePieceModel model;
  auto& spec = model.spec;
  for_each_field(model_proto, "ModelProto", [&](int number, int wire, uint64_t, std::string_view bytes) {
    if (number == 1 && wire == 2) {  // pieces
      SentencePieceEntry e;
      for_each_field(bytes, "piece", [&](int n, int w, uint64_t v, std::string_view b) {
        if (n == 1 && w == 2) e.piece = std::string(b);
        if (n == 2 && w == 5) std::memcpy(&e.score, b.data(), sizeof e.score);
        if (n == 3 && w == 0) {
          static const SentencePieceEntry::Type types[] = {
              SentencePieceEntry::kNormal,  SentencePieceEntry::kNormal,      SentencePieceEntry::kUnknown,
              SentencePieceEntry::kControl, SentencePieceEntry::kUserDefined, SentencePieceEntry::kUnused,
              SentencePieceEntry::kByte};
          if (v >= 1 && v <= 6) {
            e.type = types[v];
          } else {
            throw Error("piece \"" + e.piece + "\" has unknown type " + std::to_string(v));
          }
        }
      });
      model.pieces.push_back(std::move(e));
    } else if (number == 2 && wire == 2) {  // trainer_spec
      for_each_field(bytes, "trainer_spec", [&](int n, int w, uint64_t v, std::string_view) {
        if (w != 0) return;
        if (n == 3) spec.model_type = static_cast<int>(v);
        if (n == 24) spec.treat_whitespace_as_suffix = v != 0;
        if (n == 35) spec.byte_fallback = v != 0;
      });
    } else if (number == 3 && wire == 2) {  // normalizer_spec
      for_each_field(bytes, "normalizer_spec", [&](int n, int w, uint64_t v, std::string_view b) {
        if (n == 1 && w == 2) spec.normalizer_name = std::string(b);
        if (n == 2 && w == 2) spec.has_charsmap = !b.empty();
        if (w != 0) return;
        if (n == 3) spec.add_dummy_prefix = v != 0;
        if (n == 4) spec.remove_extra_whitespaces = v != 0;
        if (n == 5) spec.escape_whitespaces = v != 0;
      });
    }
  });
  return model;
}

std::unique_ptr<SentencePieceBpe> SentencePieceBpe::create(SentencePieceModel model, std::string* why) {
  const auto& spec = model.spec;
  auto& pieces = model.pieces;
  auto refuse = [&](const std::string& reason) -> std::unique_ptr<SentencePieceBpe> {
    if (why != nullptr) *why = reason;
    return nullptr;
  };
  if (spec.model_type != 2) return refuse("not a BPE model");
  if (spec.has_charsmap || spec.remove_extra_whitespaces || !spec.escape_whitespaces ||
      spec.treat_whitespace_as_suffix) {
    return refuse("normalisation other than the identity rule set with escaped whitespace");
  }
  if (!spec.byte_fallback) return refuse("no byte fallback");
  std::unique_ptr<SentencePieceBpe> bpe(new SentencePieceBpe());
  bpe->serial_ = next_serial.fetch_add(1);
  bpe->add_dummy_prefix_ = spec.add_dummy_prefix;
  bpe->entries_ = std::move(pieces);
  bpe->byte_ids_.fill(-1);
  std::vector<int32_t> normal;
  for (size_t id = 0; id < bpe->entries_.size(); ++id) {
    const auto& e = bpe->entries_[id];
    if (e.type == SentencePieceEntry::kUserDefined || e.type == SentencePieceEntry::kUnused) {
      return refuse("user-defined or unused pieces");
    }
    if (e.type == SentencePieceEntry::kNormal) {
      normal.push_back(static_cast<int32_t>(id));
      // Words are cut before a "▁" that follows another character: no piece may hold such a "▁".
      for (size_t p = e.piece.find(kSpace, 1); p != std::string::npos; p = e.piece.find(kSpace, p + 1)) {
        if (p < kSpace.size() || e.piece.compare(p - kSpace.size(), kSpace.size(), kSpace) != 0) {
          return refuse("a piece holds \"▁\" after another character");
        }
      }
    } else if (e.type == SentencePieceEntry::kByte) {
      unsigned value = 0;
      if (e.piece.size() == 6 && std::sscanf(e.piece.c_str(), "<0x%2X>", &value) == 1 && value < 256) {
        bpe->byte_ids_[value] = static_cast<int32_t>(id);
      }
    } else if (e.type == SentencePieceEntry::kControl && !e.piece.empty() && e.piece.size() <= 4 &&
               char_length(static_cast<unsigned char>(e.piece[0])) == e.piece.size()) {
      return refuse("a control piece that is one character");  // libsentencepiece maps such text to it
    }
  }
  for (int b = 0; b < 256; ++b) {
    if (bpe->byte_ids_[static_cast<size_t>(b)] < 0) return refuse("byte pieces missing");
  }
  size_t slots = 16;
  while (slots < 2 * normal.size()) slots *= 2;
  bpe->pieces_.assign(slots, PieceSlot());
  for (const auto id : normal) {
    const auto& piece = bpe->entries_[static_cast<size_t>(id)].piece;
    if (bpe->find(piece) >= 0) continue;  // a duplicate piece: the first id wins, as in sentencepiece
    const uint64_t hash = XXH3_64bits(piece.data(), piece.size()) | 1;
    size_t i = hash & (slots - 1);
    while (bpe->pieces_[i].hash != 0) i = (i + 1) & (slots - 1);
    bpe->pieces_[i] = {hash, id};
  }
  return bpe;
}

int32_t SentencePieceBpe::find(std::string_view piece) const {
  const uint64_t hash = XXH3_64bits(piece.data(), piece.size()) | 1;
  const size_t mask = pieces_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const auto& slot = pieces_[i];
    if (slot.hash == 0) return -1;
    if (slot.hash == hash && entries_[static_cast<size_t>(slot.id)].piece == piece) return slot.id;
  }
}

void SentencePieceBpe::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t begin, length, prev, next;
  };
  struct Pair {
    float score;
    int32_t left, right, length;
  };
  struct Lower {  // the highest score on top; equal scores: the leftmost
    bool operator()(const Pair& a, const Pair& b) const {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
  };
  std::vector<Symbol> symbols;
  for (size_t i = 0; i < word.size();) {
    const size_t n = std::min(char_length(static_cast<unsigned char>(word[i])), word.size() - i);
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back(
        {static_cast<int32_t>(i), static_cast<int32_t>(n), index - 1, i + n < word.size() ? index + 1 : -1});
    i += n;
  }
  std::priority_queue<Pair, std::vector<Pair>, Lower> agenda;
  auto consider = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const auto& l = symbols[static_cast<size_t>(left)];
    const auto& r = symbols[static_cast<size_t>(right)];
    const auto id = find(word.substr(static_cast<size_t>(l.begin), static_cast<size_t>(l.length + r.length)));
    if (id < 0) return;
    agenda.push({entries_[static_cast<size_t>(id)].score, left, right, l.length + r.length});
  };
  for (size_t i = 1; i < symbols.size(); ++i) consider(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
  while (!agenda.empty()) {
    const Pair top = agenda.top();
    agenda.pop();
    auto& l = symbols[static_cast<size_t>(top.left)];
    auto& r = symbols[static_cast<size_t>(top.right)];
    if (l.length == 0 || r.length == 0 || l.length + r.length != top.length) continue;  // stale
    l.length += r.length;
    l.next = r.next;
    if (r.next >= 0) symbols[static_cast<size_t>(r.next)].prev = top.left;
    r.length = 0;
    consider(l.prev, top.left);
    consider(top.left, l.next);
  }
  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) {
    const auto& s = symbols[static_cast<size_t>(i)];
    const auto piece = word.substr(static_cast<size_t>(s.begin), static_cast<size_t>(s.length));
    if (const auto id = find(piece); id >= 0) {
      out.push_back(id);
    } else {
      for (unsigned char b : piece) out.push_back(byte_ids_[b]);  // byte fallback
    }
  }
}

namespace {

// Each thread's word -> ids cache: open addressing over flat arrays, no locks, so threads encoding
// at once never wait on each other. It belongs to one encoder at a time (its serial); a thread that
// moves to another encoder, or fills it, starts it afresh.
struct WordCache {
  static constexpr size_t kSlots = size_t{1} << 19, kMostWords = kSlots / 2;  // 12 MB of slots
  struct Slot {
    uint64_t hash = 0;  // 0: empty
    uint32_t text = 0, ids = 0;
    uint16_t text_length = 0, n_ids = 0;
  };
  uint64_t owner = 0;
  size_t words = 0;
  std::vector<Slot> slots;
  std::string texts;
  std::vector<int32_t> ids;

  void reset(uint64_t serial) {
    slots.assign(kSlots, Slot());
    texts.clear();
    ids.clear();
    words = 0;
    owner = serial;
  }
};

}  // namespace

void SentencePieceBpe::append_word(std::string_view word, std::vector<int64_t>& out) const {
  if (word.empty()) return;
  thread_local WordCache cache;
  thread_local std::vector<int32_t> ids;
  ids.clear();
  if (word.size() > kLongestCachedWord) {
    encode_word(word, ids);
    out.insert(out.end(), ids.begin(), ids.end());
    return;
  }
  if (cache.owner != serial_ || cache.words >= WordCache::kMostWords) cache.reset(serial_);
  const uint64_t hash = XXH3_64bits(word.data(), word.size()) | 1;
  size_t i = hash & (WordCache::kSlots - 1);
  for (;; i = (i + 1) & (WordCache::kSlots - 1)) {
    const auto& slot = cache.slots[i];
    if (slot.hash == 0) break;
    if (slot.hash == hash && slot.text_length == word.size() &&
        std::memcmp(cache.texts.data() + slot.text, word.data(), word.size()) == 0) {
      const auto* first = cache.ids.data() + slot.ids;
      out.insert(out.end(), first, first + slot.n_ids);
      return;
    }
  }
  encode_word(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  auto& slot = cache.slots[i];
  slot = {hash, static_cast<uint32_t>(cache.texts.size()), static_cast<uint32_t>(cache.ids.size()),
          static_cast<uint16_t>(word.size()), static_cast<uint16_t>(ids.size())};
  cache.texts.append(word);
  cache.ids.insert(cache.ids.end(), ids.begin(), ids.end());
  ++cache.words;
}

void SentencePieceBpe::encode(std::string_view text, std::vector<int64_t>& out) const {
  if (text.empty()) return;
  // The normalised text ("▁" dummy prefix, spaces as "▁"), a word at a time: a word ends before a
  // "▁" that follows another character.
  // A literal "▁" in the text counts as one too (the normalised text cannot tell them apart).
  thread_local std::string word;
  word.clear();
  if (add_dummy_prefix_) word.append(kSpace);
  for (char c : text) {
    if (c == ' ') {
      const bool space_last =
          word.size() >= kSpace.size() && word.compare(word.size() - kSpace.size(), kSpace.size(), kSpace) == 0;
      if (!space_last && !word.empty()) {
        append_word(word, out);
        word.clear();
      }
      word.append(kSpace);
    } else {
      word.push_back(c);
    }
  }
  append_word(word, out);
}

}  // namespace phi
