// The data pipeline's stages, each reading JSONL documents (phi/data/documents.h) from --input and
// writing --output DIR: NNNNN.jsonl (the documents kept, one file per input file, in order),
// removed.jsonl (each dropped id with its reason) and stats.json (written last: the stage is
// complete; a rerun with the same inputs and parameters does nothing).
//
// phi data filter --rules gopher --input PATHS... --output DIR
//
// phi data dedup --method exact|minhash --input PATHS... --output DIR [--ngrams 5] [--buckets 14]
//   [--hashes-per-bucket 8] [--seed 1] [--permutations FILE]
// removed.jsonl names the id each removed document duplicates. MinHash signatures are kept per
// input file in DIR/signatures/NNNNN.minhash (validated when read), so a killed run resumes
// without recomputing finished files. Format of a signature file: "PHIMH1\0\0", uint64 parameter hash,
// uint64 documents, uint64 hashes per document, then documents x hashes little-endian uint64
// (all bits set: no signature, fewer words than the n-gram size).
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <unordered_map>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "cli/commands.h"
#include "core/file_util.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/core/progress.h"
#include "phi/data/dedup.h"
#include "phi/data/documents.h"
#include "phi/data/quality_filters.h"
#include "phi/data/text_norm.h"

namespace phi::cli {

namespace {

namespace fs = std::filesystem;

struct DedupOptions {
  std::string method = "minhash";
  std::vector<std::string> inputs;
  std::string output;
  MinhashConfig minhash;
  std::string permutations;
};

std::string numbered(int64_t i, const char* suffix) {
  char name[32];
  std::snprintf(name, sizeof(name), "%05lld%s", static_cast<long long>(i), suffix);
  return name;
}

// One stage's output, the contract at the top of this file.
class StageOutput {
 public:
  /// `reasons`: the reasons stats.json counts even when nothing is dropped for them.
  StageOutput(std::string stage, std::string directory, nlohmann::json parameters,
              const std::vector<std::string>& reasons = {})
      : stage_(std::move(stage)), directory_(std::move(directory)), parameters_(std::move(parameters)),
        start_(std::chrono::steady_clock::now()) {
    fs::create_directories(directory_);
    for (const auto& r : reasons) reasons_[r] = 0;
  }

  /// Whether stats.json says the stage already ran with these inputs and parameters. With other
  /// ones it goes: the directory is no longer complete while the stage runs again.
  bool complete() const {
    const auto path = stats_path();
    if (!fs::exists(path)) return false;
    if (read_json_file(path).value("parameters", nlohmann::json()) == parameters_) {
      spdlog::info("{}: {} is complete for these inputs and parameters; nothing to do", stage_, directory_);
      return true;
    }
    fs::remove(path);
    return false;
  }

  void keep(const Document& d) {
    kept_ += document_to_json(d).dump() + "\n";
    ++documents_out_;
    bytes_out_ += static_cast<int64_t>(d.text.size());
    count_in(d);
  }
  /// `extra`: more fields for its line in removed.jsonl.
  void drop(const Document& d, const std::string& reason, nlohmann::json extra = nlohmann::json::object()) {
    extra["id"] = d.id;
    extra["source"] = d.source;
    extra["reason"] = reason;
    removed_ += extra.dump() + "\n";
    ++reasons_[reason];
    count_in(d);
  }
  /// Input file `index` is done: its kept documents are written.
  void end_file(size_t index) {
    write_file_atomic((fs::path(directory_) / numbered(static_cast<int64_t>(index), ".jsonl")).string(), kept_.data(),
                      kept_.size());
    kept_.clear();
  }
  /// removed.jsonl, then stats.json (last: the stage is complete) with `extra` fields; the stats.
  nlohmann::json finish(const nlohmann::json& extra) {
    write_file_atomic((fs::path(directory_) / "removed.jsonl").string(), removed_.data(), removed_.size());
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    nlohmann::json stats = {
        {"stage", stage_},
        {"documents_in", documents_in_},
        {"documents_out", documents_out_},
        {"bytes_in", bytes_in_},
        {"bytes_out", bytes_out_},
        {"removed", reasons_},
        {"seconds", seconds},
        {"documents_per_second", static_cast<double>(documents_in_) / std::max(seconds, 1e-9)},
        {"megabytes_per_second", static_cast<double>(bytes_in_) / 1e6 / std::max(seconds, 1e-9)},
        {"parameters", parameters_}};
    stats.update(extra);
    write_json_file_atomic(stats_path(), stats);
    return stats;
  }

