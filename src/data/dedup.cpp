#include "phi/data/dedup.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <utility>

#include <nlohmann/json.hpp>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "phi/core/error.h"
#include "phi/core/text_io.h"
#include "phi/data/text_norm.h"

namespace phi {

namespace {

constexpr uint64_t kMersenne61 = (uint64_t{1} << 61) - 1;

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

MinhashPermutations MinhashPermutations::from_seed(const MinhashConfig& config) {
  MinhashPermutations p;
  uint64_t state = config.seed;
  for (int64_t i = 0; i < config.hashes(); ++i) p.a.push_back(1 + splitmix64(state) % (kMersenne61 - 1));
  for (int64_t i = 0; i < config.hashes(); ++i) p.b.push_back(splitmix64(state) % kMersenne61);
  return p;
}

MinhashPermutations MinhashPermutations::from_file(const std::string& path, const MinhashConfig& config) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(path, "permutations file"));
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("the permutations file is not JSON: ") + e.what(), path);
  }
  MinhashPermutations p;
  try {
    p.a = j.at("a").get<std::vector<uint64_t>>();
    p.b = j.at("b").get<std::vector<uint64_t>>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("the permutations file needs \"a\" and \"b\" arrays of integers: ") + e.what(), path);
  }
  const auto n = static_cast<size_t>(config.hashes());
  if (p.a.size() != n || p.b.size() != n) {
    throw Error("the permutations file has " + std::to_string(p.a.size()) + " a and " + std::to_string(p.b.size()) +
                    " b values; buckets x hashes per bucket is " + std::to_string(n),
                path);
  }
  return p;
}

std::vector<uint64_t> minhash_signature(const std::string& text, const MinhashConfig& config,
                                        const MinhashPermutations& permutations) {
  const std::string simplified = simplify_text(text);
  const auto words = split_words(simplified);
  const auto n = static_cast<size_t>(config.n_grams);
  if (words.size() < n) return {};
  const auto hashes = static_cast<size_t>(config.hashes());
  std::vector<uint64_t> signature(hashes, ~uint64_t{0});
  std::string gram;
  for (size_t i = 0; i + n <= words.size(); ++i) {
    gram.clear();
    for (size_t k = 0; k < n; ++k) {
      if (k) gram.push_back(' ');
      gram.append(words[i + k]);
    }
    const uint64_t shingle = XXH64(gram.data(), gram.size(), 0);
    for (size_t h = 0; h < hashes; ++h) {
      // (a x + b) in 64-bit unsigned arithmetic (wrapping, as numpy's uint64 does), then mod p
      // without a division: 2^61 = 1 (mod p), so v = hi 2^61 + lo = hi + lo, less than 2p.
      const uint64_t w = shingle * permutations.a[h] + permutations.b[h];
      uint64_t v = (w & kMersenne61) + (w >> 61);
      if (v >= kMersenne61) v -= kMersenne61;
      signature[h] = std::min(signature[h], v);
    }
  }
  return signature;
}

namespace {

// Union-find over documents: union by size (ties: the first argument's root stays), path
// compression; a document in no pair has no parent (-1) and is in no cluster.
class UnionFind {
 public:
  explicit UnionFind(int64_t n) : parents_(static_cast<size_t>(n), -1), sizes_(static_cast<size_t>(n), 1) {}
  int64_t root(int64_t x) {
    if (parent(x) < 0) parent(x) = x;
    int64_t r = x;
    while (parent(r) != r) r = parent(r);
    while (x != r) x = std::exchange(parent(x), r);
    return r;
  }
  void join(int64_t a, int64_t b) {
    int64_t ra = root(a), rb = root(b);
    if (ra == rb) return;
    if (sizes_[static_cast<size_t>(ra)] < sizes_[static_cast<size_t>(rb)]) std::swap(ra, rb);
    parent(rb) = ra;
    sizes_[static_cast<size_t>(ra)] += sizes_[static_cast<size_t>(rb)];
  }
  /// {document, its cluster's root} for every document that is not its root.
  std::vector<std::pair<int64_t, int64_t>> removed() {
    std::vector<std::pair<int64_t, int64_t>> out;
    for (int64_t d = 0; d < static_cast<int64_t>(parents_.size()); ++d) {
      if (parent(d) < 0) continue;
      const int64_t r = root(d);
      if (r != d) out.push_back({d, r});
    }
    return out;
  }

