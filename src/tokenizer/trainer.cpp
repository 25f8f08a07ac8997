#include "phi/tokenizer/trainer.h"

#include <sentencepiece_trainer.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <queue>
#include <set>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/file_util.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/core/text_io.h"
#include "tokenizer/bpe.h"
#include "tokenizer/kinds.h"
#include "tokenizer/utf8.h"

namespace phi {

namespace fs = std::filesystem;

namespace {

// Reads the training texts: whole .txt files, or the "text" field of each .jsonl line.
std::vector<std::string> read_texts(const std::vector<std::string>& inputs) {
  std::vector<std::string> texts;
  for (const auto& path : inputs) {
    const size_t first = texts.size();
    if (fs::path(path).extension() == ".jsonl") {
      for_each_jsonl(path, [&](const nlohmann::json& j, const std::string& where) {
        if (!j.is_object() || !j.contains("text") || !j["text"].is_string()) {
          throw Error("line is not a JSON object with a \"text\" string", where);
        }
        texts.push_back(j["text"].get<std::string>());
        return true;
      });
    } else {
      texts.push_back(read_text_file(path, "training input"));
    }
    for (size_t i = first; i < texts.size(); ++i) utf8::require_valid(texts[i], ("training text in " + path).c_str());
  }
  return texts;
}

void write_added_tokens(const std::string& dir, const std::vector<std::string>& specials, int64_t first_id) {
  nlohmann::json added = nlohmann::json::object();
  for (size_t i = 0; i < specials.size(); ++i) added[specials[i]] = first_id + static_cast<int64_t>(i);
  write_json_file_atomic((fs::path(dir) / "added_tokens.json").string(), added);
}

void train_sentencepiece(const TokenizerTrainOptions& o, const std::vector<std::string>& texts) {
  const auto corpus = (fs::path(o.output) / "spm_corpus.txt.tmp").string();
  {
    std::ofstream out(corpus, std::ios::binary);
    for (const auto& t : texts) out << t << "\n";
  }
  const int64_t base = o.vocab_size - static_cast<int64_t>(o.special_tokens.size());
  std::ostringstream args;
  args << "--input=" << corpus << " --model_prefix=" << (fs::path(o.output) / "tokenizer").string()
       << " --vocab_size=" << base << " --model_type=bpe --byte_fallback=true --character_coverage=1.0"
       << " --split_digits=true --allow_whitespace_only_pieces=true --remove_extra_whitespaces=false"
       << " --normalization_rule_name=identity --max_sentence_length=1000000 --train_extremely_large_corpus=false"
       << " --minloglevel=2 --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1";
  auto status = sentencepiece::SentencePieceTrainer::Train(args.str());
  fs::remove(corpus);
  if (!status.ok()) {
    throw Error("SentencePiece training failed: " + status.ToString(), o.output,
                "a larger corpus or a smaller --vocab-size may help");
  }
  fs::remove(fs::path(o.output) / "tokenizer.vocab");
  write_added_tokens(o.output, o.special_tokens, base);
}

}  // namespace

BpeTrainResult train_byte_level_bpe(const std::vector<std::string>& texts, int64_t n_merges) {
  // Word counts from GPT-2 pre-tokenization.
  PreTokenizer pre(kGpt2Pattern);
  std::unordered_map<std::string, int64_t> word_counts;
  for (const auto& text : texts) {
    pre.split(text, [&](size_t begin, size_t length) { ++word_counts[text.substr(begin, length)]; });
  }
  BpeTrainResult result;
  for (int b = 0; b < 256; ++b) result.tokens.push_back(std::string(1, static_cast<char>(b)));
  std::vector<std::vector<int>> words;
  std::vector<int64_t> counts;
  for (const auto& [word, count] : word_counts) {
    std::vector<int> symbols;
    for (unsigned char c : word) symbols.push_back(c);
    words.push_back(std::move(symbols));
    counts.push_back(count);
  }
  using Pair = std::pair<int, int>;
  std::map<Pair, int64_t> pair_counts;
  std::map<Pair, std::set<size_t>> where;
  for (size_t w = 0; w < words.size(); ++w) {
    for (size_t i = 0; i + 1 < words[w].size(); ++i) {
      Pair p{words[w][i], words[w][i + 1]};
      pair_counts[p] += counts[w];
      where[p].insert(w);
    }
  }
  // Max-heap on (count, then the smaller byte strings first) with lazy invalidation.
  auto better = [&](const std::pair<int64_t, Pair>& a, const std::pair<int64_t, Pair>& b) {
    if (a.first != b.first) return a.first < b.first;
    const auto ka = std::make_pair(result.tokens[a.second.first], result.tokens[a.second.second]);
    const auto kb = std::make_pair(result.tokens[b.second.first], result.tokens[b.second.second]);
    return ka > kb;
  };
  std::priority_queue<std::pair<int64_t, Pair>, std::vector<std::pair<int64_t, Pair>>, decltype(better)> heap(better);
  for (const auto& [p, c] : pair_counts) heap.push({c, p});
  while (static_cast<int64_t>(result.merges.size()) < n_merges && !heap.empty()) {
    auto [count, pair] = heap.top();
    heap.pop();
    auto it = pair_counts.find(pair);
    if (it == pair_counts.end() || it->second != count || count <= 0) continue;
    const int merged = static_cast<int>(result.tokens.size());
    result.tokens.push_back(result.tokens[pair.first] + result.tokens[pair.second]);
    result.merges.push_back({result.tokens[pair.first], result.tokens[pair.second]});
    std::set<Pair> touched;
    auto affected = where[pair];
    for (size_t w : affected) {
      auto& s = words[w];
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        Pair p{s[i], s[i + 1]};
        pair_counts[p] -= counts[w];
        touched.insert(p);
      }
      std::vector<int> next;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == pair.first && s[i + 1] == pair.second) {
          next.push_back(merged);
          ++i;
        } else {
          next.push_back(s[i]);
        }
      }
      s = std::move(next);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        Pair p{s[i], s[i + 1]};
        pair_counts[p] += counts[w];
        where[p].insert(w);
        touched.insert(p);
      }
    }
    for (const auto& p : touched) {
      auto c = pair_counts[p];
      if (c > 0) heap.push({c, p});
    }
    pair_counts.erase(pair);
    where.erase(pair);
  }
  return result;
}

