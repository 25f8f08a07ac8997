// A native encoder for SentencePiece BPE models (Llama-2's and Phi-3's tokenizer.model), id for id
// what SentencePieceProcessor::Encode gives, and faster: libsentencepiece merges over the whole
// normalised text; this one cuts it into words where no piece can cross (before a "▁" that follows
// another character, checked against the vocabulary at load) and caches each word's ids.
//
// The algorithm is sentencepiece's bpe_model.cc: every character a symbol; repeatedly merge the
// adjacent pair whose concatenation is a piece with the highest score (ties: the leftmost); symbols
// left unknown become their UTF-8 bytes' <0xXX> pieces (byte fallback). Normalisation is the
// identity rule set's: a "▁" dummy prefix and spaces as "▁".
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace phi {

/// One piece of a SentencePiece model, as the processor lists them.
struct SentencePieceEntry {
  std::string piece;
  float score = 0;
  enum Type { kNormal, kUnknown, kControl, kUserDefined, kByte, kUnused } type = kNormal;
};

/// What of a model's serialized ModelProto the native encoder needs.
struct SentencePieceSpec {
  int model_type = 1;  // 1 unigram, 2 BPE, 3 word, 4 char
  bool byte_fallback = false;
  bool treat_whitespace_as_suffix = false;
  std::string normalizer_name;
  bool has_charsmap = false;
  bool add_dummy_prefix = true, remove_extra_whitespaces = true, escape_whitespaces = true;
};
struct SentencePieceModel {
  SentencePieceSpec spec;
  std::vector<SentencePieceEntry> pieces;  // by id
};
/// The pieces and spec fields of a serialized ModelProto (protobuf wire format); throws phi::Error
/// on a malformed message.
SentencePieceModel parse_sentencepiece_model(std::string_view model_proto);

class SentencePieceBpe {
 public:
  /// The native encoder for a model, or nullptr (with the reason in `why`) when the model needs
  /// what it does not do: unigram models, normalisation rules other than identity, user-defined
  /// or unused pieces, no byte fallback, or pieces that cross word boundaries.
  static std::unique_ptr<SentencePieceBpe> create(SentencePieceModel model, std::string* why = nullptr);
  /// Appends the ids of `text` (valid UTF-8), as SentencePieceProcessor::Encode(text).
  void encode(std::string_view text, std::vector<int64_t>& out) const;

 private:
  SentencePieceBpe() = default;
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  void append_word(std::string_view word, std::vector<int64_t>& out) const;

  std::vector<SentencePieceEntry> entries_;
  /// The id of a normal piece, or -1.
  int32_t find(std::string_view piece) const;

  // Normal pieces by hash: open addressing, (hash, id) slots, a power of two at most half full.
  struct PieceSlot {
    uint64_t hash = 0;  // 0: empty
    int32_t id = -1;
  };
  std::vector<PieceSlot> pieces_;
  std::array<int32_t, 256> byte_ids_{};
  bool add_dummy_prefix_ = true;
  uint64_t serial_ = 0;  // this encoder among all made: owns a thread's word cache
  static constexpr size_t kLongestCachedWord = 256;  // bytes; longer words are encoded each time
};

}  // namespace phi
