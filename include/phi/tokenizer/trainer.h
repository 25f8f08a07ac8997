// Tokenizer training for the data pipeline: SentencePiece (libsentencepiece's trainer, BPE with
// byte fallback) or byte-level BPE (GPT-2 style; vocab.json + merges.txt).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace phi {

struct TokenizerTrainOptions {
  std::string kind = "bpe";  // "spm" or "bpe"
  int64_t vocab_size = 0;    // total, special tokens included
  std::vector<std::string> inputs;  // .txt files, or .jsonl files whose lines hold a "text" field
  std::string output;               // directory (created)
  std::vector<std::string> special_tokens = {"<|endoftext|>"};
};

/// Trains and writes a tokenizer directory that load_tokenizer() reads: tokenizer.model (spm) or
/// vocab.json + merges.txt (bpe), plus added_tokens.json with the special tokens.
void train_tokenizer(const TokenizerTrainOptions& options);

/// The byte-level BPE trainer itself: merges learnt from `texts` (deterministic: the most frequent
/// pair, ties broken by the smaller byte strings).
struct BpeTrainResult {
  std::vector<std::string> tokens;                              // id -> bytes
  std::vector<std::pair<std::string, std::string>> merges;      // in rank order
};
BpeTrainResult train_byte_level_bpe(const std::vector<std::string>& texts, int64_t n_merges);

}  // namespace phi
