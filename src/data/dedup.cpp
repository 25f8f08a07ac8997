#include "phi/data/dedup.h"

#include <algorithm>
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

std::vector<std::pair<int64_t, int64_t>> minhash_duplicates(const std::vector<std::vector<uint64_t>>& signatures,
                                                            const MinhashConfig& config) {
  // Union-find over documents: union by size (ties: the first argument's root stays), path
  // compression; a document in no pair has no parent (-1) and is in no cluster.
  std::vector<int64_t> parents(signatures.size(), -1), sizes(signatures.size(), 1);
  auto parent = [&](int64_t x) -> int64_t& { return parents[static_cast<size_t>(x)]; };
  auto root = [&](int64_t x) {
    if (parent(x) < 0) parent(x) = x;
    int64_t r = x;
    while (parent(r) != r) r = parent(r);
    while (x != r) x = std::exchange(parent(x), r);
    return r;
  };
  auto join = [&](int64_t a, int64_t b) {
    int64_t ra = root(a), rb = root(b);
    if (ra == rb) return;
    if (sizes[static_cast<size_t>(ra)] < sizes[static_cast<size_t>(rb)]) std::swap(ra, rb);
    parent(rb) = ra;
    sizes[static_cast<size_t>(ra)] += sizes[static_cast<size_t>(rb)];
  };
  const auto width = static_cast<size_t>(config.hashes_per_bucket);
  std::vector<int64_t> order;
  for (int64_t band = 0; band < config.buckets; ++band) {
    const size_t offset = static_cast<size_t>(band) * width;
    order.clear();
    for (size_t d = 0; d < signatures.size(); ++d) {
      if (!signatures[d].empty()) order.push_back(static_cast<int64_t>(d));
    }
    auto band_less = [&](int64_t x, int64_t y) {
      const auto& sx = signatures[static_cast<size_t>(x)];
      const auto& sy = signatures[static_cast<size_t>(y)];
      const auto c = std::lexicographical_compare(sx.begin() + offset, sx.begin() + offset + width,
                                                  sy.begin() + offset, sy.begin() + offset + width);
      if (c) return true;
      const bool equal = std::equal(sx.begin() + offset, sx.begin() + offset + width, sy.begin() + offset);
      return equal && x < y;
    };
    std::sort(order.begin(), order.end(), band_less);
    for (size_t i = 1; i < order.size(); ++i) {
      const auto& prev = signatures[static_cast<size_t>(order[i - 1])];
      const auto& cur = signatures[static_cast<size_t>(order[i])];
      if (std::equal(prev.begin() + offset, prev.begin() + offset + width, cur.begin() + offset)) {
        join(order[i - 1], order[i]);
      }
    }
  }
  std::vector<std::pair<int64_t, int64_t>> removed;
  for (int64_t d = 0; d < static_cast<int64_t>(signatures.size()); ++d) {
    if (parent(d) < 0) continue;
    const int64_t r = root(d);
    if (r != d) removed.push_back({d, r});
  }
  return removed;
}

uint64_t exact_dedup_key(const std::string& text) {
  const std::string simplified = simplify_text(text);
  return XXH64(simplified.data(), simplified.size(), 0);
}

}  // namespace phi
