// Batch decoding with the per-token step captured once as a CUDA graph and replayed for every
// token: one graph launch per token instead of hundreds of kernel launches (the batch-1 decode
// path is launch-bound otherwise). DecodeGraph: the fixed-slot cache (phi generate / chat);
// PagedDecodeGraph: the server's paged cache. Need a CUDA model and cache; built only with
// PHI_WITH_CUDA (elsewhere the constructors throw).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "phi/models/kv_cache.h"
#include "phi/models/transformer.h"

namespace phi {

class DecodeGraph {
 public:
  /// Captures one step of `model` over every row of `cache` (its rows hold the prefilled
  /// sequences; their LongRoPE choice is row 0's). The model and cache must outlive this object.
  DecodeGraph(const Transformer& model, KVCache& cache);
  ~DecodeGraph();
  DecodeGraph(const DecodeGraph&) = delete;
  DecodeGraph& operator=(const DecodeGraph&) = delete;

  /// Appends tokens[i] to cache row i (at its current length) and returns float32 logits [n, V]:
  /// the graph's output buffer, overwritten by the next step.
  at::Tensor step(const std::vector<int64_t>& tokens);

  /// Operations (kernels, copies, memsets) the captured step holds: one launch each per token.
  int64_t nodes() const;
  /// One line per kind of node ("N x kernel name"), most frequent first: where a step's time goes.
  std::string node_summary() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The server's decode step over a paged cache (Transformer::decode_step_paged) captured for a fixed
/// number of rows and page-table width, and replayed for every step of a batch of that size (the
/// scheduler pads a smaller batch with scratch rows). Built only with PHI_WITH_CUDA.
class PagedDecodeGraph {
 public:
  /// Captures the step for `rows` rows, page tables `width` pages wide, and LongRoPE's long
  /// factors or not. The capture's warm-up writes only the cache's scratch page. The model and
  /// cache must outlive this object.
  PagedDecodeGraph(const Transformer& model, PagedKVCache& cache, int64_t rows, int64_t width, bool long_factors);
  ~PagedDecodeGraph();
  PagedDecodeGraph(const PagedDecodeGraph&) = delete;
  PagedDecodeGraph& operator=(const PagedDecodeGraph&) = delete;

  /// Copies tokens and positions (`rows` each) and the host int32 page table [rows, width] into the
  /// graph's inputs and replays it: float32 logits [rows, V], the graph's output buffer (the next
  /// step overwrites it). The caller takes the pages before and advances the lengths after.
  at::Tensor step(const std::vector<int64_t>& tokens, const std::vector<int64_t>& positions, const at::Tensor& page_table);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace phi
