// Batch decoding with the per-token step captured once as a CUDA graph and replayed for every
// token: one graph launch per token instead of hundreds of kernel launches (the batch-1 decode
// path is launch-bound otherwise). Needs a CUDA model and cache; built only with PHI_WITH_CUDA
// (elsewhere the constructor throws).
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

}  // namespace phi