void train_tokenizer(const TokenizerTrainOptions& o) {
  if (o.vocab_size < static_cast<int64_t>(o.special_tokens.size()) + (o.kind == "bpe" ? 256 : 1)) {
    throw Error("--vocab-size " + std::to_string(o.vocab_size) + " is too small", "",
                o.kind == "bpe" ? "byte-level BPE needs at least 256 + the special tokens" : "use a larger vocabulary");
  }
  if (o.inputs.empty()) throw Error("no training inputs", "", "pass --input FILES");
  fs::create_directories(o.output);
  auto texts = read_texts(o.inputs);
  if (o.kind == "spm") {
    train_sentencepiece(o, texts);
  } else if (o.kind == "bpe") {
    const int64_t n_merges = o.vocab_size - 256 - static_cast<int64_t>(o.special_tokens.size());
    auto trained = train_byte_level_bpe(texts, n_merges);
    nlohmann::json vocab = nlohmann::json::object();
    for (size_t id = 0; id < trained.tokens.size(); ++id) vocab[gpt2_bytes_to_unicode(trained.tokens[id])] = id;
    write_json_file_atomic((fs::path(o.output) / "vocab.json").string(), vocab);
    std::string merges = "#version: 0.2\n";
    for (const auto& [a, b] : trained.merges) merges += gpt2_bytes_to_unicode(a) + " " + gpt2_bytes_to_unicode(b) + "\n";
    write_file_atomic((fs::path(o.output) / "merges.txt").string(), merges.data(), merges.size());
    write_added_tokens(o.output, o.special_tokens, static_cast<int64_t>(trained.tokens.size()));
    if (static_cast<int64_t>(trained.merges.size()) < n_merges) {
      spdlog::warn("the corpus supports only {} merges; vocabulary is {} + {} special tokens", trained.merges.size(),
                   trained.tokens.size(), o.special_tokens.size());
    }
  } else {
    throw Error("unknown tokenizer kind \"" + o.kind + "\"", "--kind", "use spm or bpe");
  }
  // The data `phi data tokenize` makes carries no BOS, so prompts to models trained on it do not either.
  write_json_file_atomic((fs::path(o.output) / "tokenizer_config.json").string(),
                         nlohmann::json{{"add_bos_token", false}, {"add_eos_token", false}});
  spdlog::info("trained a {} tokenizer ({} tokens) into {}", o.kind, o.vocab_size, o.output);
}

}  // namespace phi
