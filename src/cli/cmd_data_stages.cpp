// The data pipeline's stages, each reading JSONL documents (phi/data/documents.h) from --input and
// writing --output DIR: NNNNN.jsonl (the documents kept, one file per input file, in order),
// removed.jsonl (each dropped id with its reason) and stats.json (written last: the stage is
// complete; a rerun with the same inputs and parameters does nothing).
//
// phi data import --from PATHS... --output DIR [--extensions .py ...] [--separator TEXT] [--source NAME]
//   [--files-per-shard 1000] [--max-bytes 1048576]
// Source trees (the way code corpora arrive) or text files into documents: one per file, id
// "<root name>/<path under it>", or one per piece between separators ("#k" appended).
//
// Every stage takes --tasks N --task-index I [--wait SECONDS]: the process works on every N-th
// input file from I; task 0 then finishes the stage (the reduce: removed.jsonl, stats.json, and
// dedup's clustering) once every file is done, waiting up to --wait for the others.
//
// phi data filter --rules gopher|c4|code --input PATHS... --output DIR [--param key=value]...
// The c4 rules rewrite the documents they keep (only the lines that pass stay).
//
// phi data decontaminate --input PATHS... --output DIR [--eval PATHS...] [--ngram 13] [--min-words 13]
//   [--action drop|cut|report] [--cut-margin 200] [--min-piece 200] [--max-pieces 10]
// hits.jsonl lists every document that matches an eval item, once per item (the span and the
// number of n-grams); removed.jsonl names the eval item a dropped document matches.
//
// phi data dedup --method exact|minhash --input PATHS... --output DIR [--ngrams 5] [--buckets 14]
//   [--hashes-per-bucket 8] [--seed 1] [--permutations FILE]
// removed.jsonl names the id each removed document duplicates. Keys (exact) and signatures (minhash)
// are kept per input file in DIR/signatures/NNNNN.exact|.minhash (validated when read), so a killed
// run resumes without recomputing finished files. Format of a signature file: "PHIMH1\0\0", uint64 parameter hash,
// uint64 documents, uint64 hashes per document, then documents x hashes little-endian uint64
// (all bits set: no signature, fewer words than the n-gram size).
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

#include <sys/types.h>

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "cli/commands.h"
#include "cli/data_stages.h"
#include "cli/stage_output.h"
#include "core/file_util.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/core/progress.h"
#include "phi/core/text_io.h"
#include "phi/data/code_filters.h"
#include "phi/data/decontamination.h"
#include "phi/data/dedup.h"
#include "phi/data/documents.h"
#include "phi/data/quality_filters.h"
#include "phi/data/text_norm.h"

