#include "phi/data/loader.h"

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "phi/core/error.h"
#include "phi/core/json_reader.h"
#include "phi/data/shards.h"

namespace phi {

namespace {
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
constexpr size_t kPrefetchDepth = 2;
}  // namespace

nlohmann::json loader_state_to_json(const LoaderState& s) { return {{"samples", s.samples}, {"cursors", s.cursors}}; }

LoaderState loader_state_from_json(const nlohmann::json& j, const std::string& source) {
  JsonReader r(j, source);
  LoaderState s;
  s.samples = r.required<int64_t>("samples");
  s.cursors = r.required<std::vector<int64_t>>("cursors");
  r.finish();
  return s;
}

struct TokenLoader::Source {
  std::vector<std::shared_ptr<Shard>> shards;
  std::vector<int64_t> starts;  // global token offset of each shard
  int64_t n_tokens = 0;
  int64_t n_sequences = 0;
  std::vector<std::pair<int64_t, int64_t>> documents;  // unpacked mode: (global start, length)
  // Permutation cache for the epoch being read.
  mutable int64_t epoch = -1;
  mutable std::vector<int64_t> order;
};

TokenLoader::TokenLoader(std::vector<DataSource> sources, int64_t seq_len, int64_t batch_size, uint64_t seed,
                         LoaderState state, bool prefetch, bool pack, bool document_masks, int64_t first_row,
                         int64_t rows)
    : seq_len_(seq_len), batch_size_(batch_size), first_row_(first_row), rows_(rows > 0 ? rows : batch_size),
      pack_(pack), document_masks_(document_masks && pack), seed_(seed), prefetch_(prefetch) {
  PHI_CHECK(!sources.empty(), "the loader needs at least one data source");
  PHI_CHECK(seq_len > 0 && batch_size > 0, "seq_len and batch_size must be > 0");
  PHI_CHECK(first_row_ >= 0 && first_row_ + rows_ <= batch_size_, "rows [", first_row_, ", ", first_row_ + rows_,
            ") outside the batch of ", batch_size_);
  double total = 0;
  for (const auto& spec : sources) {
    if (!(spec.weight > 0)) throw Error("data source weight must be > 0", spec.path);
    auto manifest = read_manifest(spec.path);
    if (vocab_size_ != 0 && manifest.vocab_size != vocab_size_) {
      throw Error("data sources disagree on vocab_size (" + std::to_string(vocab_size_) + " vs " +
                  std::to_string(manifest.vocab_size) + ")", spec.path);
    }
    vocab_size_ = manifest.vocab_size;
    auto source = std::make_unique<Source>();
    for (const auto& info : manifest.shards) {
      auto shard = Shard::open((std::filesystem::path(spec.path) / info.file).string());
      if (shard->n_tokens() != info.n_tokens) {
        throw Error("shard " + info.file + " holds " + std::to_string(shard->n_tokens()) +
                    " tokens, the manifest says " + std::to_string(info.n_tokens), spec.path);
      }
      source->starts.push_back(source->n_tokens);
      if (!pack) {
        for (int64_t d = 0; d < shard->n_documents(); ++d) {
          const int64_t begin = shard->document_offset(d);
          source->documents.push_back({source->n_tokens + begin, shard->document_offset(d + 1) - begin});
        }
      }
      source->n_tokens += shard->n_tokens();
      source->shards.push_back(std::move(shard));
    }
    source->n_sequences = pack ? (source->n_tokens - 1) / seq_len : static_cast<int64_t>(source->documents.size());
    if (source->n_sequences <= 0) {
      throw Error("dataset has " + std::to_string(source->n_tokens) + " tokens, too few for one sequence of " +
                  std::to_string(seq_len + 1), spec.path);
    }
    sources_.push_back(std::move(source));
    total += spec.weight;
    cumulative_weights_.push_back(total);
  }
  for (auto& w : cumulative_weights_) w /= total;
  if (state.cursors.empty()) state.cursors.assign(sources_.size(), 0);
  if (state.cursors.size() != sources_.size()) {
    throw Error("loader state has " + std::to_string(state.cursors.size()) + " cursors for " +
                std::to_string(sources_.size()) + " sources", "", "resume with the data sources of the checkpoint");
  }
  consumed_ = state;
  produced_ = state;
  if (prefetch_) thread_ = std::thread([this] { producer(); });
}

TokenLoader::~TokenLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::vector<int64_t> TokenLoader::sequences_per_source() const {
  std::vector<int64_t> out;
  for (const auto& s : sources_) out.push_back(s->n_sequences);
  return out;
}

void TokenLoader::read_sequence(const Source& source, int64_t sequence, int64_t* out, uint8_t* mask,
                                int64_t* segments) const {
  int64_t begin = sequence * seq_len_;
  int64_t remaining = seq_len_ + 1;
  if (!pack_) {
    // One document: its first seq_len + 1 tokens, the rest padded with ignored targets.
    const auto [start, length] = source.documents[static_cast<size_t>(sequence)];
    begin = start;
    remaining = std::min(length, seq_len_ + 1);
    std::fill(out + remaining, out + seq_len_ + 1, 0);
    std::fill(mask + remaining, mask + seq_len_ + 1, 0);
  }
  auto it = std::upper_bound(source.starts.begin(), source.starts.end(), begin);
  size_t shard = static_cast<size_t>(std::distance(source.starts.begin(), it) - 1);
  int64_t segment = -1;
  while (remaining > 0) {
    const auto& s = *source.shards[shard];
    const int64_t local = begin - source.starts[shard];
    const int64_t n = std::min(remaining, s.n_tokens() - local);
    s.read(local, n, out);
    s.read_mask(local, n, mask);
    if (segments != nullptr) {
      // Documents never span shards: a new shard starts a new segment, and so does every
      // document start inside this chunk.
      int64_t d = s.document_at(local);
      int64_t next_start = s.document_offset(d + 1);
      ++segment;
      for (int64_t i = 0; i < n; ++i) {
        while (local + i >= next_start) {
          ++segment;
          ++d;
          next_start = s.document_offset(d + 1);
        }
        segments[i] = segment;
      }
      segments += n;
    }
    out += n;
    mask += n;
    begin += n;
    remaining -= n;
    ++shard;
  }
}

Batch TokenLoader::make_batch(LoaderState& state) const {
  auto tokens = at::empty({rows_, seq_len_ + 1}, at::kLong);
  auto mask = at::empty({rows_, seq_len_ + 1}, at::kByte);
  int64_t* data = tokens.data_ptr<int64_t>();
  uint8_t* mask_data = mask.data_ptr<uint8_t>();
  at::Tensor segments;
  if (document_masks_) segments = at::empty({rows_, seq_len_ + 1}, at::kLong);
  // Every row of the global batch is drawn (the position counts global sequences); only this
  // process's rows are read.
  for (int64_t b = 0; b < batch_size_; ++b) {
    const uint64_t draw = splitmix64(seed_ ^ splitmix64(static_cast<uint64_t>(state.samples)));
    const double u = static_cast<double>(draw >> 11) * (1.0 / 9007199254740992.0);
    size_t which = static_cast<size_t>(std::upper_bound(cumulative_weights_.begin(), cumulative_weights_.end(), u) -
                                       cumulative_weights_.begin());
    which = std::min(which, sources_.size() - 1);
    const auto& source = *sources_[which];
    const int64_t cursor = state.cursors[which]++;
    const int64_t epoch = cursor / source.n_sequences;
    if (source.epoch != epoch) {
      source.order.resize(static_cast<size_t>(source.n_sequences));
      std::iota(source.order.begin(), source.order.end(), 0);
      std::mt19937_64 rng(splitmix64(seed_ + 0x1000003ull * (which + 1) + static_cast<uint64_t>(epoch)));
      std::shuffle(source.order.begin(), source.order.end(), rng);
      source.epoch = epoch;
    }
    const int64_t row = b - first_row_;
    if (row >= 0 && row < rows_) {
      read_sequence(source, source.order[cursor % source.n_sequences], data + row * (seq_len_ + 1),
                    mask_data + row * (seq_len_ + 1),
                    document_masks_ ? segments.data_ptr<int64_t>() + row * (seq_len_ + 1) : nullptr);
    }
    ++state.samples;
  }
  auto targets = tokens.narrow(1, 1, seq_len_).contiguous();
  targets.masked_fill_(mask.narrow(1, 1, seq_len_).eq(0), -100);
  Batch batch{tokens.narrow(1, 0, seq_len_).contiguous(), targets, {}};
  if (document_masks_) batch.segments = segments.narrow(1, 0, seq_len_).contiguous();
  return batch;
}

void TokenLoader::producer() {
  try {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return stopping_ || queue_.size() < kPrefetchDepth; });
        if (stopping_) return;
      }
      auto batch = make_batch(produced_);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.emplace_back(std::move(batch), produced_);
      }
      changed_.notify_all();
    }
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = e.what();
    changed_.notify_all();
  }
}

Batch TokenLoader::next() {
  if (!prefetch_) {
    return make_batch(consumed_);
  }
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return !queue_.empty() || !error_.empty(); });
  if (queue_.empty()) throw Error("data loader failed: " + error_);
  auto item = std::move(queue_.front());
  queue_.pop_front();
  consumed_ = item.second;
  lock.unlock();
  changed_.notify_all();
  return std::move(item.first);
}

LoaderState TokenLoader::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return consumed_;
}

}  // namespace phi
