// phi data dedup --method exact|minhash --input PATHS... --output DIR [--ngrams 5] [--buckets 14]
//   [--hashes-per-bucket 8] [--seed 1] [--permutations FILE]
// removed.jsonl names the id each removed document duplicates. Keys (exact) and signatures (minhash)
// are kept per input file in DIR/signatures/NNNNN.exact|.minhash (validated when read), with the
// documents' ids in NNNNN.ids (one JSON string per line, read for duplicate_of), so a killed run
// resumes without recomputing finished files and the reduce reads no input twice but to write it. Format of a signature
// file: "PHIMH1\0\0", uint64 parameter hash, uint64 documents, uint64 hashes per document, then documents x hashes
// little-endian uint64 (all bits set: no signature, fewer words than the n-gram size). The output directory's contract
// is described in cmd_data_stages.cpp.
#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "cli/data_stages.h"
#include "cli/stage_output.h"
#include "core/file_util.h"
#include "phi/core/error.h"
#include "phi/core/progress.h"
#include "phi/core/text_io.h"
#include "phi/data/dedup.h"
#include "phi/data/documents.h"
#include "phi/data/text_norm.h"

namespace phi::cli {

namespace {

namespace fs = std::filesystem;

// The stage's binary intermediates: 8 magic bytes, three uint64 header words, then uint64 data,
// little-endian. Signature files: "PHIMH1\0\0", parameter hash, documents, hashes per document.
// Band pair files: "PHIBP1\0\0", parameter hash, band, pairs.
constexpr char kMagic[8] = {'P', 'H', 'I', 'M', 'H', '1', 0, 0};
constexpr char kPairsMagic[8] = {'P', 'H', 'I', 'B', 'P', '1', 0, 0};
constexpr size_t kHeaderBytes = 8 + 3 * sizeof(uint64_t);

struct WordFile {
  std::string bytes;

  WordFile(const char (&magic)[8], uint64_t a, uint64_t b, uint64_t c) : bytes(magic, sizeof magic) {
    put(a);
    put(b);
    put(c);
  }
  void put(uint64_t v) { bytes.append(reinterpret_cast<const char*>(&v), sizeof v); }
  uint64_t header(size_t i) const { return word(8 + i * sizeof(uint64_t)); }
  uint64_t word(size_t offset) const {
    uint64_t v = 0;
    std::memcpy(&v, bytes.data() + offset, sizeof v);
    return v;
  }
  bool holds_words(uint64_t n) const { return bytes.size() == kHeaderBytes + n * sizeof(uint64_t); }

  // The whole file, its magic checked (`what` names the kind in the error).
  static WordFile read(const std::string& path, const char (&magic)[8], const std::string& what) {
    std::ifstream in(path, std::ios::binary);
    WordFile file;
    file.bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (file.bytes.size() < kHeaderBytes || std::memcmp(file.bytes.data(), magic, sizeof magic) != 0) {
      throw Error("not a " + what + " file (bad header)", path, "delete it: the stage recomputes it");
    }
    return file;
  }

  // The three header words alone, the magic checked (the data is checked when the file is read).
  static std::array<uint64_t, 3> read_header(const std::string& path, const char (&magic)[8], const std::string& what) {
    std::ifstream in(path, std::ios::binary);
    char header[kHeaderBytes];
    if (!in.read(header, sizeof header) || std::memcmp(header, magic, sizeof magic) != 0) {
      throw Error("not a " + what + " file (bad header)", path, "delete it: the stage recomputes it");
    }
    std::array<uint64_t, 3> words;
    std::memcpy(words.data(), header + sizeof magic, sizeof words);
    return words;
  }