namespace phi::cli {

namespace {

namespace fs = std::filesystem;

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

}  // namespace

int run_dedup(const DedupOptions& o, const TaskSlice& slice) {
  slice.validate();
  if (o.method != "exact" && o.method != "minhash") throw Error("--method must be exact or minhash, got " + o.method);
  const auto files = document_files(o.inputs);
  if (files.empty()) throw Error("no document files (.jsonl, .jsonl.gz, .jsonl.zst) in the inputs");
  const auto permutations = o.permutations.empty() ? MinhashPermutations::from_seed(o.minhash)
                                                   : MinhashPermutations::from_file(o.permutations, o.minhash);
  nlohmann::json parameters = {{"method", o.method}, {"inputs", files}, {"skip_bad_records", o.skip_bad_records}};
  if (o.method == "minhash") {
    parameters["n_grams"] = o.minhash.n_grams;
    parameters["buckets"] = o.minhash.buckets;
    parameters["hashes_per_bucket"] = o.minhash.hashes_per_bucket;
    parameters["a"] = permutations.a;
    parameters["b"] = permutations.b;
  }
  const char* reason = o.method == "exact" ? "duplicate" : "near-duplicate";
  StageOutput output("dedup", o.output, parameters, files.size(), {reason});
  if (output.complete()) return 0;
  const std::string parameter_text = parameters.dump();
  const uint64_t parameter_hash = XXH64(parameter_text.data(), parameter_text.size(), 0);
  const bool exact = o.method == "exact";
  const size_t hashes = exact ? 1 : static_cast<size_t>(o.minhash.hashes());
  const auto signature_path = [&](size_t f) {
    return (fs::path(o.output) / "signatures" / numbered(static_cast<int64_t>(f), exact ? ".exact" : ".minhash"))
        .string();
  };
  fs::create_directories(fs::path(o.output) / "signatures");

  // Pass 1 (per file, this task's files): a key (exact) or a signature (minhash) per document,
  // kept in DIR/signatures so that a killed run or the finishing task reads them back.
  Progress progress(exact ? "exact keys" : "minhash signatures", static_cast<int64_t>(files.size()), "files");
  int64_t resumed = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    const auto path = signature_path(f);
    if (!slice.mine(f) || (fs::exists(path) && read_signatures(path, parameter_hash, hashes))) {
      resumed += slice.mine(f) ? 1 : 0;
      progress.advance();
      continue;
    }
    std::vector<Document> docs;
    for_each_document(
        files[f], [&](Document&& d) { docs.push_back(std::move(d)); },
        o.skip_bad_records ? [](const std::string&, const std::string&) {}
                           : std::function<void(const std::string&, const std::string&)>());
    std::vector<std::vector<uint64_t>> sigs(docs.size());
    at::parallel_for(0, static_cast<int64_t>(docs.size()), 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const auto& text = docs[static_cast<size_t>(i)].text;
        sigs[static_cast<size_t>(i)] =
            exact ? std::vector<uint64_t>{exact_dedup_key(text)} : minhash_signature(text, o.minhash, permutations);
      }
    });
    write_signatures(path, parameter_hash, sigs, hashes);
    progress.advance();
  }
  progress.finish();
  if (resumed) spdlog::info("dedup: keys of {} files were already computed", resumed);
  if (!slice.finisher()) {
    spdlog::info("dedup: task {} of {} computed its files' keys; task 0 clusters and writes", slice.index, slice.tasks);
    return 0;
  }
  if (!wait_until(
          [&] {
            return std::all_of(files.begin(), files.end(), [&, f = size_t{0}](const std::string&) mutable {
              const auto path = signature_path(f++);
              return fs::exists(path);
            });
          },
          slice.wait_seconds)) {
    spdlog::warn("dedup: other tasks' keys are not all there yet; run again when they finish");
    return 0;
  }

  // Pass 2 (the reduce): what goes and what it duplicates. Exact keys are held in memory (8 bytes
  // per document); MinHash band records up to the memory limit, then as sorted runs on disk.
  std::vector<size_t> first_of_file;
  std::vector<int64_t> duplicate_of;
  ClusterStats cluster_stats;
  if (exact) {
    std::unordered_map<uint64_t, int64_t> first;
    int64_t i = 0;
    for (size_t f = 0; f < files.size(); ++f) {
      auto sigs = read_signatures(signature_path(f), parameter_hash, hashes);
      if (!sigs)
        throw Error("key file is from other parameters", signature_path(f), "delete it: the stage recomputes it");
      first_of_file.push_back(static_cast<size_t>(i));
      for (const auto& sig : *sigs) {
        const uint64_t key = sig.empty() ? ~uint64_t{0} : sig[0];
        auto [it, inserted] = first.emplace(key, i);
        duplicate_of.push_back(inserted ? -1 : it->second);
        ++i;
      }
    }
    first_of_file.push_back(static_cast<size_t>(i));
  } else {
    size_t f = 0, total = 0;
    const auto spill_dir = (fs::path(o.output) / "signatures" / "spill").string();
    fs::remove_all(spill_dir);  // runs of a killed run
    const auto removed = minhash_duplicates_bounded(
        [&](std::vector<std::vector<uint64_t>>& sigs) {
          if (f == files.size()) return false;
          auto read = read_signatures(signature_path(f), parameter_hash, hashes);
          if (!read)
            throw Error("key file is from other parameters", signature_path(f), "delete it: the stage recomputes it");
          sigs = std::move(*read);
          first_of_file.push_back(total);
          total += sigs.size();
          ++f;
          return true;
        },
        -1, o.minhash, static_cast<size_t>(o.memory_limit_mb) << 20, spill_dir, &cluster_stats);
    fs::remove_all(spill_dir);
    first_of_file.push_back(total);
    duplicate_of.assign(total, -1);
    for (const auto& [doc, kept] : removed) duplicate_of[static_cast<size_t>(doc)] = kept;
  }
  // The ids of the documents kept in others' place.
  std::map<int64_t, std::string> kept_ids;
  for (auto d : duplicate_of) {
    if (d >= 0) kept_ids[d] = "";
  }
  for (size_t f = 0; f < files.size() && !kept_ids.empty(); ++f) {
    auto it = kept_ids.lower_bound(static_cast<int64_t>(first_of_file[f]));
    if (it == kept_ids.end() || it->first >= static_cast<int64_t>(first_of_file[f + 1])) continue;
    int64_t index = static_cast<int64_t>(first_of_file[f]);
    for_each_document(
        files[f],
        [&](Document&& d) {
          if (auto k = kept_ids.find(index++); k != kept_ids.end()) k->second = d.id;
        },
        o.skip_bad_records ? [](const std::string&, const std::string&) {}
                           : std::function<void(const std::string&, const std::string&)>());
  }

  // Pass 3 (per file): the kept documents, and the removed ones with what they duplicate.
  for (size_t f = 0; f < files.size(); ++f) {
    if (output.file_done(f)) continue;
    auto index = first_of_file[f];
    for_each_document(
        files[f],
        [&](Document&& d) {
          if (index >= first_of_file[f + 1]) {
            throw Error("the input has more documents than when its keys were computed", files[f],
                        "the input changed: delete the output directory");
          }
          const auto dup = duplicate_of[index++];
          if (dup < 0) {
            output.keep(d);
          } else {
            output.drop(d, reason, {{"duplicate_of", kept_ids.at(dup)}});
          }
        },
        output.bad_records_if(o.skip_bad_records));
    if (index != first_of_file[f + 1]) {
      throw Error("the input has fewer documents than when its keys were computed", files[f],
                  "the input changed: delete the output directory");
    }
    output.end_file(f);
  }
  const auto documents = static_cast<int64_t>(first_of_file.back());
  nlohmann::json memory = {{"limit_bytes", static_cast<int64_t>(o.memory_limit_mb) << 20}};
  if (exact) {
    memory["bytes_per_document"] = 8 + 8 + 16;  // key, duplicate_of, the hash map's node (about)
  } else {
    memory["union_find_bytes"] = cluster_stats.union_find_bytes;
    memory["peak_band_buffer_bytes"] = cluster_stats.peak_buffer_bytes;
    memory["spilled_runs"] = cluster_stats.runs_spilled;
    memory["bytes_per_document"] =
        16 + 8 +
        (documents > 0 ? static_cast<double>(cluster_stats.peak_buffer_bytes) / static_cast<double>(documents) : 0.0);
  }
  const auto stats = output.finish({{"method", o.method}, {"memory", memory}});
  const auto documents_in = stats["documents_in"].get<int64_t>(), documents_out = stats["documents_out"].get<int64_t>();
  spdlog::info("dedup ({}): {} documents in, {} kept, {} removed ({:.0f} documents/s)", o.method, documents_in,
               documents_out, documents_in - documents_out, stats["documents_per_second"].get<double>());
  return 0;
}

