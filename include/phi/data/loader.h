// The training data loader: memory-mapped token shards packed into fixed-length sequences,
// a deterministic order from the seed, mixture weights across sources, an exactly resumable
// position, and prefetch on a background thread.
//
// Each source is the concatenation of its documents (as written, EOS included); sequence k of a
// source holds tokens [k*T, k*T + T + 1) (inputs and next-token targets). Every epoch of a source
// visits its sequences in a fresh seeded permutation. Sample i of the stream comes from a source
// drawn with probability proportional to its weight by a hash of (seed, i), so the whole stream is
// a function of the seed and the position: the state is the sample count plus one cursor per
// source.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

namespace phi {

struct DataSource {
  std::string path;   // a dataset directory (manifest.json + shards)
  double weight = 1.0;
};

struct LoaderState {
  int64_t samples = 0;            // sequences drawn so far
  std::vector<int64_t> cursors;   // per source: sequences drawn from it so far
};
nlohmann::json loader_state_to_json(const LoaderState& state);
LoaderState loader_state_from_json(const nlohmann::json& j, const std::string& source);

struct Batch {
  at::Tensor inputs;    // int64 [B, T]
  at::Tensor targets;   // int64 [B, T]; -100 (ignored by the loss) where the loss mask is 0
  at::Tensor segments;  // int64 [B, T], with document_masks only: input t's document within its
                        // sequence (0, 1, ...); attention stays inside a document
};

class TokenLoader {
 public:
  /// pack = false: one document per sequence (cut at seq_len + 1 tokens, shorter ones padded with
  /// ignored targets) instead of packing the token stream. document_masks (packed only): batches
  /// carry segment ids so that attention does not cross document boundaries.
  /// `rows` / `first_row` (data parallelism): each batch holds rows [first_row, first_row + rows) of
  /// the global batch of `batch_size` sequences; the position still counts every global sequence, so
  /// ranks read disjoint slices of the same global batches whatever the world size (rows 0: all).
  TokenLoader(std::vector<DataSource> sources, int64_t seq_len, int64_t batch_size, uint64_t seed,
              LoaderState state = {}, bool prefetch = true, bool pack = true, bool document_masks = false,
              int64_t first_row = 0, int64_t rows = 0);
  ~TokenLoader();
  TokenLoader(const TokenLoader&) = delete;
  TokenLoader& operator=(const TokenLoader&) = delete;

  Batch next();
  /// The position after every batch next() has returned (what a checkpoint stores).
  LoaderState state() const;
  int64_t vocab_size() const { return vocab_size_; }
  /// Sequences per source (one epoch).
  std::vector<int64_t> sequences_per_source() const;

 private:
  struct Source;
  Batch make_batch(LoaderState& state) const;
  void read_sequence(const Source& source, int64_t sequence, int64_t* out, uint8_t* mask, int64_t* segments) const;
  void producer();

  std::vector<std::unique_ptr<Source>> sources_;
  std::vector<double> cumulative_weights_;
  int64_t seq_len_;
  int64_t batch_size_;
  int64_t first_row_ = 0, rows_ = 0;  // this process's slice of each global batch
  bool pack_ = true;
  bool document_masks_ = false;
  uint64_t seed_;
  int64_t vocab_size_ = 0;
  LoaderState consumed_;
  // Prefetch.
  bool prefetch_;
  LoaderState produced_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::pair<Batch, LoaderState>> queue_;
  std::string error_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace phi
