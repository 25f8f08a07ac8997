// phi data tokenize --tokenizer DIR --input FILES --output DIR [--shard-tokens N] [--no-eos] [--threads N]
//   [--per-file] [--tasks N --task-index I --wait S]
//   Documents are encoded in batches on --threads threads (default: every core) and written in
//   input order, so the shards are the same for any thread count. --per-file (implied by --tasks)
//   writes each input file's shards as FFFFF-shard-NNNNN.bin and then .parts/FFFFF.json: a rerun
//   skips finished files, and task 0 assembles manifest.json once every file is done.
// phi data synth lego --output FILE [--count N] [--length L] [--seed S]
//   .txt: documents separated by the text "<|endoftext|>" (a file without it is one document);
//   .jsonl: one document per line: {"text"} (train on all of it), {"prompt", "answer"|"completion"}
//   (train on the answer only) or {"messages"} rendered with --chat-template (train on the
//   assistant turns only); the last two write a per-token loss mask.
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/stage_output.h"
#include "core/file_util.h"
#include "phi/config/model_config.h"
#include "phi/core/error.h"
#include "phi/core/progress.h"
#include "phi/core/text_io.h"
#include "phi/data/chat_document.h"
#include "phi/data/lego.h"
#include "phi/data/shards.h"
#include "phi/data/textbook.h"
#include "phi/infer/chat_template.h"
#include "phi/models/family.h"
#include "phi/tokenizer/tokenizer.h"