namespace {

// A rule set's parameters from JSON, every key known (an unknown one is an error with its path);
// the resolved parameters, defaults included, go to `resolved`.
template <typename Options, typename Fields>
Options read_rule_options(const nlohmann::json& params, const std::string& source, const std::string& path,
                          Fields fields, nlohmann::json& resolved) {
  Options o;
  JsonReader r(params, source, path);
  fields(o, [&](const char* key, auto& field) {
    field = r.optional(key, field);
    resolved[key] = field;
  });
  r.finish();
  return o;
}

GopherQualityOptions gopher_options(const nlohmann::json& params, const std::string& source, const std::string& path,
                                    nlohmann::json& resolved) {
  return read_rule_options<GopherQualityOptions>(
      params, source, path,
      [](GopherQualityOptions& o, auto field) {
        field("min_doc_words", o.min_doc_words);
        field("max_doc_words", o.max_doc_words);
        field("min_avg_word_length", o.min_avg_word_length);
        field("max_avg_word_length", o.max_avg_word_length);
        field("max_symbol_word_ratio", o.max_symbol_word_ratio);
        field("max_bullet_lines_ratio", o.max_bullet_lines_ratio);
        field("max_ellipsis_lines_ratio", o.max_ellipsis_lines_ratio);
        field("max_non_alpha_words_ratio", o.max_non_alpha_words_ratio);
        field("min_stop_words", o.min_stop_words);
        field("stop_words", o.stop_words);
      },
      resolved);
}

C4QualityOptions c4_options(const nlohmann::json& params, const std::string& source, const std::string& path,
                            nlohmann::json& resolved) {
  return read_rule_options<C4QualityOptions>(
      params, source, path,
      [](C4QualityOptions& o, auto field) {
        field("remove_citations", o.remove_citations);
        field("filter_no_terminal_punct", o.filter_no_terminal_punct);
        field("min_num_sentences", o.min_num_sentences);
        field("min_words_per_line", o.min_words_per_line);
        field("max_word_length", o.max_word_length);
        field("filter_lorem_ipsum", o.filter_lorem_ipsum);
        field("filter_javascript", o.filter_javascript);
        field("filter_curly_bracket", o.filter_curly_bracket);
        field("filter_policy", o.filter_policy);
      },
      resolved);
}

CodeFilterOptions code_options(const nlohmann::json& params, const std::string& source, const std::string& path,
                               nlohmann::json& resolved) {
  return read_rule_options<CodeFilterOptions>(
      params, source, path,
      [](CodeFilterOptions& o, auto field) {
        field("min_chars", o.min_chars);
        field("max_chars", o.max_chars);
        field("max_line_length", o.max_line_length);
        field("max_mean_line_length", o.max_mean_line_length);
        field("min_alphanumeric_fraction", o.min_alphanumeric_fraction);
        field("autogenerated_lines", o.autogenerated_lines);
        field("autogenerated_markers", o.autogenerated_markers);
        field("python", o.python);
      },
      resolved);
}

// "key=value" pairs into a JSON object; a value that is not JSON is a string.
nlohmann::json parse_params(const std::vector<std::string>& pairs) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& p : pairs) {
    const auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) throw Error("--param takes key=value, got '" + p + "'");
    const auto key = p.substr(0, eq), value = p.substr(eq + 1);
    try {
      out[key] = nlohmann::json::parse(value);
    } catch (const nlohmann::json::exception&) {
      out[key] = value;
    }
  }
  return out;
}

}  // namespace

