// phi data tokenize --tokenizer DIR --input FILES --output DIR [--shard-tokens N] [--no-eos]
//   .txt: documents separated by the text "<|endoftext|>" (a file without it is one document);
//   .jsonl: one document per line in its "text" field.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "phi/core/error.h"
#include "phi/data/shards.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi::cli {

namespace {

struct TokenizeOptions {
  std::string tokenizer;
  std::vector<std::string> inputs;
  std::string output;
  int64_t shard_tokens = 64 << 20;
  bool no_eos = false;
};

template <typename F>
void for_each_document(const std::string& path, F&& document) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open input", path);
  if (std::filesystem::path(path).extension() == ".jsonl") {
    std::string line;
    int64_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object() || !j.contains("text") || !j["text"].is_string()) {
        throw Error("line " + std::to_string(n) + " is not a JSON object with a \"text\" string", path);
      }
      document(j["text"].get<std::string>());
    }
    return;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  const std::string separator = "<|endoftext|>";
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(separator, start);
    std::string doc = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (doc.find_first_not_of(" \t\r\n") != std::string::npos) document(doc);
    if (end == std::string::npos) break;
    start = end + separator.size();
  }
}

int run_tokenize(const TokenizeOptions& o) {
  auto tokenizer = load_tokenizer(o.tokenizer);
  const int64_t eos = tokenizer->eos_id().value_or(-1);
  if (!o.no_eos && eos < 0) {
    throw Error("the tokenizer has no EOS token to end documents with", o.tokenizer, "pass --no-eos");
  }
  ShardWriter writer(o.output, tokenizer->vocab_size(), eos, std::filesystem::absolute(o.tokenizer).string(),
                     o.shard_tokens);
  EncodeOptions options;
  options.allow_special = false;
  int64_t documents = 0;
  for (const auto& input : o.inputs) {
    for_each_document(input, [&](const std::string& text) {
      auto ids = tokenizer->encode(text, options);
      if (!o.no_eos) ids.push_back(eos);
      writer.add_document(ids);
      ++documents;
    });
  }
  auto manifest = writer.finish();
  spdlog::info("wrote {} documents, {} tokens in {} shards to {}", documents, manifest.n_tokens(), manifest.shards.size(),
               o.output);
  return 0;
}

}  // namespace

void add_data_command(CLI::App& root, Runner& run) {
  auto* cmd = root.add_subcommand("data", "Data pipeline: tokenize text into shards");
  cmd->require_subcommand(1);
  auto o = std::make_shared<TokenizeOptions>();
  auto* tok = cmd->add_subcommand("tokenize", "Tokenize .txt / .jsonl files into token shards + manifest.json");
  tok->add_option("--tokenizer", o->tokenizer, "directory holding the tokenizer files")->required();
  tok->add_option("--input", o->inputs, "input files (.txt: <|endoftext|>-separated documents; .jsonl: \"text\")")
      ->required();
  tok->add_option("--output", o->output, "dataset directory")->required();
  tok->add_option("--shard-tokens", o->shard_tokens, "tokens per shard")->capture_default_str();
  tok->add_flag("--no-eos", o->no_eos, "do not end each document with the EOS token");
  tok->callback([&run, o]() { run = [o]() { return run_tokenize(*o); }; });
}

}  // namespace phi::cli