namespace phi::cli {

namespace {

// One document to tokenize: plain text, a prompt/answer pair, or a conversation.
struct Document {
  std::string text;
  std::string prompt, answer;         // trained on the answer only
  std::vector<ChatMessage> messages;  // trained on the assistant turns only
  bool masked() const { return !messages.empty() || !answer.empty(); }
};

// A document from one JSONL line.
Document parse_document(const nlohmann::json& j, const std::string& where) {
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
  return d;
}

// One unit of work: a JSONL line still to parse (`line` > 0), or a document from a .txt file.
struct Item {
  std::string raw;
  int64_t line = 0;
  Document document;
};

// The items of one input file, in order.
template <typename F>
void for_each_item(const std::string& path, F&& item) {
  if (std::filesystem::path(path).extension() == ".jsonl") {
    for_each_jsonl_raw_line(path, [&](std::string&& line, int64_t number) {
      Item i;
      i.raw = std::move(line);
      i.line = number;
      item(std::move(i));
    });
    return;
  }
  const std::string text = read_text_file(path, "input");
  const std::string separator = "<|endoftext|>";
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(separator, start);
    std::string doc = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (doc.find_first_not_of(" \t\r\n") != std::string::npos) {
      Item i;
      i.document.text = std::move(doc);
      item(std::move(i));
    }
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
  const auto tokenizer_path = std::filesystem::absolute(o.tokenizer).string();
  EncodeOptions options;
  options.allow_special = false;
  // Conversations are rendered with the named template, else the model directory's own (its
  // tokenizer_config.json chat_template or its family's format), else the Phi-3 format.
  const auto model_config = std::filesystem::path(o.tokenizer) / "config.json";
  auto chat = !o.chat_template.empty() || !std::filesystem::exists(model_config)
                  ? ChatTemplate::builtin(o.chat_template.empty() ? "phi3" : o.chat_template, *tokenizer)
                  : ChatTemplate::for_model(o.tokenizer, load_model_config(model_config.string()), *tokenizer);
  chat.set_special_tokens_in_content(o.special_tokens_in_content);
  if (o.threads < 0) throw Error("--threads must be 0 (every core) or positive");
  if (o.threads > 0) at::set_num_threads(static_cast<int>(o.threads));
  auto encode = [&](const Document& d, std::vector<int64_t>& ids, std::vector<uint8_t>& mask) {
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
  };
  // Batches of items parsed and encoded on threads, written in order (the first bad line, by
  // position, is the error).
  std::vector<int64_t> file_bytes;
  int64_t input_bytes = 0;
  for (const auto& input : o.inputs) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(input, ec);
    file_bytes.push_back(ec ? 0 : static_cast<int64_t>(size));
    input_bytes += file_bytes.back();
  }
  Progress progress("tokenize", input_bytes, "bytes");  // each batch's bytes, the rest of a file at its end
  int64_t shown = 0, shown_before_file = 0;
  auto tokenize_file = [&](size_t f, ShardWriter& writer) {
    constexpr size_t kBatchBytes = 8 << 20, kBatchItems = 16384;
    const auto& path = o.inputs[f];
    std::vector<Item> batch;
    size_t batch_bytes = 0;
    auto flush = [&] {
      const auto n = batch.size();
      std::vector<std::vector<int64_t>> ids(n);
      std::vector<std::vector<uint8_t>> masks(n);
      std::vector<std::exception_ptr> errors(n);
      at::parallel_for(0, static_cast<int64_t>(n), 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const auto k = static_cast<size_t>(i);
          auto& item = batch[k];
          try {
            if (item.line > 0) {
              const auto where = path + ":" + std::to_string(item.line);
              const auto j = nlohmann::json::parse(item.raw, nullptr, false);
              if (j.is_discarded()) throw Error("line is not valid JSON", where);
              item.document = parse_document(j, where);
            }
            encode(item.document, ids[k], masks[k]);
          } catch (...) {
            errors[k] = std::current_exception();
          }
        }
      });
      for (size_t k = 0; k < n; ++k) {
        if (errors[k]) std::rethrow_exception(errors[k]);
        writer.add_document(ids[k], batch[k].document.masked() ? &masks[k] : nullptr);
      }
      progress.advance(static_cast<int64_t>(batch_bytes));
      shown += static_cast<int64_t>(batch_bytes);
      batch.clear();
      batch_bytes = 0;
    };
    for_each_item(path, [&](Item&& item) {
      batch_bytes += item.raw.size() + item.document.text.size();
      batch.push_back(std::move(item));
      if (batch_bytes >= kBatchBytes || batch.size() >= kBatchItems) flush();
    });
    flush();
  };
  auto file_finished = [&](size_t f) {
    shown_before_file += file_bytes[f];
    if (shown_before_file > shown) progress.advance(shown_before_file - shown);
    shown = std::max(shown, shown_before_file);
  };
  auto report = [&](const DatasetManifest& manifest) {
    spdlog::info("wrote {} documents, {} tokens in {} shards to {} ({:.1f} MB/s, {} threads)", manifest.n_documents(),
                 manifest.n_tokens(), manifest.shards.size(), o.output,
                 static_cast<double>(input_bytes) / 1e6 / std::max(progress.elapsed_seconds(), 1e-9),
                 at::get_num_threads());
  };

  if (!o.per_file && o.slice.tasks == 1) {
    ShardWriter writer(o.output, tokenizer->vocab_size(), eos, tokenizer_path, o.shard_tokens);
    for (size_t f = 0; f < o.inputs.size(); ++f) {
      tokenize_file(f, writer);
      file_finished(f);
    }
    progress.finish();
    report(writer.finish());
    return 0;
  }

  // Per input file: its shards (FFFFF-shard-NNNNN.bin), then .parts/FFFFF.json with their list and
  // the parameters' hash, last. A rerun skips the files whose part matches; task 0 assembles the
  // manifest once every file's part is there.
  o.slice.validate();
  const auto parts = std::filesystem::path(o.output) / ".parts";
  std::filesystem::create_directories(parts);
  remove_stale_temporaries(o.output);
  remove_stale_temporaries(parts.string());
  const nlohmann::json parameters = {{"inputs", o.inputs},
                                     {"tokenizer", tokenizer_path},
                                     {"shard_tokens", o.shard_tokens},
                                     {"eos", !o.no_eos},
                                     {"chat_template", o.chat_template},
                                     {"special_tokens_in_content", o.special_tokens_in_content}};
  const auto parameter_text = parameters.dump();
  const auto parameter_hash = XXH64(parameter_text.data(), parameter_text.size(), 0);
  const auto part_path = [&](size_t f) { return (parts / numbered(static_cast<int64_t>(f), ".json")).string(); };
  const auto part_done = [&](size_t f) {
    return std::filesystem::exists(part_path(f)) &&
           read_json_file(part_path(f)).value("parameters_hash", uint64_t{0}) == parameter_hash;
  };
  if (o.slice.finisher()) std::filesystem::remove(std::filesystem::path(o.output) / "manifest.json");
  int64_t resumed = 0;
  for (size_t f = 0; f < o.inputs.size(); ++f) {
    if (o.slice.mine(f) && !part_done(f)) {
      ShardWriter writer(o.output, tokenizer->vocab_size(), eos, tokenizer_path, o.shard_tokens,
                         numbered(static_cast<int64_t>(f), "-shard-"));
      tokenize_file(f, writer);
      write_json_file_atomic(part_path(f), {{"parameters_hash", parameter_hash},
                                            {"input", o.inputs[f]},
                                            {"manifest", manifest_to_json(writer.finish(false))}});
    } else if (o.slice.mine(f)) {
      ++resumed;
    }
    file_finished(f);
  }
  progress.finish();
  if (resumed) spdlog::info("tokenize: {} files were already done", resumed);
  if (!o.slice.finisher()) return 0;
  if (!wait_until(
          [&] {
            for (size_t f = 0; f < o.inputs.size(); ++f) {
              if (!part_done(f)) return false;
            }
            return true;
          },
          o.slice.wait_seconds)) {
    spdlog::warn("tokenize: other tasks' files are not all done; run again when they finish");
    return 0;
  }
  DatasetManifest manifest;  // the parts' own fields (vocabulary, EOS, token bytes), every part's shards
  std::string masked_file, unmasked_file;
  for (size_t f = 0; f < o.inputs.size(); ++f) {
    const auto part = manifest_from_json(read_json_file(part_path(f)).at("manifest"), part_path(f));
    if (part.n_documents() > 0) (part.loss_mask ? masked_file : unmasked_file) = o.inputs[f];
    if (f == 0) {
      manifest = part;
      manifest.shards.clear();
    }
    manifest.shards.insert(manifest.shards.end(), part.shards.begin(), part.shards.end());
  }
  if (!masked_file.empty() && !unmasked_file.empty()) {
    throw Error("a dataset's documents must all have a loss mask or none: " + masked_file +
                " has prompts or "
                "conversations (masked), " +
                unmasked_file + " plain text");
  }
  manifest.loss_mask = !masked_file.empty();
  write_manifest(o.output, manifest);
  report(manifest);
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
    out += nlohmann::json(
               {{"text", ex.prompt + ex.answer}, {"prompt", ex.prompt}, {"answer", ex.answer}, {"values", ex.values}})
               .dump() +
           "\n";
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
  auto* cmd = root.add_subcommand(
      "data",
      "Data pipeline: import, filter, deduplicate, decontaminate, tokenize and mix documents; run data recipes");
  cmd->require_subcommand(1);
  auto o = std::make_shared<TokenizeJob>();
  auto* tok = cmd->add_subcommand("tokenize", "Tokenize .txt / .jsonl files into token shards + manifest.json");
  tok->add_option("--tokenizer", o->tokenizer, "directory holding the tokenizer files")->required();
  tok->add_option("--input", o->inputs, "input files (.txt: <|endoftext|>-separated documents; .jsonl: \"text\")")
      ->required();
  tok->add_option("--output", o->output, "dataset directory")->required();
  tok->add_option("--shard-tokens", o->shard_tokens, "tokens per shard")->capture_default_str();
  tok->add_flag("--no-eos", o->no_eos, "do not end each document with the EOS token");
  tok->add_option("--threads", o->threads, "threads encoding documents (0: every core)")->capture_default_str();
  tok->add_flag("--per-file", o->per_file,
                "resumable: each input file's shards and a completion marker (.parts/), the manifest assembled last");
  add_task_options(tok, o->slice);
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
  lg->add_option("--seed", lego->seed, "seed (use different seeds for train and held-out splits)")
      ->capture_default_str();
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
