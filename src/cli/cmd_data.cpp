// phi data tokenize --tokenizer DIR --input FILES --output DIR [--shard-tokens N] [--no-eos]
// phi data synth lego --output FILE [--count N] [--length L] [--seed S]
//   .txt: documents separated by the text "<|endoftext|>" (a file without it is one document);
//   .jsonl: one document per line: {"text"} (train on all of it), {"prompt", "answer"|"completion"}
//   (train on the answer only) or {"messages"} rendered with --chat-template (train on the
//   assistant turns only); the last two write a per-token loss mask.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "phi/core/error.h"
#include "phi/core/text_io.h"
#include "phi/data/lego.h"
#include "phi/config/model_config.h"
#include "phi/data/chat_document.h"
#include "phi/infer/chat_template.h"
#include "phi/data/textbook.h"
#include "phi/data/shards.h"
#include "core/file_util.h"
#include "phi/models/family.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi::cli {

namespace {

// One document to tokenize: plain text, a prompt/answer pair, or a conversation.
struct Document {
  std::string text;
  std::string prompt, answer;             // trained on the answer only
  std::vector<ChatMessage> messages;      // trained on the assistant turns only
  bool masked() const { return !messages.empty() || !answer.empty(); }
};

template <typename F>
void for_each_document(const std::string& path, F&& document) {
  auto plain = [&](std::string text) {
    Document d;
    d.text = std::move(text);
    document(d);
  };
  if (std::filesystem::path(path).extension() == ".jsonl") {
    for_each_jsonl(path, [&](const nlohmann::json& j, const std::string& where) {
      if (!j.is_object()) throw Error("line is not a JSON object", where);
      Document d;
      auto answer_key = j.contains("answer") ? "answer" : "completion";
      if (j.contains("messages")) {
        d.messages = parse_chat_messages(j["messages"], where);
      } else if (j.contains("prompt") && j.contains(answer_key)) {
        if (!j["prompt"].is_string() || !j[answer_key].is_string()) {
          throw Error("$.prompt and $." + std::string(answer_key) + " must be strings", where);
        }
        d.prompt = j["prompt"].get<std::string>();
        d.answer = j[answer_key].get<std::string>();
      } else if (j.contains("text") && j["text"].is_string()) {
        d.text = j["text"].get<std::string>();
      } else {
        throw Error("line needs \"text\", \"prompt\" + \"answer\", or \"messages\"", where);
      }
      document(d);
      return true;
    });
    return;
  }
  const std::string text = read_text_file(path, "input");
  const std::string separator = "<|endoftext|>";
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(separator, start);
    std::string doc = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (doc.find_first_not_of(" \t\r\n") != std::string::npos) plain(doc);
    if (end == std::string::npos) break;
    start = end + separator.size();
  }
}

}  // namespace

int tokenize_dataset(const TokenizeJob& o) {
  auto tokenizer = load_tokenizer(o.tokenizer);
  const int64_t eos = tokenizer->eos_id().value_or(-1);
  if (!o.no_eos && eos < 0) {
    throw Error("the tokenizer has no EOS token to end documents with", o.tokenizer, "pass --no-eos");
  }
  ShardWriter writer(o.output, tokenizer->vocab_size(), eos, std::filesystem::absolute(o.tokenizer).string(),
                     o.shard_tokens);
  EncodeOptions options;
  options.allow_special = false;
  // Conversations are rendered with the named template, else the model directory's own (its
  // tokenizer_config.json chat_template or its family's format), else the Phi-3 format.
  const auto model_config = std::filesystem::path(o.tokenizer) / "config.json";
  auto chat = !o.chat_template.empty() || !std::filesystem::exists(model_config)
                  ? ChatTemplate::builtin(o.chat_template.empty() ? "phi3" : o.chat_template, *tokenizer)
                  : ChatTemplate::for_model(o.tokenizer, load_model_config(model_config.string()), *tokenizer);
  chat.set_special_tokens_in_content(o.special_tokens_in_content);
  int64_t documents = 0;
  for (const auto& input : o.inputs) {
    for_each_document(input, [&](const Document& d) {
      std::vector<int64_t> ids;
      std::vector<uint8_t> mask;
      auto append = [&](const std::vector<int64_t>& part, uint8_t train_on) {
        ids.insert(ids.end(), part.begin(), part.end());
        mask.insert(mask.end(), part.size(), train_on);
      };
      if (!d.messages.empty()) {
        auto document = tokenize_conversation(*tokenizer, chat, d.messages);
        ids = std::move(document.ids);
        mask = std::move(document.train);
      } else if (!d.answer.empty()) {
        append(tokenizer->encode(d.prompt, options), 0);
        append(tokenizer->encode(d.answer, options), 1);
      } else {
        append(tokenizer->encode(d.text, options), 1);
      }
      if (!o.no_eos) append({eos}, 1);
      writer.add_document(ids, d.masked() ? &mask : nullptr);
      ++documents;
    });
  }
  auto manifest = writer.finish();
  spdlog::info("wrote {} documents, {} tokens in {} shards to {}", documents, manifest.n_tokens(), manifest.shards.size(),
               o.output);
  return 0;
}