 private:
  int64_t& parent(int64_t x) { return parents_[static_cast<size_t>(x)]; }
  std::vector<int64_t> parents_, sizes_;
};

// Band records: rows of `width` band hashes and the document index, ordered by the hashes then the
// document (the order datatrove's bucket files have).
struct Rows {
  size_t stride;
  std::vector<uint64_t> data;
  size_t size() const { return data.size() / stride; }
  const uint64_t* row(size_t i) const { return data.data() + i * stride; }
};

bool row_less(const uint64_t* x, const uint64_t* y, size_t stride) {
  return std::lexicographical_compare(x, x + stride, y, y + stride);  // the document index is last
}

bool same_band(const uint64_t* x, const uint64_t* y, size_t width) { return std::equal(x, x + width, y); }

void sort_rows(Rows& rows) {
  std::vector<uint32_t> order(rows.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return row_less(rows.row(a), rows.row(b), rows.stride); });
  std::vector<uint64_t> sorted(rows.data.size());
  for (size_t i = 0; i < order.size(); ++i) {
    std::copy(rows.row(order[i]), rows.row(order[i]) + rows.stride, sorted.data() + i * rows.stride);
  }
  rows.data = std::move(sorted);
}

// A sorted run on disk, read a block at a time.
class RunReader {
 public:
  RunReader(std::string path, size_t stride) : path_(std::move(path)), stride_(stride), in_(path_, std::ios::binary) {
    if (!in_) throw Error("cannot open a spilled run", path_);
    fill();
  }
  bool done() const { return at_ >= rows_; }
  const uint64_t* row() const { return buffer_.data() + at_ * stride_; }
  void next() {
    if (++at_ >= rows_) fill();
  }

 private:
  void fill() {
    buffer_.resize(stride_ * 4096);
    in_.read(reinterpret_cast<char*>(buffer_.data()), static_cast<std::streamsize>(buffer_.size() * sizeof(uint64_t)));
    const auto got = static_cast<size_t>(in_.gcount());
    if (got % (stride_ * sizeof(uint64_t)) != 0) throw Error("a spilled run is truncated", path_, "rerun the stage");
    rows_ = got / (stride_ * sizeof(uint64_t));
    at_ = 0;
  }
  std::string path_;
  size_t stride_;
  std::ifstream in_;
  std::vector<uint64_t> buffer_;
  size_t rows_ = 0, at_ = 0;
};

}  // namespace

