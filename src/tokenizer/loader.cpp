// Finds a tokenizer's files in a model directory and loads it with its added/special tokens.
#include <filesystem>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/models/family.h"
#include "phi/tokenizer/tokenizer.h"
#include "tokenizer/kinds.h"

namespace phi {

namespace fs = std::filesystem;

namespace {

bool looks_special(const std::string& content) {
  return content.size() >= 4 &&
         (spelled_like_control_token(content) || content == "<s>" || content == "</s>" || content == "<unk>");
}

// A bare tiktoken ranks file lists no special tokens: the registered family whose tokenizer is one
// (Phi-3-small, cl100k_base) declares them.
void add_tiktoken_specials(Tokenizer& t) {
  for (const auto* family : registered_families()) {
    if (family->tiktoken_specials.empty()) continue;
    for (const auto& s : family->tiktoken_specials) t.add_token({s.content, s.id, true, false, false});
    t.set_bos_id(family->tiktoken_bos_eos);
    t.set_eos_id(family->tiktoken_bos_eos);
    return;
  }
}

std::string token_content(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string()) {
    return value["content"].get<std::string>();
  }
  return "";
}

void read_added_tokens_json(Tokenizer& t, const std::string& path) {
  auto j = read_json_file(path);
  if (!j.is_object()) throw Error("added tokens must be a JSON object of token -> id", path);
  const bool sentencepiece = t.kind() == TokenizerKind::kSentencePiece;
  for (const auto& item : j.items()) {
    if (!item.value().is_number_integer()) throw Error("$." + item.key() + " must be an integer id", path);
    AddedToken token;
    token.content = item.key();
    token.id = item.value().get<int64_t>();
    token.special = looks_special(token.content);
    // Phi-3's chat tokens absorb the whitespace after them (HF declares rstrip=True for all but
    // <|endoftext|>); tokenizer_config.json's added_tokens_decoder overrides this when present.
    token.rstrip = sentencepiece && token.special && token.content != "<|endoftext|>";
    t.add_token(token);
  }
}

void read_tokenizer_config(Tokenizer& t, const std::string& path) {
  auto j = read_json_file(path);
  if (!j.is_object()) return;
  if (j.contains("added_tokens_decoder") && j["added_tokens_decoder"].is_object()) {
    for (const auto& item : j["added_tokens_decoder"].items()) {
      const auto& v = item.value();
      AddedToken token;
      try {
        token.id = std::stoll(item.key());
      } catch (const std::exception&) {
        throw Error("$.added_tokens_decoder." + item.key() + ": key is not a token id", path);
      }
      token.content = token_content(v);
      if (token.content.empty()) continue;
      token.special = v.value("special", true);
      token.rstrip = v.value("rstrip", false);
      token.lstrip = v.value("lstrip", false);
      // Tokens of the base vocabulary (e.g. <s>, </s>, <unk>) stay with the model.
      auto base = t.token_to_id(token.content);
      if (base && *base == token.id && !t.is_special(token.id) && token.id < 3) continue;
      t.add_token(token);
    }
  }
  if (j.contains("add_bos_token")) {
    if (!j["add_bos_token"].is_boolean()) throw Error("$.add_bos_token must be true or false", path);
    t.set_add_bos_token(j["add_bos_token"].get<bool>());
  }
  for (const char* key : {"bos_token", "eos_token"}) {
    if (!j.contains(key)) continue;
    auto content = token_content(j[key]);
    if (content.empty()) continue;
    auto id = t.token_to_id(content);
    if (!id) continue;
    if (std::string(key) == "bos_token") t.set_bos_id(*id);
    else t.set_eos_id(*id);
  }
}

// Runs `read`; errors that do not name a file yet (added-token checks, JSON type errors from a
// value of the wrong type) are given `path`.
template <typename Read>
void with_file_context(const std::string& path, Read&& read) {
  try {
    read();
  } catch (const Error& e) {
    if (!e.where().empty()) throw;
    throw Error(e.message(), path, e.hint());
  } catch (const nlohmann::json::exception& e) {
    throw Error("unexpected value: " + json_error_text(e), path, "check the file's JSON types");
  }
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const TokenizerFiles& files) {
  const fs::path dir(files.directory);
  auto in_dir = [&](const char* name) -> std::string {
    if (files.directory.empty()) return "";
    auto p = dir / name;
    return fs::exists(p) ? p.string() : "";
  };
  std::string spm = !files.sentencepiece.empty() ? files.sentencepiece : in_dir("tokenizer.model");
  // A directory's tokenizer.json is what transformers' fast tokenizer loads, and it carries the
  // pre-tokenizer pattern (o200k's for Phi-4-mini), which vocab.json + merges.txt do not: it wins
  // over them unless those are named explicitly.
  const std::string tokenizer_json = in_dir("tokenizer.json");
  const bool slow_files_named = !files.vocab.empty() || !files.merges.empty();
  std::string vocab = !files.vocab.empty() ? files.vocab : tokenizer_json.empty() ? in_dir("vocab.json") : "";
  std::string merges = !files.merges.empty() ? files.merges : tokenizer_json.empty() ? in_dir("merges.txt") : "";
  if (vocab.empty() && merges.empty() && tokenizer_json.empty()) {
    vocab = in_dir("encoder.json");
    merges = in_dir("vocab.bpe");
  }
  std::string tiktoken = files.tiktoken;
  if (tiktoken.empty() && !files.directory.empty() && fs::is_directory(dir)) {
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.path().extension() == ".tiktoken") tiktoken = entry.path().string();
    }
  }
  std::unique_ptr<Tokenizer> tokenizer;
  if (!spm.empty()) {
    tokenizer = make_sentencepiece(spm);
    tokenizer->set_add_bos_token(true);  // LlamaTokenizer's default; tokenizer_config.json may say otherwise
  } else if (!vocab.empty() && !merges.empty()) {
    tokenizer = make_byte_level_bpe(vocab, merges);
    if (auto id = tokenizer->token_to_id("<|endoftext|>")) {
      tokenizer->add_token({"<|endoftext|>", *id, true});
      tokenizer->set_bos_id(*id);
      tokenizer->set_eos_id(*id);
    }
  } else if (!tiktoken.empty()) {
    tokenizer = make_tiktoken(tiktoken);
    add_tiktoken_specials(*tokenizer);
  } else if (!tokenizer_json.empty() && !slow_files_named) {
    with_file_context(tokenizer_json, [&] { tokenizer = make_byte_level_bpe_from_tokenizer_json(tokenizer_json); });
    if (auto id = tokenizer->token_to_id("<|endoftext|>")) {
      tokenizer->set_bos_id(*id);
      tokenizer->set_eos_id(*id);
    }
  } else {
    throw Error("no tokenizer files found", files.directory.empty() ? "(no directory)" : files.directory,
                "expected tokenizer.model, vocab.json + merges.txt, encoder.json + vocab.bpe, a *.tiktoken file, or a "
                "byte-level BPE tokenizer.json");
  }
  std::string added = !files.added_tokens.empty() ? files.added_tokens : in_dir("added_tokens.json");
  if (!added.empty()) with_file_context(added, [&] { read_added_tokens_json(*tokenizer, added); });
  if (auto config = in_dir("tokenizer_config.json"); !config.empty()) {
    with_file_context(config, [&] { read_tokenizer_config(*tokenizer, config); });
  }
  // Tokenizers trained by `phi tokenizer train` (and GPT-2 style ones) end documents with <|endoftext|>.
  if (!tokenizer->eos_id()) {
    if (auto id = tokenizer->token_to_id("<|endoftext|>")) tokenizer->set_eos_id(*id);
  }
  return tokenizer;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_directory) {
  if (!fs::is_directory(model_directory)) {
    throw Error("tokenizer directory does not exist", model_directory);
  }
  TokenizerFiles files;
  files.directory = model_directory;
  return load_tokenizer(files);
}

}  // namespace phi
