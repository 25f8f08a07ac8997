// GPT-2 byte-level BPE (phi-1 / 1.5 / 2 use it with CodeGen's whitespace tokens as added tokens).
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "tokenizer/bpe.h"
#include "tokenizer/kinds.h"

namespace phi {

const char* const kGpt2Pattern = R"('(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s)";

namespace {

std::unordered_map<std::string, int64_t> read_vocab_object(const nlohmann::json& vocab, const std::string& where) {
  if (!vocab.is_object()) throw Error("vocabulary must be a JSON object of token -> id", where);
  std::unordered_map<std::string, int64_t> ids;
  // The ids' range and uniqueness are checked where they size the id -> token table
  // (BytePairEncoder, given this file's name).
  for (const auto& item : vocab.items()) {
    const std::string entry = "vocabulary entry $.\"" + item.key().substr(0, 64) + "\"";
    if (!item.value().is_number_integer()) throw Error(entry + " is not an integer id", where);
    try {
      ids[gpt2_unicode_to_bytes(item.key())] = item.value().get<int64_t>();
    } catch (const Error& e) {
      throw Error(entry + ": " + e.message(), where);
    }
  }
  return ids;
}

// merges: pairs of vocabulary strings (GPT-2's unicode alphabet), in rank order. The id checks
// name `vocab_where`, the merge and byte checks `merges_where`.
std::unique_ptr<Tokenizer> build_byte_level_bpe(std::unordered_map<std::string, int64_t> ids,
                                                const std::vector<std::pair<std::string, std::string>>& merges,
                                                const std::string& vocab_where, const std::string& merges_where,
                                                const std::string& pattern) {
  std::unordered_map<std::string, int64_t> ranks;
  int64_t rank = 0;
  for (const auto& [a, b] : merges) {
    auto merged = gpt2_unicode_to_bytes(a) + gpt2_unicode_to_bytes(b);
    if (!ids.count(merged)) {
      throw Error("merge " + std::to_string(rank + 1) + " (\"" + a + " " + b + "\") produces a token missing from the vocabulary",
                  merges_where);
    }
    ranks.emplace(merged, rank++);
  }
  for (int b = 0; b < 256; ++b) {
    if (!ids.count(std::string(1, static_cast<char>(b)))) {
      throw Error("vocabulary lacks the byte 0x" + std::to_string(b) + " (not a byte-level BPE vocabulary?)", merges_where);
    }
  }
  return make_bpe_tokenizer(TokenizerKind::kByteLevelBpe,
                            std::make_unique<BytePairEncoder>(std::move(ranks), std::move(ids), vocab_where), pattern);
}

// A string field of a JSON object, or "" when absent or not a string (hostile files put anything
// anywhere; nlohmann's value() would throw its own type_error).
std::string text_field(const nlohmann::json& o, const char* key) {
  if (!o.is_object()) return "";
  const auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : "";
}

// True when a tokenizers pre_tokenizer (possibly a Sequence) contains ByteLevel.
bool has_byte_level(const nlohmann::json& pre) {
  if (!pre.is_object()) return false;
  if (text_field(pre, "type") == "ByteLevel") return true;
  if (pre.contains("pretokenizers") && pre["pretokenizers"].is_array()) {
    for (const auto& p : pre["pretokenizers"]) {
      if (has_byte_level(p)) return true;
    }
  }
  return false;
}

// The pattern that splits text before byte-level BPE, from a tokenizers `pre_tokenizer`: ByteLevel
// alone (use_regex true: GPT-2's pattern), or a Sequence of a regex Split (behavior Isolated, not
// inverted) and ByteLevel with use_regex false (o200k-style tokenizers such as Phi-4-mini's). Other
// pre-tokenizers are errors naming what is unsupported.
std::string pre_tokenizer_pattern(const nlohmann::json& pre, const std::string& path) {
  auto unsupported = [&](const std::string& what) {
    throw Error("$.pre_tokenizer: " + what + " is not supported", path,
                "byte-level BPE tokenizer.json files need ByteLevel, optionally after one regex Split");
  };
  // A boolean field; absent gives `fallback`, another type is an error naming it.
  auto flag = [&](const nlohmann::json& step, const char* key, bool fallback) {
    const auto it = step.find(key);
    if (it == step.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) {
      throw Error(std::string("$.pre_tokenizer: \"") + key + "\" must be true or false", path);
    }
    return it->get<bool>();
  };
  if (!pre.is_object()) unsupported("a missing or non-object pre_tokenizer");
  std::vector<nlohmann::json> steps;
  if (text_field(pre, "type") == "Sequence") {
    if (!pre.contains("pretokenizers") || !pre["pretokenizers"].is_array()) unsupported("a Sequence without pretokenizers");
    for (const auto& p : pre["pretokenizers"]) steps.push_back(p);
  } else {
    steps.push_back(pre);
  }
  std::string split_pattern;
  bool byte_level = false, byte_level_regex = true;
  for (const auto& step : steps) {
    const std::string type = text_field(step, "type");
    if (type == "ByteLevel" && !byte_level) {
      byte_level = true;
      byte_level_regex = flag(step, "use_regex", true);
      if (flag(step, "add_prefix_space", false)) unsupported("ByteLevel add_prefix_space=true");
    } else if (type == "Split" && split_pattern.empty() && !byte_level) {
      const auto it = step.find("pattern");
      const std::string regex = it != step.end() ? text_field(*it, "Regex") : "";
      if (regex.empty()) unsupported("a Split whose pattern is not {\"Regex\": ...} with a non-empty string");
      if (text_field(step, "behavior") != "Isolated" || flag(step, "invert", false)) {
        unsupported("a Split other than behavior Isolated, invert false");
      }
      split_pattern = regex;
    } else {
      unsupported("pre-tokenizer \"" + (type.empty() ? step.dump().substr(0, 80) : type) + "\" in this position");
    }
  }
  if (!byte_level) unsupported("a pre_tokenizer without ByteLevel");
  if (!split_pattern.empty()) {
    if (byte_level_regex) unsupported("a Split followed by ByteLevel with use_regex=true (two regex splits)");
    return split_pattern;
  }
  if (!byte_level_regex) unsupported("ByteLevel with use_regex=false and no Split (no pre-tokenization)");
  return kGpt2Pattern;
}

}  // namespace

std::unique_ptr<Tokenizer> make_byte_level_bpe(const std::string& vocab_path, const std::string& merges_path) {
  auto ids = read_vocab_object(read_json_file(vocab_path), vocab_path);
  std::ifstream in(merges_path);
  if (!in) throw Error("cannot open merges file", merges_path);
  std::vector<std::pair<std::string, std::string>> merges;
  std::string line;
  int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    auto space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      throw Error("malformed merge on line " + std::to_string(line_number) + " (expected \"a b\")", merges_path);
    }
    merges.push_back({line.substr(0, space), line.substr(space + 1)});
  }
  return build_byte_level_bpe(std::move(ids), merges, vocab_path, merges_path, kGpt2Pattern);
}