 private:
  WordFile() = default;
};

void write_signatures(const std::string& path, uint64_t parameters, const std::vector<std::vector<uint64_t>>& sigs,
                      size_t hashes) {
  WordFile file(kMagic, parameters, sigs.size(), hashes);
  for (const auto& s : sigs) {
    if (s.empty()) {
      for (size_t h = 0; h < hashes; ++h) file.put(~uint64_t{0});
    } else {
      for (auto v : s) file.put(v);
    }
  }
  write_file_atomic(path, file.bytes.data(), file.bytes.size());
}

// The signatures of a finished file, or nothing when they are from other parameters. A truncated or
// corrupt file is an error naming it.
std::optional<std::vector<std::vector<uint64_t>>> read_signatures(const std::string& path, uint64_t parameters,
                                                                  size_t hashes) {
  const auto file = WordFile::read(path, kMagic, "signature");
  if (file.header(0) != parameters || file.header(2) != hashes) return std::nullopt;
  const auto documents = file.header(1);
  if (!file.holds_words(documents * hashes)) {
    throw Error("signature file has " + std::to_string(file.bytes.size()) + " bytes, its header says " +
                    std::to_string(kHeaderBytes + documents * hashes * sizeof(uint64_t)) + " (truncated or corrupt)",
                path, "delete it: the stage recomputes it");
  }
  std::vector<std::vector<uint64_t>> sigs(documents);
  const char* p = file.bytes.data() + kHeaderBytes;
  for (auto& s : sigs) {
    s.resize(hashes);
    std::memcpy(s.data(), p, hashes * sizeof(uint64_t));
    p += hashes * sizeof(uint64_t);
    if (std::all_of(s.begin(), s.end(), [](uint64_t x) { return x == ~uint64_t{0}; })) s.clear();
  }
  return sigs;
}

// A signature file's document count, from its header (validated in full when read).
uint64_t signature_documents(const std::string& path) { return WordFile::read_header(path, kMagic, "signature")[1]; }

// One band's duplicate pairs (minhash_band_pairs), as (document, document) words.
void write_band_pairs(const std::string& path, uint64_t parameters, size_t band,
                      const std::vector<std::pair<int64_t, int64_t>>& pairs) {
  WordFile file(kPairsMagic, parameters, band, pairs.size());
  for (const auto& [a, b] : pairs) {
    file.put(static_cast<uint64_t>(a));
    file.put(static_cast<uint64_t>(b));
  }
  write_file_atomic(path, file.bytes.data(), file.bytes.size());
}

// A band's pairs, or nothing when the file is from other parameters; a corrupt file is an error.
std::optional<std::vector<std::pair<int64_t, int64_t>>> read_band_pairs(const std::string& path, uint64_t parameters,
                                                                        size_t band, int64_t documents) {
  const auto file = WordFile::read(path, kPairsMagic, "band pair");
  if (file.header(0) != parameters) return std::nullopt;
  const auto n = file.header(2);
  if (file.header(1) != band || !file.holds_words(2 * n)) {
    throw Error("band pair file is truncated or corrupt", path, "delete it: the stage recomputes it");
  }
  std::vector<std::pair<int64_t, int64_t>> pairs(n);
  for (size_t i = 0; i < n; ++i) {
    const auto x = file.word(kHeaderBytes + 16 * i), y = file.word(kHeaderBytes + 16 * i + 8);
    if (x >= static_cast<uint64_t>(documents) || y >= static_cast<uint64_t>(documents)) {
      throw Error("band pair file names a document past the input's " + std::to_string(documents), path,
                  "delete the signatures directory: the stage recomputes it");
    }
    pairs[i] = {static_cast<int64_t>(x), static_cast<int64_t>(y)};
  }
  return pairs;
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
  const auto ids_path = [&](size_t f) {
    return (fs::path(o.output) / "signatures" / numbered(static_cast<int64_t>(f), ".ids")).string();
  };
  fs::create_directories(fs::path(o.output) / "signatures");

  // Pass 1 (per file, this task's files): a key (exact) or a signature (minhash) per document,
  // kept in DIR/signatures so that a killed run or the finishing task reads them back.
  Progress progress(exact ? "exact keys" : "minhash signatures", static_cast<int64_t>(files.size()), "files");
  int64_t resumed = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    const auto path = signature_path(f);
    if (!slice.mine(f) ||
        (fs::exists(path) && fs::exists(ids_path(f)) && read_signatures(path, parameter_hash, hashes))) {
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
    std::string ids;  // the documents' ids, one JSON string per line, for removed.jsonl's duplicate_of
    for (const auto& d : docs) ids += nlohmann::json(d.id).dump() + "\n";
    write_file_atomic(ids_path(f), ids.data(), ids.size());
    write_signatures(path, parameter_hash, sigs, hashes);  // last: the file's keys are complete
    progress.advance();
  }
  progress.finish();
  if (resumed) spdlog::info("dedup: keys of {} files were already computed", resumed);
  const auto all_keys = [&] {
    for (size_t f = 0; f < files.size(); ++f) {
      if (!fs::exists(signature_path(f))) return false;
    }
    return true;
  };
  if (exact && !slice.finisher()) {
    spdlog::info("dedup: task {} of {} computed its files' keys; task 0 deduplicates and writes", slice.index,
                 slice.tasks);
    return 0;
  }
  if (!wait_until(all_keys, slice.wait_seconds)) {
    if (slice.finisher()) {
      spdlog::warn("dedup: other tasks' keys are not all there yet; run again when they finish");
    } else {
      spdlog::info("dedup: task {} of {}: other tasks' keys are not all there yet; task 0 finds its bands", slice.index,
                   slice.tasks);
    }
    return 0;
  }

  // Pass 2 (the reduce): what goes and what it duplicates. Exact keys are held in memory (8 bytes
  // per document). MinHash is sharded by band: each task finds the duplicate pairs of its bands
  // (band records up to the memory limit, then as sorted runs on disk) and writes them to
  // signatures/bands/NNNNN.pairs; task 0 finds any band still missing, then joins every band's
  // pairs in band order (union-find: the clusters one process would find).
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
    size_t total = 0;
    for (size_t f = 0; f < files.size(); ++f) {
      first_of_file.push_back(total);
      total += signature_documents(signature_path(f));
    }
    first_of_file.push_back(total);
    const auto bands = static_cast<size_t>(o.minhash.buckets);
    const auto bands_dir = fs::path(o.output) / "signatures" / "bands";
    fs::create_directories(bands_dir);
    const auto band_path = [&](size_t b) { return (bands_dir / numbered(static_cast<int64_t>(b), ".pairs")).string(); };
    const auto band_done = [&](size_t b) {  // by its header: the pairs are checked when they are joined
      const auto path = band_path(b);
      if (!fs::exists(path)) return false;
      const auto header = WordFile::read_header(path, kPairsMagic, "band pair");
      if (header[0] != parameter_hash) return false;
      if (header[1] != b)
        throw Error("band pair file is truncated or corrupt", path, "delete it: the stage recomputes it");
      return true;
    };
    const auto find_bands = [&](const std::function<bool(size_t)>& wanted) {
      std::vector<bool> todo(bands);
      size_t n = 0;
      for (size_t b = 0; b < bands; ++b) n += (todo[b] = wanted(b) && !band_done(b)) ? 1 : 0;
      if (n == 0) return;
      spdlog::info("dedup: task {} finds the duplicate pairs of {} of {} bands", slice.index, n, bands);
      const auto spill_dir = (fs::path(o.output) / "signatures" / ("spill-" + std::to_string(slice.index))).string();
      fs::remove_all(spill_dir);  // runs of a killed run
      size_t f = 0;
      minhash_band_pairs(
          [&](std::vector<std::vector<uint64_t>>& sigs) {
            if (f == files.size()) return false;
            auto read = read_signatures(signature_path(f), parameter_hash, hashes);
            if (!read)
              throw Error("key file is from other parameters", signature_path(f), "delete it: the stage recomputes it");
            sigs = std::move(*read);
            ++f;
            return true;
          },
          static_cast<int64_t>(total), o.minhash, [&](size_t b) { return static_cast<bool>(todo[b]); },
          [&](size_t b, std::vector<std::pair<int64_t, int64_t>>&& pairs) {
            write_band_pairs(band_path(b), parameter_hash, b, pairs);
          },
          static_cast<size_t>(o.memory_limit_mb) << 20, spill_dir, &cluster_stats);
      fs::remove_all(spill_dir);
    };
    find_bands([&](size_t b) { return slice.mine(b); });
    if (!slice.finisher()) {
      spdlog::info("dedup: task {} of {} found its bands' pairs; task 0 clusters and writes", slice.index, slice.tasks);
      return 0;
    }
    wait_until(
        [&] {
          for (size_t b = 0; b < bands; ++b) {
            if (!fs::exists(band_path(b))) return false;
          }
          return true;
        },
        slice.wait_seconds);
    find_bands([](size_t) { return true; });  // bands no task finished
    const auto removed =
        minhash_clusters(static_cast<int64_t>(total), [&](const std::function<void(int64_t, int64_t)>& join) {
          for (size_t b = 0; b < bands; ++b) {
            auto pairs = read_band_pairs(band_path(b), parameter_hash, b, static_cast<int64_t>(total));
            if (!pairs)
              throw Error("band pair file is from other parameters", band_path(b),
                          "delete it: the stage recomputes it");
            for (const auto& [x, y] : *pairs) join(x, y);
          }
        });
    cluster_stats.union_find_bytes = 16 * static_cast<int64_t>(total);
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
    const auto path = ids_path(f);
    std::istringstream lines(read_text_file(path, "document ids"));
    int64_t index = static_cast<int64_t>(first_of_file[f]);
    for (std::string line; std::getline(lines, line); ++index) {
      if (auto k = kept_ids.find(index); k != kept_ids.end()) {
        try {
          k->second = nlohmann::json::parse(line).get<std::string>();
        } catch (const nlohmann::json::exception&) {
          throw Error("not a document id (corrupt file)", path + ":" + std::to_string(index - first_of_file[f] + 1),
                      "delete the signatures directory: the stage recomputes it");
        }
      }
    }
    if (index != static_cast<int64_t>(first_of_file[f + 1])) {
      throw Error("the id file holds " + std::to_string(index - first_of_file[f]) + " ids, the key file " +
                      std::to_string(first_of_file[f + 1] - first_of_file[f]),
                  path, "delete the signatures directory: the stage recomputes it");
    }
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

}  // namespace phi::cli