 private:
  std::string stats_path() const { return (fs::path(directory_) / "stats.json").string(); }
  void count_in(const Document& d) {
    ++documents_in_;
    bytes_in_ += static_cast<int64_t>(d.text.size());
  }
  std::string stage_, directory_;
  nlohmann::json parameters_;
  std::chrono::steady_clock::time_point start_;
  std::string kept_, removed_;
  std::map<std::string, int64_t> reasons_;
  int64_t documents_in_ = 0, documents_out_ = 0, bytes_in_ = 0, bytes_out_ = 0;
};

constexpr char kMagic[8] = {'P', 'H', 'I', 'M', 'H', '1', 0, 0};

void write_signatures(const std::string& path, uint64_t parameters, const std::vector<std::vector<uint64_t>>& sigs,
                      size_t hashes) {
  std::string bytes(kMagic, sizeof kMagic);
  auto put = [&](uint64_t v) { bytes.append(reinterpret_cast<const char*>(&v), sizeof v); };
  put(parameters);
  put(sigs.size());
  put(hashes);
  for (const auto& s : sigs) {
    if (s.empty()) {
      for (size_t h = 0; h < hashes; ++h) put(~uint64_t{0});
    } else {
      for (auto v : s) put(v);
    }
  }
  write_file_atomic(path, bytes.data(), bytes.size());
}

// The signatures of a finished file, or nothing when they are from other parameters. A truncated or
// corrupt file is an error naming it.
std::optional<std::vector<std::vector<uint64_t>>> read_signatures(const std::string& path, uint64_t parameters,
                                                                  size_t hashes) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t header = sizeof kMagic + 3 * sizeof(uint64_t);
  if (bytes.size() < header || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    throw Error("not a signature file (bad header)", path, "delete it: the stage recomputes it");
  }
  uint64_t v[3];
  std::memcpy(v, bytes.data() + sizeof kMagic, sizeof v);
  if (v[0] != parameters || v[2] != hashes) return std::nullopt;
  const size_t expected = header + v[1] * hashes * sizeof(uint64_t);
  if (bytes.size() != expected) {
    throw Error("signature file has " + std::to_string(bytes.size()) + " bytes, its header says " +
                    std::to_string(expected) + " (truncated or corrupt)",
                path, "delete it: the stage recomputes it");
  }
  std::vector<std::vector<uint64_t>> sigs(v[1]);
  const char* p = bytes.data() + header;
  for (auto& s : sigs) {
    s.resize(hashes);
    std::memcpy(s.data(), p, hashes * sizeof(uint64_t));
    p += hashes * sizeof(uint64_t);
    if (std::all_of(s.begin(), s.end(), [](uint64_t x) { return x == ~uint64_t{0}; })) s.clear();
  }
  return sigs;
}

int run_dedup(const DedupOptions& o) {
  if (o.method != "exact" && o.method != "minhash") throw Error("--method must be exact or minhash, got " + o.method);
  const auto files = document_files(o.inputs);
  if (files.empty()) throw Error("no document files (.jsonl, .jsonl.gz, .jsonl.zst) in the inputs");
  const auto permutations = o.permutations.empty() ? MinhashPermutations::from_seed(o.minhash)
                                                   : MinhashPermutations::from_file(o.permutations, o.minhash);
  nlohmann::json parameters = {{"method", o.method}, {"inputs", files}};
  if (o.method == "minhash") {
    parameters["n_grams"] = o.minhash.n_grams;
    parameters["buckets"] = o.minhash.buckets;
    parameters["hashes_per_bucket"] = o.minhash.hashes_per_bucket;
    parameters["a"] = permutations.a;
    parameters["b"] = permutations.b;
  }
  const char* reason = o.method == "exact" ? "duplicate" : "near-duplicate";
  StageOutput output("dedup", o.output, parameters, {reason});
  if (output.complete()) return 0;
  const std::string parameter_text = parameters.dump();
  const uint64_t parameter_hash = XXH64(parameter_text.data(), parameter_text.size(), 0);

  // Pass 1: a key (exact) or a signature (minhash) per document, file by file.
  std::vector<std::string> ids;
  std::vector<std::vector<uint64_t>> signatures;
  std::vector<uint64_t> keys;
  const size_t hashes = static_cast<size_t>(o.minhash.hashes());
  fs::create_directories(fs::path(o.output) / "signatures");
  Progress progress(o.method == "minhash" ? "minhash signatures" : "exact keys", static_cast<int64_t>(files.size()),
                    "files");
  int64_t resumed = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    std::vector<Document> docs;
    for_each_document(files[f], [&](Document&& d) { docs.push_back(std::move(d)); });
    for (const auto& d : docs) ids.push_back(d.id);
    if (o.method == "exact") {
      std::vector<uint64_t> k(docs.size());
      at::parallel_for(0, static_cast<int64_t>(docs.size()), 16, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) k[static_cast<size_t>(i)] = exact_dedup_key(docs[static_cast<size_t>(i)].text);
      });
      keys.insert(keys.end(), k.begin(), k.end());
      progress.advance();
      continue;
    }
    const auto sig_path = (fs::path(o.output) / "signatures" / numbered(static_cast<int64_t>(f), ".minhash")).string();
    std::optional<std::vector<std::vector<uint64_t>>> sigs;
    if (fs::exists(sig_path)) sigs = read_signatures(sig_path, parameter_hash, hashes);
    if (sigs && sigs->size() != docs.size()) {
      throw Error("signature file holds " + std::to_string(sigs->size()) + " documents, its input " +
                      std::to_string(docs.size()),
                  sig_path, "the input changed since: delete the output directory");
    }
    if (sigs) {
      ++resumed;
    } else {
      sigs.emplace(docs.size());
      at::parallel_for(0, static_cast<int64_t>(docs.size()), 16, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          (*sigs)[static_cast<size_t>(i)] = minhash_signature(docs[static_cast<size_t>(i)].text, o.minhash, permutations);
        }
      });
      write_signatures(sig_path, parameter_hash, *sigs, hashes);
    }
    for (auto& s : *sigs) signatures.push_back(std::move(s));
    progress.advance();
  }
  progress.finish();
  if (resumed) spdlog::info("dedup: signatures of {} of {} files were already computed", resumed, files.size());

  // Pass 2: what goes, and what it duplicates.
  std::vector<int64_t> duplicate_of(ids.size(), -1);
  if (o.method == "exact") {
    std::unordered_map<uint64_t, int64_t> first;
    for (size_t i = 0; i < keys.size(); ++i) {
      auto [it, inserted] = first.emplace(keys[i], static_cast<int64_t>(i));
      if (!inserted) duplicate_of[i] = it->second;
    }
  } else {
    for (const auto& [doc, kept] : minhash_duplicates(signatures, o.minhash)) {
      duplicate_of[static_cast<size_t>(doc)] = kept;
    }
  }

  // Pass 3: the kept documents, file by file, and the removed ones with what they duplicate.
  size_t index = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    for_each_document(files[f], [&](Document&& d) {
      const auto dup = duplicate_of[index++];
      if (dup < 0) {
        output.keep(d);
      } else {
        output.drop(d, reason, {{"duplicate_of", ids[static_cast<size_t>(dup)]}});
      }
    });
    output.end_file(f);
  }
  const auto stats = output.finish(
      {{"method", o.method},
       {"memory_bytes_per_document", o.method == "exact" ? 8 : static_cast<int64_t>(hashes * sizeof(uint64_t))}});
  const auto documents_in = stats["documents_in"].get<int64_t>(), documents_out = stats["documents_out"].get<int64_t>();
  spdlog::info("dedup ({}): {} documents in, {} kept, {} removed ({:.0f} documents/s)", o.method, documents_in,
               documents_out, documents_in - documents_out, stats["documents_per_second"].get<double>());
  return 0;
}