std::unique_ptr<Tokenizer> make_byte_level_bpe_from_tokenizer_json(const std::string& path) {
  auto j = read_json_file(path);
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) {
    throw Error("tokenizer.json has no \"model\" object", path);
  }
  const auto& model = j["model"];
  if (text_field(model, "type") != "BPE" || !has_byte_level(j.value("pre_tokenizer", nlohmann::json()))) {
    throw Error("only byte-level BPE tokenizer.json files are read", path,
                "SentencePiece-based models (Phi-3) ship tokenizer.model: keep it next to tokenizer.json");
  }
  const auto pattern = pre_tokenizer_pattern(j.value("pre_tokenizer", nlohmann::json()), path);
  auto ids = read_vocab_object(model.value("vocab", nlohmann::json()), path);
  std::vector<std::pair<std::string, std::string>> merges;
  for (const auto& m : model.value("merges", nlohmann::json::array())) {
    if (m.is_string()) {  // "a b"
      const auto text = m.get<std::string>();
      const auto space = text.find(' ');
      if (space == std::string::npos) throw Error("malformed merge \"" + text + "\"", path);
      merges.push_back({text.substr(0, space), text.substr(space + 1)});
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["a", "b"]
      merges.push_back({m[0].get<std::string>(), m[1].get<std::string>()});
    } else {
      throw Error("malformed merge " + m.dump(), path);
    }
  }
  std::unique_ptr<Tokenizer> tokenizer;
  try {
    tokenizer = build_byte_level_bpe(std::move(ids), merges, path, path, pattern);
  } catch (const Error& e) {
    if (!e.where().empty()) throw;
    throw Error("$.pre_tokenizer: " + e.message(), path, e.hint());  // the Split regex did not compile
  }
  for (const auto& t : j.value("added_tokens", nlohmann::json::array())) {
    if (!t.is_object() || !t.contains("id") || !t.contains("content")) continue;
    if (!t["content"].is_string() || !t["id"].is_number_integer()) {
      throw Error("added_tokens entry " + t.dump().substr(0, 200) + " needs a string content and an integer id", path);
    }
    auto flag = [&](const char* key) {
      if (!t.contains(key)) return false;
      if (!t[key].is_boolean()) throw Error(std::string("added_tokens entry: \"") + key + "\" must be true or false", path);
      return t[key].get<bool>();
    };
    try {
      tokenizer->add_token({t["content"].get<std::string>(), t["id"].get<int64_t>(), flag("special"), flag("rstrip"),
                            flag("lstrip")});
    } catch (const Error& e) {
      throw Error(e.message(), path, e.hint());
    }
  }
  return tokenizer;
}

}  // namespace phi
