// Tokenizers: one interface for the three kinds the phi family uses.
//   - byte-level BPE (GPT-2 vocab.json + merges.txt, or encoder.json + vocab.bpe) with the CodeGen
//     whitespace tokens: phi-1, phi-1.5, phi-2;
//   - SentencePiece (tokenizer.model) with added tokens 32000-32010: Phi-3 mini / medium;
//   - tiktoken ranks (cl100k_base.tiktoken) with Phi-3-small's special tokens.
// The model directory (or explicit paths) says which.
//
// Text is UTF-8. encode() rejects invalid UTF-8 with a phi::Error naming the byte offset; decode()
// never fails: byte sequences that are not valid UTF-8 come out as U+FFFD (as transformers'
// errors="replace").
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace phi {

enum class TokenizerKind { kByteLevelBpe, kSentencePiece, kTiktoken };
std::string to_string(TokenizerKind kind);

/// Whether a token is spelled like a chat control token, "<|...|>" (phi's turn markers and
/// specials): such added tokens count as special when a file does not say, and chat content never
/// produces them.
bool spelled_like_control_token(std::string_view content);

/// A token matched as a whole in text before the model's own splitting (special and added tokens).
struct AddedToken {
  std::string content;
  int64_t id = 0;
  bool special = true;  // special: dropped by decode(skip_special); matched only when allowed
  bool rstrip = false;  // whitespace right after the token is absorbed (Phi-3's chat tokens)
  bool lstrip = false;  // whitespace right before the token is absorbed
};

struct EncodeOptions {
  bool add_bos = false;        // prepend the BOS id (when the tokenizer has one)
  bool add_eos = false;        // append the EOS id
  bool allow_special = true;   // special-token text becomes its id; else it is encoded as text
  /// Byte offsets into the text that no added-token match may span (a match [a, b) with a < p < b
  /// for some p here is encoded as ordinary text). Chat prompts use it so that message content never
  /// becomes control tokens (ChatTemplate::encode). Sorted ascending.
  const std::vector<size_t>* special_barriers = nullptr;
  /// > 0: the text is refused (phi::Error "... longer than N tokens ...") without being tokenized
  /// when its byte length alone shows it cannot fit in this many tokens (no token covers more than
  /// longest_token_bytes()), so that a 100 MB prompt costs a length check, not gigabytes.
  int64_t max_tokens = 0;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  virtual TokenizerKind kind() const = 0;
  /// Number of ids the tokenizer can produce (base vocabulary + added tokens).
  int64_t vocab_size() const;

  std::vector<int64_t> encode(std::string_view text, const EncodeOptions& options = {}) const;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = false) const;

  /// The id of a token string (special tokens included), if any.
  std::optional<int64_t> token_to_id(const std::string& token) const;
  /// The token's string as the vocabulary spells it (special tokens as their text).
  std::string id_to_token(int64_t id) const;

  /// Whether text prompts start with BOS (tokenizer_config.json's add_bos_token; when absent,
  /// transformers' default for the kind: SentencePiece (LlamaTokenizer) true, the others false).
  bool add_bos_token() const { return add_bos_token_; }
  void set_add_bos_token(bool add) { add_bos_token_ = add; }
  /// The options for encoding a user's text prompt: BOS as add_bos_token() says, special-token
  /// text allowed (as transformers, llama.cpp and vLLM encode raw prompts), at most `max_tokens`.
  EncodeOptions prompt_options(int64_t max_tokens = 0) const;
  /// An upper bound of the bytes one token can stand for (the longest vocabulary entry or added
  /// token; whitespace absorbed by rstrip/lstrip tokens is not counted).
  size_t longest_token_bytes() const;

  std::optional<int64_t> bos_id() const { return bos_id_; }
  std::optional<int64_t> eos_id() const { return eos_id_; }
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  bool is_special(int64_t id) const;

  void set_bos_id(std::optional<int64_t> id) { bos_id_ = id; }
  void set_eos_id(std::optional<int64_t> id) { eos_id_ = id; }
  /// Adds (or replaces, by content) a token matched as a whole.
  void add_token(const AddedToken& token);

 protected:
  /// Encodes text that holds no added tokens.
  virtual void encode_ordinary(std::string_view text, std::vector<int64_t>& out) const = 0;
  /// Decodes ids of the base vocabulary (no added tokens) to raw bytes / text.
  virtual std::string decode_ordinary(const std::vector<int64_t>& ids) const = 0;
  virtual std::optional<int64_t> base_token_to_id(const std::string& token) const = 0;
  virtual std::string base_id_to_token(int64_t id) const = 0;
  /// Ids below this belong to the base vocabulary.
  virtual int64_t base_vocab_size() const = 0;

 private:
  const AddedToken* added_by_id(int64_t id) const;
  std::vector<AddedToken> added_;
  std::array<bool, 256> added_first_byte_{};  // bytes that can start an added token
  std::optional<int64_t> bos_id_;
  std::optional<int64_t> eos_id_;
  bool add_bos_token_ = false;
  mutable std::atomic<size_t> longest_token_bytes_{0};  // computed on first use
};

/// Where a tokenizer comes from: a model directory, or explicit files.
struct TokenizerFiles {
  std::string directory;      // a Hugging Face model directory (detected by its files)
  std::string sentencepiece;  // tokenizer.model
  std::string vocab;          // vocab.json / encoder.json (byte-level BPE)
  std::string merges;         // merges.txt / vocab.bpe
  std::string tiktoken;       // *.tiktoken ranks
  std::string added_tokens;   // added_tokens.json
};

/// Loads the tokenizer a model directory (or the explicit files) describe. Detection order:
/// tokenizer.model; vocab.json + merges.txt (or encoder.json + vocab.bpe); *.tiktoken;
/// tokenizer.json (byte-level BPE models: vocab, merges and added_tokens are read from it). Added tokens come from added_tokens.json and
/// tokenizer_config.json's added_tokens_decoder; bos/eos from tokenizer_config.json or config.json.
std::unique_ptr<Tokenizer> load_tokenizer(const TokenizerFiles& files);
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_directory);

/// Incremental detokenization for streaming: push ids one at a time, get back only text that is
/// complete UTF-8 (a multi-byte character split across tokens is held until it is whole).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);
  /// The new text that `id` completes (possibly empty). Ids outside the tokenizer's vocabulary (the
  /// padding rows of a model's embedding) add no text.
  std::string push(int64_t id);
  /// Whatever is still held (incomplete UTF-8 at the end of a stream comes out as U+FFFD).
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::vector<int64_t> ids_;
  size_t prefix_offset_ = 0;  // ids before this are settled
  size_t read_offset_ = 0;    // text of ids_[prefix_offset_, read_offset_) was already emitted
};

}  // namespace phi
