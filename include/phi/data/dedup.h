// Deduplication: exact (normalised text, xxhash64) and MinHash near-duplicates with datatrove's
// defaults (word 5-grams of the normalised text hashed with xxhash64, 14 bands x 8 hashes, the
// permutations h -> (a h + b) mod (2^61 - 1), bands compared by LSH, clusters by union-find, one
// document kept per cluster). Given the same permutation parameters, signatures are bit-equal to
// datatrove's and the documents removed are the same ones (docs/data.md).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace phi {

struct MinhashConfig {
  int64_t n_grams = 5;
  int64_t buckets = 14;
  int64_t hashes_per_bucket = 8;
  uint64_t seed = 1;
  int64_t hashes() const { return buckets * hashes_per_bucket; }
};

/// The (a, b) of each hash's permutation: drawn from `seed` (splitmix64; a in [1, p), b in [0, p)),
/// or read from a JSON file {"a": [...], "b": [...]} (e.g. another tool's, for comparable signatures).
struct MinhashPermutations {
  std::vector<uint64_t> a, b;
  static MinhashPermutations from_seed(const MinhashConfig& config);
  static MinhashPermutations from_file(const std::string& path, const MinhashConfig& config);
};

/// The signature of a document: buckets x hashes_per_bucket minima (bucket-major); empty when the
/// normalised text has fewer than n_grams words (such a document is never a near-duplicate).
std::vector<uint64_t> minhash_signature(const std::string& text, const MinhashConfig& config,
                                        const MinhashPermutations& permutations);

/// Near-duplicate clusters of documents 0..n-1 from their signatures: in each band, documents are
/// sorted by (band, index) and each one equal to the one before it is joined with it (union by
/// size, as datatrove does). Returns, for every document that is removed, {document, the document
/// kept in its cluster}, by document.
std::vector<std::pair<int64_t, int64_t>> minhash_duplicates(const std::vector<std::vector<uint64_t>>& signatures,
                                                            const MinhashConfig& config);

/// What the bounded clustering used.
struct ClusterStats {
  int64_t runs_spilled = 0;       // sorted runs written to disk (0: everything fit)
  int64_t peak_buffer_bytes = 0;  // band records held at once
  int64_t union_find_bytes = 0;   // 16 per document
};

/// The same clusters as minhash_duplicates (the same joins in the same order), with signatures read
/// file by file: `next_file(signatures)` fills the next file's signatures and returns false at the
/// end; `documents` is their total (-1: not checked). Band records (the band's hashes and the document) are kept in
/// memory up to `memory_limit` bytes; past it each band's records are sorted and written as a run
/// to `spill_dir` (which must then be given), and each band's runs are merged from disk. Memory:
/// 16 bytes per document for the union-find plus the limit. A spill file that is short or
/// unreadable is an error naming it.
std::vector<std::pair<int64_t, int64_t>> minhash_duplicates_bounded(
    const std::function<bool(std::vector<std::vector<uint64_t>>& signatures)>& next_file, int64_t documents,
    const MinhashConfig& config, size_t memory_limit, const std::string& spill_dir, ClusterStats* stats = nullptr);

/// The duplicate pairs of each band that `mine(band)` selects, as datatrove's bucket step finds them:
/// the band's records (its hashes and the document) sorted, and each record equal in its hashes to
/// the one before paired with it, in that order; `band_done(band, pairs)` gets them band by band,
/// in increasing order. Signatures come file by file as in minhash_duplicates_bounded, with the same
/// memory bound and spilling. Joining every band's pairs in band order (minhash_clusters) gives
/// minhash_duplicates_bounded's clusters: bands can be found by different tasks and joined by one.
void minhash_band_pairs(
    const std::function<bool(std::vector<std::vector<uint64_t>>& signatures)>& next_file, int64_t documents,
    const MinhashConfig& config, const std::function<bool(size_t band)>& mine,
    const std::function<void(size_t band, std::vector<std::pair<int64_t, int64_t>>&& pairs)>& band_done,
    size_t memory_limit, const std::string& spill_dir, ClusterStats* stats = nullptr);

/// {document, the document kept in its place} for each document removed, from union-find over the
/// pairs that `pairs(join)` passes to `join` (union by size, as datatrove's cluster step).
std::vector<std::pair<int64_t, int64_t>> minhash_clusters(
    int64_t documents, const std::function<void(const std::function<void(int64_t, int64_t)>& join)>& pairs);

/// xxhash64 of the normalised text (exact dedup's key).
uint64_t exact_dedup_key(const std::string& text);

}  // namespace phi