struct FilterOptions {
  std::string rules = "gopher";
  std::vector<std::string> inputs;
  std::string output;
};

int run_filter(const FilterOptions& o) {
  if (o.rules != "gopher") {
    throw Error("--rules " + o.rules + " is not available: this build filters with gopher (c4 and code are not built yet)");
  }
  const auto files = document_files(o.inputs);
  if (files.empty()) throw Error("no document files (.jsonl, .jsonl.gz, .jsonl.zst) in the inputs");
  const GopherQualityOptions gopher;
  const nlohmann::json parameters = {{"rules", o.rules}, {"inputs", files},
                                     {"gopher", {{"min_doc_words", gopher.min_doc_words},
                                                 {"max_doc_words", gopher.max_doc_words},
                                                 {"min_avg_word_length", gopher.min_avg_word_length},
                                                 {"max_avg_word_length", gopher.max_avg_word_length},
                                                 {"max_symbol_word_ratio", gopher.max_symbol_word_ratio},
                                                 {"max_bullet_lines_ratio", gopher.max_bullet_lines_ratio},
                                                 {"max_ellipsis_lines_ratio", gopher.max_ellipsis_lines_ratio},
                                                 {"max_non_alpha_words_ratio", gopher.max_non_alpha_words_ratio},
                                                 {"min_stop_words", gopher.min_stop_words},
                                                 {"stop_words", gopher.stop_words}}}};
  StageOutput output("filter", o.output, parameters);
  if (output.complete()) return 0;
  Progress progress("gopher filter", static_cast<int64_t>(files.size()), "files");
  for (size_t f = 0; f < files.size(); ++f) {
    std::vector<Document> docs;
    for_each_document(files[f], [&](Document&& d) { docs.push_back(std::move(d)); });
    std::vector<std::string> why(docs.size());
    at::parallel_for(0, static_cast<int64_t>(docs.size()), 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) why[static_cast<size_t>(i)] = gopher_quality(docs[static_cast<size_t>(i)].text, gopher);
    });
    for (size_t i = 0; i < docs.size(); ++i) {
      if (why[i].empty()) {
        output.keep(docs[i]);
      } else {
        output.drop(docs[i], why[i]);
      }
    }
    output.end_file(f);
    progress.advance();
  }
  progress.finish();
  const auto stats = output.finish({{"rules", o.rules}});
  spdlog::info("filter ({}): {} documents in, {} kept ({:.1f} MB/s)", o.rules, stats["documents_in"].get<int64_t>(),
               stats["documents_out"].get<int64_t>(), stats["megabytes_per_second"].get<double>());
  return 0;
}

}  // namespace

