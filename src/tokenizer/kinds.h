// The three tokenizer kinds (private to the tokenizer module; load_tokenizer() builds them).
#pragma once

#include <memory>
#include <string>

#include "phi/tokenizer/tokenizer.h"

namespace phi {

/// GPT-2 byte-level BPE from vocab.json (token -> id) and merges.txt; GPT-2's pre-tokenizer.
std::unique_ptr<Tokenizer> make_byte_level_bpe(const std::string& vocab_path, const std::string& merges_path);
/// A Hugging Face tokenizer.json whose model is byte-level BPE (vocab, merges, added_tokens) and
/// whose pre-tokenizer is ByteLevel (GPT-2's pattern) or a regex Split before ByteLevel (Phi-4-mini:
/// o200k_base's pattern).
std::unique_ptr<Tokenizer> make_byte_level_bpe_from_tokenizer_json(const std::string& path);
/// SentencePiece model (libsentencepiece).
std::unique_ptr<Tokenizer> make_sentencepiece(const std::string& model_path);
/// tiktoken ranks file ("base64(token) rank" per line) with cl100k_base's pre-tokenizer.
std::unique_ptr<Tokenizer> make_tiktoken(const std::string& ranks_path);

class BytePairEncoder;

/// The tokenizer over a BytePairEncoder and a PCRE2 pattern, shared by the byte-level BPE and
/// tiktoken kinds. Token strings (token_to_id / id_to_token) are spelled in GPT-2's printable
/// byte alphabet for kByteLevelBpe, and as raw bytes for kTiktoken.
std::unique_ptr<Tokenizer> make_bpe_tokenizer(TokenizerKind kind, std::unique_ptr<BytePairEncoder> bpe,
                                              const std::string& pattern);

/// The tiktoken pre-tokenizer patterns.
extern const char* const kGpt2Pattern;
extern const char* const kCl100kPattern;

}  // namespace phi
