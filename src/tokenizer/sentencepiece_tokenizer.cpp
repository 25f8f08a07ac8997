// SentencePiece models (Phi-3 mini / medium): libsentencepiece loads and decodes them; BPE models
// it can take (Llama-2's and Phi-3's) are encoded by the native SentencePieceBpe, id-identical and
// faster; others by the library.
#include <sentencepiece_processor.h>
#include <spdlog/spdlog.h>
#include <cstdint>

#include "phi/core/error.h"
#include "tokenizer/kinds.h"
#include "tokenizer/sentencepiece_bpe.h"

namespace phi {

namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) {
    auto status = processor_.Load(path);
    if (!status.ok()) throw Error("cannot load SentencePiece model: " + status.ToString(), path);
    std::string why;
    native_ = SentencePieceBpe::create(parse_sentencepiece_model(processor_.serialized_model_proto()), &why);
    if (!native_) spdlog::debug("{}: encoded by libsentencepiece ({})", path, why);
  }
  TokenizerKind kind() const override { return TokenizerKind::kSentencePiece; }
  const sentencepiece::SentencePieceProcessor& processor() const { return processor_; }

 protected:
  void encode_ordinary(std::string_view text, std::vector<int64_t>& out) const override {
    if (native_) {
      native_->encode(text, out);
      return;
    }
    std::vector<int> ids;
    auto status = processor_.Encode(text, &ids);
    if (!status.ok()) throw Error("SentencePiece encode failed: " + status.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  }
  std::string decode_ordinary(const std::vector<int64_t>& ids) const override {
    std::vector<int> narrow(ids.begin(), ids.end());
    std::string text;
    auto status = processor_.Decode(narrow, &text);
    if (!status.ok()) throw Error("SentencePiece decode failed: " + status.ToString());
    return text;
  }
  std::optional<int64_t> base_token_to_id(const std::string& token) const override {
    int id = processor_.PieceToId(token);
    if (id == processor_.unk_id() && token != processor_.IdToPiece(processor_.unk_id())) return std::nullopt;
    return id;
  }
  std::string base_id_to_token(int64_t id) const override { return processor_.IdToPiece(static_cast<int>(id)); }
  int64_t base_vocab_size() const override { return processor_.GetPieceSize(); }

 private:
  sentencepiece::SentencePieceProcessor processor_;
  std::unique_ptr<SentencePieceBpe> native_;  // null: the library encodes
};

}  // namespace

std::unique_ptr<Tokenizer> make_sentencepiece(const std::string& model_path) {
  auto tokenizer = std::make_unique<SentencePieceTokenizer>(model_path);
  const auto& p = tokenizer->processor();
  if (p.bos_id() >= 0) tokenizer->set_bos_id(p.bos_id());
  if (p.eos_id() >= 0) tokenizer->set_eos_id(p.eos_id());
  return tokenizer;
}

}  // namespace phi