namespace {

struct LegoOptions {
  std::string output;
  int64_t count = 10000;
  int64_t chain_length = 6;
  uint64_t seed = 0;
};

// Writes LEGO examples as JSONL: {"text": prompt + answer, "prompt", "answer", "values"}.
int run_lego(const LegoOptions& o) {
  std::string out;
  for (int64_t i = 0; i < o.count; ++i) {
    auto ex = make_lego_example(o.chain_length, o.seed, i);
    out += nlohmann::json({{"text", ex.prompt + ex.answer}, {"prompt", ex.prompt}, {"answer", ex.answer},
                           {"values", ex.values}}).dump() + "\n";
  }
  if (auto parent = std::filesystem::path(o.output).parent_path(); !parent.empty()) {
    std::filesystem::create_directories(parent);
  }
  write_file_atomic(o.output, out.data(), out.size());
  spdlog::info("wrote {} LEGO examples (chain length {}, seed {}) to {}", o.count, o.chain_length, o.seed, o.output);
  return 0;
}

struct TextbookOptions {
  std::string output;
  int64_t count = 20000;
  uint64_t seed = 0;
};

// Writes the synthetic textbook as .txt documents separated by <|endoftext|>.
int run_textbook(const TextbookOptions& o) {
  std::string out;
  for (int64_t i = 0; i < o.count; ++i) {
    if (i) out += "<|endoftext|>";
    out += make_textbook_document(o.seed, i);
  }
  if (auto parent = std::filesystem::path(o.output).parent_path(); !parent.empty()) {
    std::filesystem::create_directories(parent);
  }
  write_file_atomic(o.output, out.data(), out.size());
  spdlog::info("wrote {} textbook documents ({:.1f} MB) to {}", o.count, out.size() / 1e6, o.output);
  return 0;
}

}  // namespace

void add_data_command(CLI::App& root, Runner& run) {
  auto* cmd = root.add_subcommand("data", "Data pipeline: import, filter, deduplicate, decontaminate, tokenize and mix documents; run data recipes");
  cmd->require_subcommand(1);
  auto o = std::make_shared<TokenizeJob>();
  auto* tok = cmd->add_subcommand("tokenize", "Tokenize .txt / .jsonl files into token shards + manifest.json");
  tok->add_option("--tokenizer", o->tokenizer, "directory holding the tokenizer files")->required();
  tok->add_option("--input", o->inputs, "input files (.txt: <|endoftext|>-separated documents; .jsonl: \"text\")")
      ->required();
  tok->add_option("--output", o->output, "dataset directory")->required();
  tok->add_option("--shard-tokens", o->shard_tokens, "tokens per shard")->capture_default_str();
  tok->add_flag("--no-eos", o->no_eos, "do not end each document with the EOS token");
  tok->add_option("--chat-template", o->chat_template,
                  "built-in template for {\"messages\"} lines (default: the model directory's own, else phi3)");
  tok->add_flag("--special-tokens-in-content", o->special_tokens_in_content,
                "special-token text inside messages becomes control tokens (default: plain text)");
  tok->callback([&run, o]() { run = [o]() { return tokenize_dataset(*o); }; });

  add_data_stage_commands(cmd, run);
  add_data_run_command(cmd, run);
  add_data_classify_command(cmd, run);
  add_data_annotate_command(cmd, run);

  auto* synth = cmd->add_subcommand("synth", "Generate synthetic data");
  synth->require_subcommand(1);
  auto lego = std::make_shared<LegoOptions>();
  auto* lg = synth->add_subcommand("lego", "LEGO chains of + / - assignments to resolve (JSONL)");
  lg->add_option("--output", lego->output, "output JSONL file")->required();
  lg->add_option("--count", lego->count, "examples")->capture_default_str();
  lg->add_option("--length", lego->chain_length, "variables per chain (1-26)")->capture_default_str();
  lg->add_option("--seed", lego->seed, "seed (use different seeds for train and held-out splits)")->capture_default_str();
  lg->callback([&run, lego]() { run = [lego]() { return run_lego(*lego); }; });
  auto textbook = std::make_shared<TextbookOptions>();
  add_synth_teacher_command(synth, run);
  auto* tb = synth->add_subcommand("textbook", "Synthetic textbook lessons (arithmetic, comparisons, Python)");
  tb->add_option("--output", textbook->output, "output .txt (documents separated by <|endoftext|>)")->required();
  tb->add_option("--count", textbook->count, "documents")->capture_default_str();
  tb->add_option("--seed", textbook->seed, "seed")->capture_default_str();
  tb->callback([&run, textbook]() { run = [textbook]() { return run_textbook(*textbook); }; });
}

}  // namespace phi::cli
