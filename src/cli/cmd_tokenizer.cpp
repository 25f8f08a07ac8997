// phi tokenizer encode|decode|train
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "phi/core/error.h"
#include "phi/core/text_io.h"
#include "phi/tokenizer/tokenizer.h"
#include "phi/tokenizer/trainer.h"
#include "phi/infer/chat_template.h"
#include "phi/models/model_loader.h"

#include <filesystem>

namespace phi::cli {

namespace {

struct TokenizerSource {
  TokenizerFiles files;
  void add_options(CLI::App* cmd) {
    cmd->add_option("--model", files.directory, "model directory holding the tokenizer files");
    cmd->add_option("--spm", files.sentencepiece, "explicit SentencePiece tokenizer.model");
    cmd->add_option("--vocab", files.vocab, "explicit vocab.json / encoder.json (byte-level BPE)");
    cmd->add_option("--merges", files.merges, "explicit merges.txt / vocab.bpe (byte-level BPE)");
    cmd->add_option("--tiktoken", files.tiktoken, "explicit *.tiktoken ranks file");
    cmd->add_option("--added-tokens", files.added_tokens, "explicit added_tokens.json");
  }
};

std::vector<int64_t> parse_ids(const nlohmann::json& parsed, const std::string& where) {
  if (!parsed.is_array()) throw Error("expected a JSON array of token ids", where, "write e.g. [1, 2, 3]");
  std::vector<int64_t> values;
  for (size_t i = 0; i < parsed.size(); ++i) {
    if (!parsed[i].is_number_integer()) throw Error("$[" + std::to_string(i) + "] is not an integer", where);
    values.push_back(parsed[i].get<int64_t>());
  }
  return values;
}

struct EncodeCommand {
  TokenizerSource source;
  std::string text;
  std::string input;
  std::string jsonl;
  bool add_special = false;
  bool plain_special = false;
  bool as_prompt = false;
  int run() const {
    auto tokenizer = load_tokenizer(source.files);
    EncodeOptions options = as_prompt ? tokenizer->prompt_options() : EncodeOptions{};
    if (add_special) options.add_bos = options.add_eos = true;
    options.allow_special = !plain_special;
    if (!jsonl.empty()) {
      for_each_jsonl(jsonl, [&](const nlohmann::json& j, const std::string& where) {
        if (!j.is_object() || !j.contains("text") || !j["text"].is_string()) {
          throw Error("line needs a \"text\" string", where);
        }
        std::cout << nlohmann::json(tokenizer->encode(j["text"].get<std::string>(), options)).dump() << "\n";
        return true;
      });
      std::cout << std::flush;
      return 0;
    }
    auto ids = tokenizer->encode(input.empty() ? text : read_text_file(input), options);
    std::cout << nlohmann::json(ids).dump() << std::endl;
    return 0;
  }
};

struct DecodeCommand {
  TokenizerSource source;
  std::string ids;
  std::string input;
  std::string jsonl;
  bool skip_special = false;
  int run() const {
    auto tokenizer = load_tokenizer(source.files);
    if (!jsonl.empty()) {
      for_each_jsonl(jsonl, [&](const nlohmann::json& j, const std::string& where) {
        std::cout << nlohmann::json(tokenizer->decode(parse_ids(j, where), skip_special)).dump() << "\n";
        return true;
      });
      std::cout << std::flush;
      return 0;
    }
    std::string source_text = input.empty() ? ids : read_text_file(input);
    auto parsed = nlohmann::json::parse(source_text, nullptr, false);
    if (parsed.is_discarded()) throw Error("malformed JSON", input.empty() ? "--ids" : input);
    std::cout << tokenizer->decode(parse_ids(parsed, input.empty() ? "--ids" : input), skip_special) << std::flush;
    return 0;
  }
};

struct RenderChatCommand {
  TokenizerSource source;
  std::string messages;
  std::string chat_template;
  bool no_generation_prompt = false;
  bool ids = false;
  bool special_tokens_in_content = false;
  int run() const {
    auto tokenizer = load_tokenizer(source.files);
    auto parsed = nlohmann::json::parse(messages, nullptr, false);
    if (parsed.is_discarded()) {
      std::ifstream in(messages);
      if (!in) throw Error("--messages is neither JSON nor a readable file", messages);
      parsed = nlohmann::json::parse(in, nullptr, false);
      if (parsed.is_discarded()) throw Error("malformed JSON", messages);
    }
    ModelConfig config;
    if (!source.files.directory.empty() &&
        std::filesystem::exists(std::filesystem::path(source.files.directory) / "config.json")) {
      config = load_directory_config(source.files.directory);
    }
    auto chat = ChatTemplate::for_model(source.files.directory, config, *tokenizer, chat_template);
    chat.set_special_tokens_in_content(special_tokens_in_content);
    const auto messages_list = parse_chat_messages(parsed, "--messages");
    if (ids) {
      std::cout << nlohmann::json(chat.encode(*tokenizer, messages_list, !no_generation_prompt)).dump() << std::endl;
    } else {
      std::cout << chat.render(messages_list, !no_generation_prompt) << std::flush;
    }
    return 0;
  }
};

struct TrainCommand {
  TokenizerTrainOptions options;
  int run() const {
    train_tokenizer(options);
    return 0;
  }
};

}  // namespace

void add_tokenizer_command(CLI::App& root, Runner& run) {
  auto* cmd = root.add_subcommand("tokenizer", "Encode, decode and train tokenizers");
  cmd->require_subcommand(1);

  auto encode = std::make_shared<EncodeCommand>();
  auto* enc = cmd->add_subcommand("encode", "Print the token ids of a text as a JSON array");
  encode->source.add_options(enc);
  auto* text = enc->add_option("--text", encode->text, "the text");
  auto* input = enc->add_option("--input", encode->input, "a UTF-8 text file");
  auto* jsonl = enc->add_option("--jsonl", encode->jsonl, "batch: a JSONL file of {\"text\": ...}; one id array per line");
  text->excludes(input);
  text->excludes(jsonl);
  input->excludes(jsonl);
  enc->add_flag("--add-special", encode->add_special, "add BOS/EOS ids (none are added by default)");
  enc->add_flag("--plain-special", encode->plain_special, "encode special-token text as ordinary text");
  enc->add_flag("--as-prompt", encode->as_prompt,
                "encode as generate and serve encode a text prompt (BOS when tokenizer_config.json's add_bos_token says)");
  enc->callback([&run, encode, text, input, jsonl]() {
    if (text->count() + input->count() + jsonl->count() == 0) {
      throw CLI::RequiredError("one of --text, --input or --jsonl");
    }
    run = [encode]() { return encode->run(); };
  });

  auto decode = std::make_shared<DecodeCommand>();
  auto* dec = cmd->add_subcommand("decode", "Print the text of a JSON array of token ids");
  decode->source.add_options(dec);
  auto* ids = dec->add_option("--ids", decode->ids, "JSON array of ids, e.g. '[1, 2, 3]'");
  auto* ids_file = dec->add_option("--input", decode->input, "a file holding a JSON array of ids");
  auto* ids_jsonl = dec->add_option("--jsonl", decode->jsonl, "batch: one JSON id array per line; prints JSON strings");
  ids->excludes(ids_file);
  ids->excludes(ids_jsonl);
  ids_file->excludes(ids_jsonl);
  dec->add_flag("--skip-special", decode->skip_special, "drop special tokens from the text");
  dec->callback([&run, decode, ids, ids_file, ids_jsonl]() {
    if (ids->count() + ids_file->count() + ids_jsonl->count() == 0) {
      throw CLI::RequiredError("one of --ids, --input or --jsonl");
    }
    run = [decode]() { return decode->run(); };
  });

  auto render = std::make_shared<RenderChatCommand>();
  auto* rc = cmd->add_subcommand("render-chat", "Print a conversation rendered with the model's chat template");
  render->source.add_options(rc);
  rc->add_option("--messages", render->messages, "JSON [{\"role\", \"content\"}, ...] or a file holding it")->required();
  rc->add_option("--template", render->chat_template, "a built-in template name or a .jinja file (default: the model's)");
  rc->add_flag("--no-generation-prompt", render->no_generation_prompt, "do not end with the assistant header");
  rc->add_flag("--ids", render->ids, "print the token ids instead of the text (message content encoded as plain text)");
  rc->add_flag("--special-tokens-in-content", render->special_tokens_in_content,
               "with --ids: special-token text inside messages becomes control tokens (transformers' behaviour)");
  rc->callback([&run, render]() { run = [render]() { return render->run(); }; });

  auto train = std::make_shared<TrainCommand>();
  auto* tr = cmd->add_subcommand("train", "Train a tokenizer (SentencePiece or byte-level BPE) on text files");
  tr->add_option("--kind", train->options.kind, "spm or bpe")->required()->check(CLI::IsMember({"spm", "bpe"}));
  tr->add_option("--vocab-size", train->options.vocab_size, "vocabulary size")->required();
  tr->add_option("--input", train->options.inputs, "text files (.txt, or .jsonl with a \"text\" field)")->required();
  tr->add_option("--output", train->options.output, "output directory")->required();
  tr->add_option("--special", train->options.special_tokens, "special tokens to reserve (repeatable)");
  tr->callback([&run, train]() { run = [train]() { return train->run(); }; });
}

}  // namespace phi::cli