void add_data_stage_commands(CLI::App* data, Runner& run) {
  auto f = std::make_shared<FilterOptions>();
  auto* filter = data->add_subcommand("filter", "Drop documents by heuristic quality rules (gopher)");
  filter->add_option("--rules", f->rules, "rule set: gopher (datatrove's GopherQualityFilter defaults)")
      ->capture_default_str();
  filter->add_option("--input", f->inputs, "JSONL files or directories of them")->required();
  filter->add_option("--output", f->output, "output directory")->required();
  filter->callback([&run, f]() { run = [f]() { return run_filter(*f); }; });

  auto o = std::make_shared<DedupOptions>();
  auto* cmd = data->add_subcommand("dedup", "Remove duplicate (exact) or near-duplicate (MinHash) documents");
  cmd->add_option("--method", o->method, "exact (normalised text) or minhash")->capture_default_str();
  cmd->add_option("--input", o->inputs, "JSONL files or directories of them")->required();
  cmd->add_option("--output", o->output, "output directory")->required();
  cmd->add_option("--ngrams", o->minhash.n_grams, "words per shingle")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--buckets", o->minhash.buckets, "LSH bands")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--hashes-per-bucket", o->minhash.hashes_per_bucket, "hashes per band")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seed", o->minhash.seed, "seed of the permutations")->capture_default_str();
  cmd->add_option("--permutations", o->permutations,
                  "JSON file {\"a\": [...], \"b\": [...]} with every hash's permutation (instead of --seed)");
  cmd->callback([&run, o]() { run = [o]() { return run_dedup(*o); }; });
}

}  // namespace phi::cli