void minhash_band_pairs(
    const std::function<bool(std::vector<std::vector<uint64_t>>& signatures)>& next_file, int64_t documents,
    const MinhashConfig& config, const std::function<bool(size_t band)>& mine,
    const std::function<void(size_t band, std::vector<std::pair<int64_t, int64_t>>&& pairs)>& band_done,
    size_t memory_limit, const std::string& spill_dir, ClusterStats* stats) {
  const auto width = static_cast<size_t>(config.hashes_per_bucket);
  const auto bands = static_cast<size_t>(config.buckets);
  const size_t stride = width + 1;
  std::vector<size_t> wanted;
  for (size_t b = 0; b < bands; ++b) {
    if (mine(b)) wanted.push_back(b);
  }
  std::vector<Rows> buffers(bands, Rows{stride, {}});
  std::vector<std::vector<std::string>> runs(bands);
  size_t buffered = 0;
  ClusterStats local;
  auto spill = [&]() {
    if (spill_dir.empty()) throw Error("the band records pass the memory limit and no spill directory is given");
    std::filesystem::create_directories(spill_dir);
    for (const auto b : wanted) {
      if (buffers[b].data.empty()) continue;
      sort_rows(buffers[b]);
      const auto path = (std::filesystem::path(spill_dir) /
                         ("band-" + std::to_string(b) + "-run-" + std::to_string(runs[b].size()) + ".bin"))
                            .string();
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(buffers[b].data.data()),
                static_cast<std::streamsize>(buffers[b].data.size() * sizeof(uint64_t)));
      out.close();
      if (!out) throw Error("cannot write a spilled run (disk full?)", path);
      runs[b].push_back(path);
      buffers[b].data.clear();
      buffers[b].data.shrink_to_fit();
      ++local.runs_spilled;
    }
    buffered = 0;
  };
  // Band records, file by file.
  std::vector<std::vector<uint64_t>> signatures;
  int64_t doc = 0;
  while (next_file(signatures)) {
    for (const auto& sig : signatures) {
      if (!sig.empty()) {
        if (sig.size() != width * bands) throw Error("a signature has the wrong number of hashes");
        for (const auto b : wanted) {
          auto& rows = buffers[b].data;
          rows.insert(rows.end(), sig.begin() + static_cast<std::ptrdiff_t>(b * width),
                      sig.begin() + static_cast<std::ptrdiff_t>((b + 1) * width));
          rows.push_back(static_cast<uint64_t>(doc));
        }
        buffered += wanted.size() * stride * sizeof(uint64_t);
        local.peak_buffer_bytes = std::max(local.peak_buffer_bytes, static_cast<int64_t>(buffered));
        if (buffered > memory_limit) spill();
      }
      ++doc;
    }
  }
  if (documents >= 0 && doc != documents) {
    throw Error("the signatures hold " + std::to_string(doc) + " documents, expected " + std::to_string(documents));
  }
  const bool spilled = local.runs_spilled > 0;
  if (spilled) spill();  // the rest too: every band is then merged from its runs alone
  for (const auto b : wanted) {
    std::vector<std::pair<int64_t, int64_t>> pairs;
    if (!spilled) {
      sort_rows(buffers[b]);
      const auto& rows = buffers[b];
      for (size_t i = 1; i < rows.size(); ++i) {
        if (same_band(rows.row(i - 1), rows.row(i), width)) {
          pairs.emplace_back(static_cast<int64_t>(rows.row(i - 1)[width]), static_cast<int64_t>(rows.row(i)[width]));
        }
      }
      buffers[b].data.clear();
      buffers[b].data.shrink_to_fit();
    } else {
      // k-way merge of the band's runs.
      std::vector<std::unique_ptr<RunReader>> readers;
      for (const auto& path : runs[b]) readers.push_back(std::make_unique<RunReader>(path, stride));
      std::vector<uint64_t> previous;
      for (;;) {
        RunReader* best = nullptr;
        for (auto& r : readers) {
          if (!r->done() && (best == nullptr || row_less(r->row(), best->row(), stride))) best = r.get();
        }
        if (best == nullptr) break;
        if (!previous.empty() && same_band(previous.data(), best->row(), width)) {
          pairs.emplace_back(static_cast<int64_t>(previous[width]), static_cast<int64_t>(best->row()[width]));
        }
        previous.assign(best->row(), best->row() + stride);
        best->next();
      }
      readers.clear();
      for (const auto& path : runs[b]) std::filesystem::remove(path);
    }
    band_done(b, std::move(pairs));
  }
  if (stats) *stats = local;
}

std::vector<std::pair<int64_t, int64_t>> minhash_clusters(
    int64_t documents, const std::function<void(const std::function<void(int64_t, int64_t)>& join)>& pairs) {
  UnionFind clusters(documents);
  pairs([&](int64_t a, int64_t b) { clusters.join(a, b); });
  return clusters.removed();
}

std::vector<std::pair<int64_t, int64_t>> minhash_duplicates_bounded(
    const std::function<bool(std::vector<std::vector<uint64_t>>& signatures)>& next_file, int64_t documents,
    const MinhashConfig& config, size_t memory_limit, const std::string& spill_dir, ClusterStats* stats) {
  int64_t total = 0;
  auto counting = [&](std::vector<std::vector<uint64_t>>& signatures) {
    if (!next_file(signatures)) return false;
    total += static_cast<int64_t>(signatures.size());
    return true;
  };
  std::unique_ptr<UnionFind> clusters;  // made once every file is read (bands come after)
  minhash_band_pairs(
      counting, documents, config, [](size_t) { return true; },
      [&](size_t, std::vector<std::pair<int64_t, int64_t>>&& pairs) {
        if (!clusters) clusters = std::make_unique<UnionFind>(total);
        for (const auto& [a, b] : pairs) clusters->join(a, b);
      },
      memory_limit, spill_dir, stats);
  if (stats) stats->union_find_bytes = 16 * total;
  if (!clusters) clusters = std::make_unique<UnionFind>(total);
  return clusters->removed();
}

std::vector<std::pair<int64_t, int64_t>> minhash_duplicates(const std::vector<std::vector<uint64_t>>& signatures,
                                                            const MinhashConfig& config) {
  bool given = false;
  return minhash_duplicates_bounded(
      [&](std::vector<std::vector<uint64_t>>& out) {
        if (given) return false;
        out = signatures;
        given = true;
        return true;
      },
      static_cast<int64_t>(signatures.size()), config, SIZE_MAX, "");
}

uint64_t exact_dedup_key(const std::string& text) {
  const std::string simplified = simplify_text(text);
  return XXH64(simplified.data(), simplified.size(), 0);
}

}  // namespace phi