int run_filter(const FilterOptions& o, const TaskSlice& slice) {
  slice.validate();
  if (o.rules != "gopher" && o.rules != "c4" && o.rules != "code") {
    throw Error("unknown rule set '" + o.rules + "'", "--rules", "the rule sets are gopher, c4 and code");
  }
  const auto files = document_files(o.inputs);
  if (files.empty()) throw Error("no document files (.jsonl, .jsonl.gz, .jsonl.zst) in the inputs");
  nlohmann::json resolved = nlohmann::json::object();
  std::function<std::string(std::string&)> rule;
  const std::string where = "$." + o.rules;
  if (o.rules == "gopher") {
    const auto opts = gopher_options(o.params, "--param", where, resolved);
    rule = [opts](std::string& text) { return gopher_quality(text, opts); };
  } else if (o.rules == "c4") {
    const auto opts = c4_options(o.params, "--param", where, resolved);
    rule = [opts](std::string& text) { return c4_quality(text, opts); };
  } else {
    const auto opts = code_options(o.params, "--param", where, resolved);
    rule = [opts](std::string& text) { return code_quality(text, opts); };
  }
  const nlohmann::json parameters = {
      {"rules", o.rules}, {"inputs", files}, {o.rules, resolved}, {"skip_bad_records", o.skip_bad_records}};
  StageOutput output("filter", o.output, parameters, files.size());
  if (output.complete()) return 0;
  Progress progress(o.rules + " filter", static_cast<int64_t>(files.size()), "files");
  for (size_t f = 0; f < files.size(); ++f) {
    if (!slice.mine(f) || output.file_done(f)) {
      progress.advance();
      continue;
    }
    std::vector<Document> docs;
    for_each_document(
        files[f], [&](Document&& d) { docs.push_back(std::move(d)); }, output.bad_records_if(o.skip_bad_records));
    std::vector<std::string> why(docs.size());
    at::parallel_for(0, static_cast<int64_t>(docs.size()), 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) why[static_cast<size_t>(i)] = rule(docs[static_cast<size_t>(i)].text);
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
  if (!output.ready_to_finish(slice)) return 0;
  const auto stats = output.finish({{"rules", o.rules}});
  spdlog::info("filter ({}): {} documents in, {} kept ({:.1f} MB/s)", o.rules, stats["documents_in"].get<int64_t>(),
               stats["documents_out"].get<int64_t>(), stats["megabytes_per_second"].get<double>());
  return 0;
}

namespace {

// The start of the UTF-8 character holding byte i (i itself when it starts one).
size_t char_start(const std::string& s, size_t i) {
  while (i > 0 && i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

std::string excerpt(const std::string& text, size_t begin, size_t end, size_t limit = 300) {
  if (end - begin > limit) end = char_start(text, begin + limit);
  return text.substr(begin, end - begin);
}

bool is_blank(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

// The text with every match and `margin` bytes around it cut out: the pieces left that keep at
// least `min_piece` bytes, blank-trimmed (GPT-3's cleaning rule).
std::vector<std::string> cut_pieces(const std::string& text, const std::vector<EvalMatch>& matches, int64_t margin,
                                    int64_t min_piece) {
  std::vector<std::pair<size_t, size_t>> cuts;
  for (const auto& m : matches) {
    const size_t b =
        char_start(text, m.begin > static_cast<size_t>(margin) ? m.begin - static_cast<size_t>(margin) : 0);
    const size_t e = char_start(text, std::min(text.size(), m.end + static_cast<size_t>(margin)));
    cuts.emplace_back(b, e);
  }
  std::sort(cuts.begin(), cuts.end());
  std::vector<std::string> pieces;
  size_t at = 0;
  auto take = [&](size_t b, size_t e) {
    while (b < e && is_blank(text[b])) ++b;
    while (e > b && is_blank(text[e - 1])) --e;
    if (static_cast<int64_t>(e - b) >= min_piece) pieces.push_back(text.substr(b, e - b));
  };
  for (const auto& [b, e] : cuts) {
    if (b > at) take(at, b);
    at = std::max(at, e);
  }
  if (at < text.size()) take(at, text.size());
  return pieces;
}

}  // namespace

int run_decontaminate(const DecontaminateOptions& o, const TaskSlice& slice) {
  slice.validate();
  if (o.action != "drop" && o.action != "cut" && o.action != "report") {
    throw Error("--action must be drop, cut or report, got " + o.action);
  }
  if (o.index.n_gram < 1 || o.index.min_words < 1) throw Error("--ngram and --min-words must be positive");
  const auto files = document_files(o.inputs);
  if (files.empty()) throw Error("no document files (.jsonl, .jsonl.gz, .jsonl.zst) in the inputs");
  for (const auto& e : o.eval) {
    if (!fs::exists(e)) {
      throw Error("eval path does not exist", e, "--eval takes eval sets: files or directories (../shared/data/eval)");
    }
  }
  EvalIndex index(o.index);
  index.add(o.eval);
  if (index.items() == 0) throw Error("no eval items found under --eval", o.eval.front());
  nlohmann::json parameters = {{"inputs", files},          {"eval", o.eval},
                               {"n_gram", o.index.n_gram}, {"min_words", o.index.min_words},
                               {"action", o.action},       {"skip_bad_records", o.skip_bad_records}};
  if (o.action == "cut") {
    parameters["cut_margin"] = o.cut_margin;
    parameters["min_piece"] = o.min_piece;
    parameters["max_pieces"] = o.max_pieces;
  }
  StageOutput output("decontaminate", o.output, parameters, files.size(), {"contaminated"});
  if (output.complete()) return 0;
  spdlog::info("decontaminate: {} eval items, {} distinct n-grams, from {}", index.items(), index.n_grams(),
               o.eval.front());
  Progress progress("decontaminate", static_cast<int64_t>(files.size()), "files");
  for (size_t f = 0; f < files.size(); ++f) {
    if (!slice.mine(f) || output.file_done(f)) {
      progress.advance();
      continue;
    }
    std::string hits;
    std::vector<Document> docs;
    for_each_document(
        files[f], [&](Document&& d) { docs.push_back(std::move(d)); }, output.bad_records_if(o.skip_bad_records));
    std::vector<std::vector<EvalMatch>> found(docs.size());
    at::parallel_for(0, static_cast<int64_t>(docs.size()), 8, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) found[static_cast<size_t>(i)] = index.find(docs[static_cast<size_t>(i)].text);
    });
    for (size_t i = 0; i < docs.size(); ++i) {
      auto& d = docs[i];
      const auto& matches = found[i];
      if (matches.empty()) {
        output.keep(d);
        continue;
      }
      std::vector<std::string> pieces;
      std::string fate = o.action == "report" ? "kept" : "dropped";
      if (o.action == "cut") {
        pieces = cut_pieces(d.text, matches, o.cut_margin, o.min_piece);
        if (!pieces.empty() && static_cast<int64_t>(pieces.size()) <= o.max_pieces) fate = "cut";
      }
      // One hits line per (document, eval item): the first span and every n-gram of the item.
      std::map<int32_t, nlohmann::json> per_item;
      std::vector<std::string> items;
      for (const auto& m : matches) {
        auto& h = per_item[m.item];
        if (h.is_null()) {
          h = {
              {"id", d.id},       {"source", d.source}, {"eval_item", index.item_name(m.item)},       {"n_grams", 0},
              {"begin", m.begin}, {"end", m.end},       {"excerpt", excerpt(d.text, m.begin, m.end)}, {"action", fate}};
          items.push_back(index.item_name(m.item));
        }
        h["n_grams"] = h["n_grams"].get<int64_t>() + m.n_grams;
      }
      for (const auto& [item, h] : per_item) hits += h.dump() + "\n";
      if (fate == "kept") {
        output.keep(d);
      } else if (fate == "cut") {
        std::string text;
        for (const auto& p : pieces) text += (text.empty() ? "" : "\n\n") + p;
        d.text = std::move(text);
        if (!d.metadata.is_object()) d.metadata = nlohmann::json::object();
        d.metadata["decontamination_cuts"] = matches.size();
        output.keep(d);
      } else {
        output.drop(d, "contaminated", {{"eval_item", items.front()}, {"eval_items", items}});
      }
    }
    output.part_file(f, "hits.jsonl", hits);
    output.end_file(f);
    progress.advance();
  }
  progress.finish();
  if (!output.ready_to_finish(slice)) return 0;
  auto stats =
      output.finish({{"eval_items", index.items()}, {"eval_n_grams", index.n_grams()}, {"eval_files", index.summary()}},
                    {"hits.jsonl"});
  // Documents with hits, and those cut, from the files' hits (each document once).
  std::set<std::string> contaminated_ids, cut_ids;
  for_each_jsonl((fs::path(o.output) / "hits.jsonl").string(), [&](const nlohmann::json& h, const std::string&) {
    const auto key = h["source"].get<std::string>() + "\n" + h["id"].get<std::string>();
    contaminated_ids.insert(key);
    if (h["action"] == "cut") cut_ids.insert(key);
    return true;
  });
  const auto contaminated = static_cast<int64_t>(contaminated_ids.size()), cut = static_cast<int64_t>(cut_ids.size());
  stats["contaminated_documents"] = contaminated;
  stats["cut_documents"] = cut;
  write_json_file_atomic((fs::path(o.output) / "stats.json").string(), stats);
  spdlog::info("decontaminate: {} documents in, {} matched eval items ({} cut), {} kept ({:.1f} MB/s)",
               stats["documents_in"].get<int64_t>(), contaminated, cut, stats["documents_out"].get<int64_t>(),
               stats["megabytes_per_second"].get<double>());
  return 0;
}

void check_filter_params(const std::string& rules, const nlohmann::json& params, const std::string& source,
                         const std::string& path, nlohmann::json& resolved) {
  if (rules == "gopher") {
    gopher_options(params, source, path, resolved);
  } else if (rules == "c4") {
    c4_options(params, source, path, resolved);
  } else if (rules == "code") {
    code_options(params, source, path, resolved);
  } else {
    throw Error("unknown rule set '" + rules + "'", source + ": " + path, "the rule sets are gopher, c4 and code");
  }
}

std::vector<std::string> stage_documents(const std::string& directory) {
  std::vector<std::string> files;
  if (!fs::is_directory(directory)) return files;
  for (const auto& e : fs::directory_iterator(directory)) {
    const auto name = e.path().filename().string();
    if (e.is_regular_file() && name.size() == 11 && name.compare(5, 6, ".jsonl") == 0 &&
        std::all_of(name.begin(), name.begin() + 5, [](char c) { return c >= '0' && c <= '9'; })) {
      files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

bool stage_complete(const std::string& directory) { return fs::exists(fs::path(directory) / "stats.json"); }

int run_import(const ImportOptions& o, const TaskSlice& slice) {
  slice.validate();
  if (o.files_per_shard < 1) throw Error("files_per_shard must be positive");
  // Every file, in a fixed order: roots as given, each searched recursively and sorted.
  struct Source {
    fs::path path;
    std::string name;  // the document id: <root name>/<path under the root>
    std::string source;
  };
  std::vector<Source> sources;
  for (const auto& root : o.from) {
    const fs::path r(root);
    if (!fs::exists(r)) throw Error("import path does not exist", root);
    const auto root_name = r.filename().empty() ? r.parent_path().filename().string() : r.filename().string();
    const auto source = o.source.empty() ? root_name : o.source;
    auto wanted = [&](const fs::path& p) {
      if (o.extensions.empty()) return true;
      const auto name = p.filename().string();
      return std::any_of(o.extensions.begin(), o.extensions.end(), [&](const std::string& ext) {
        return name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0;
      });
    };
    if (!fs::is_directory(r)) {
      sources.push_back({r, root_name, source});
      continue;
    }
    std::vector<fs::path> found;
    for (auto it = fs::recursive_directory_iterator(r, fs::directory_options::skip_permission_denied);
         it != fs::recursive_directory_iterator(); ++it) {
      if (it->is_regular_file() && wanted(it->path())) found.push_back(it->path());
    }
    std::sort(found.begin(), found.end());
    if (o.max_files > 0 && found.size() > static_cast<size_t>(o.max_files)) {
      std::vector<fs::path> spread;
      const auto n = static_cast<size_t>(o.max_files);
      for (size_t i = 0; i < n; ++i) spread.push_back(found[i * found.size() / n]);
      found = std::move(spread);
    }
    for (const auto& p : found) sources.push_back({p, root_name + "/" + fs::relative(p, r).generic_string(), source});
  }
  if (sources.empty())
    throw Error("no files to import", o.from.empty() ? "" : o.from.front(), "check --from and --extensions");

  std::string listing;
  for (const auto& src : sources) listing += src.name + "\n";
  const nlohmann::json parameters = {{"from", o.from},
                                     {"extensions", o.extensions},
                                     {"separator", o.separator},
                                     {"source", o.source},
                                     {"files_per_shard", o.files_per_shard},
                                     {"max_bytes", o.max_bytes},
                                     {"max_files", o.max_files},
                                     {"files", sources.size()},
                                     {"files_hash", XXH64(listing.data(), listing.size(), 0)}};
  const auto per = static_cast<size_t>(o.files_per_shard);
  const size_t shards = (sources.size() + per - 1) / per;
  StageOutput output("import", o.output, parameters, shards, {"invalid_utf8", "too_large", "empty", "unreadable"});
  if (output.complete()) return 0;
  Progress progress("import", static_cast<int64_t>(shards), "shards");
  for (size_t shard = 0; shard < shards; ++shard) {
    if (!slice.mine(shard) || output.file_done(shard)) {
      progress.advance();
      continue;
    }
    for (size_t i = shard * per; i < std::min(sources.size(), (shard + 1) * per); ++i) {
      const auto& src = sources[i];
      Document d;
      d.id = src.name;
      d.source = src.source;
      d.metadata = {{"path", src.name}};
      std::error_code ec;
      const auto size = fs::file_size(src.path, ec);
      if (ec) {
        output.drop(d, "unreadable");
        continue;
      }
      if (o.max_bytes > 0 && size > static_cast<uintmax_t>(o.max_bytes)) {
        output.drop(d, "too_large", {{"bytes", size}});
        continue;
      }
      std::string text;
      try {
        text = read_maybe_compressed(src.path.string(), "imported file");
      } catch (const Error&) {
        output.drop(d, "unreadable");
        continue;
      }
      if (!valid_utf8(text)) {
        output.drop(d, "invalid_utf8");
        continue;
      }
      std::vector<std::string> parts;
      if (o.separator.empty()) {
        parts.push_back(std::move(text));
      } else {
        size_t start = 0;
        for (;;) {
          const size_t end = text.find(o.separator, start);
          parts.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
          if (end == std::string::npos) break;
          start = end + o.separator.size();
        }
      }
      for (size_t k = 0; k < parts.size(); ++k) {
        Document part = d;
        if (parts.size() > 1) {
          part.id += "#" + std::to_string(k);
          part.metadata["part"] = k;
        }
        part.text = std::move(parts[k]);
        if (part.text.find_first_not_of(" \t\r\n") == std::string::npos) {
          if (parts.size() == 1) output.drop(part, "empty");
          continue;  // empty pieces between separators are not documents
        }
        output.keep(part);
      }
    }
    output.end_file(shard);
    progress.advance();
  }
  progress.finish();
  if (!output.ready_to_finish(slice)) return 0;
  const auto stats = output.finish({{"files", sources.size()}});
  spdlog::info("import: {} files, {} documents kept in {} shards", sources.size(),
               stats["documents_out"].get<int64_t>(), shards);
  return 0;
}

void add_data_stage_commands(CLI::App* data, Runner& run) {
  auto norm_inputs = std::make_shared<std::vector<std::string>>();
  auto* norm = data->add_subcommand(
      "normalize", "Print each document's normalised text (what dedup compares: datatrove's simplify_text) as JSONL");
  norm->add_option("--input", *norm_inputs, "JSONL files or directories of them")->required();
  norm->callback([&run, norm_inputs]() {
    run = [norm_inputs]() {
      for (const auto& file : document_files(*norm_inputs)) {
        for_each_document(file, [](Document&& d) {
          std::cout << nlohmann::json{{"id", d.id}, {"text", simplify_text(d.text)}}.dump() << "\n";
        });
      }
      std::cout.flush();
      return 0;
    };
  });

  auto dc = std::make_shared<DecontaminateOptions>();
  auto* decon =
      data->add_subcommand("decontaminate", "Find documents that hold eval items (n-gram overlap); drop or cut them");
  decon->add_option("--input", dc->inputs, "JSONL files or directories of them")->required();
  decon->add_option("--output", dc->output, "output directory")->required();
  decon->add_option("--eval", dc->eval, "eval sets: files or directories (JSONL, JSON, MMLU CSV, tar archives)")
      ->capture_default_str();
  decon->add_option("--ngram", dc->index.n_gram, "words per n-gram")->capture_default_str();
  decon->add_option("--min-words", dc->index.min_words, "eval texts shorter than the n-gram but this long match whole")
      ->capture_default_str();
  decon->add_option("--action", dc->action, "drop the document, cut the matches out, or only report")
      ->capture_default_str();
  decon->add_option("--cut-margin", dc->cut_margin, "bytes cut on each side of a match")->capture_default_str();
  decon->add_option("--min-piece", dc->min_piece, "pieces left shorter than this are dropped")->capture_default_str();
  decon->add_option("--max-pieces", dc->max_pieces, "a document cut into more pieces is dropped")
      ->capture_default_str();
  add_skip_bad_records(decon, dc->skip_bad_records);
  auto dc_slice = std::make_shared<TaskSlice>();
  add_task_options(decon, *dc_slice);
  decon->callback([&run, dc, dc_slice]() { run = [dc, dc_slice]() { return run_decontaminate(*dc, *dc_slice); }; });

  auto im = std::make_shared<ImportOptions>();
  auto im_slice = std::make_shared<TaskSlice>();
  auto* import_cmd = data->add_subcommand(
      "import", "Source trees or text files into JSONL documents (one per file, or split at a separator)");
  import_cmd->add_option("--from", im->from, "files or directories (searched recursively)")->required();
  import_cmd->add_option("--output", im->output, "output directory")->required();
  import_cmd->add_option("--extensions", im->extensions, "only files ending so, e.g. .py (default: every file)");
  import_cmd->add_option("--separator", im->separator,
                         "split each file into documents at this text, e.g. '<|endoftext|>'");
  import_cmd->add_option("--source", im->source, "the documents' source (default: the name of each --from)");
  import_cmd->add_option("--files-per-shard", im->files_per_shard, "input files per output shard")
      ->capture_default_str();
  import_cmd->add_option("--max-bytes", im->max_bytes, "larger files are dropped as too_large (0: no limit)")
      ->capture_default_str();
  import_cmd
      ->add_option("--max-files", im->max_files, "at most this many files, evenly spread over those found (0: all)")
      ->capture_default_str();
  add_task_options(import_cmd, *im_slice);
  import_cmd->callback([&run, im, im_slice]() { run = [im, im_slice]() { return run_import(*im, *im_slice); }; });

  auto f = std::make_shared<FilterOptions>();
  auto* filter = data->add_subcommand("filter", "Drop documents by heuristic quality rules (gopher, c4, code)");
  filter
      ->add_option("--rules", f->rules,
                   "rule set: gopher or c4 (datatrove's GopherQualityFilter / C4QualityFilter defaults), code")
      ->capture_default_str();
  filter->add_option_function<std::vector<std::string>>(
      "--param", [f](const std::vector<std::string>& pairs) { f->params = parse_params(pairs); },
      "a rule parameter, key=value (JSON value), e.g. --param min_doc_words=20 or --param python=true");
  filter->add_option("--input", f->inputs, "JSONL files or directories of them")->required();
  filter->add_option("--output", f->output, "output directory")->required();
  add_skip_bad_records(filter, f->skip_bad_records);
  auto f_slice = std::make_shared<TaskSlice>();
  add_task_options(filter, *f_slice);
  filter->callback([&run, f, f_slice]() { run = [f, f_slice]() { return run_filter(*f, *f_slice); }; });

  auto o = std::make_shared<DedupOptions>();
  auto* cmd = data->add_subcommand("dedup", "Remove duplicate (exact) or near-duplicate (MinHash) documents");
  cmd->add_option("--method", o->method, "exact (normalised text) or minhash")->capture_default_str();
  cmd->add_option("--input", o->inputs, "JSONL files or directories of them")->required();
  cmd->add_option("--output", o->output, "output directory")->required();
  cmd->add_option("--ngrams", o->minhash.n_grams, "words per shingle")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--buckets", o->minhash.buckets, "LSH bands")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--hashes-per-bucket", o->minhash.hashes_per_bucket, "hashes per band")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seed", o->minhash.seed, "seed of the permutations")->capture_default_str();
  cmd->add_option("--memory-limit", o->memory_limit_mb,
                  "MiB of MinHash band records held while clustering; past it, sorted runs go to disk")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--permutations", o->permutations,
                  "JSON file {\"a\": [...], \"b\": [...]} with every hash's permutation (instead of --seed)");
  add_skip_bad_records(cmd, o->skip_bad_records);
  auto d_slice = std::make_shared<TaskSlice>();
  add_task_options(cmd, *d_slice);
  cmd->callback([&run, o, d_slice]() { run = [o, d_slice]() { return run_dedup(*o, *d_slice); }; });
}

}  // namespace phi::cli
