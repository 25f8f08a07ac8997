// Built without PHI_WITH_CUDA: CUDA graphs are unavailable.
#include "phi/infer/decode_graph.h"

#include "phi/core/error.h"

namespace phi {

struct DecodeGraph::Impl {};

DecodeGraph::DecodeGraph(const Transformer&, KVCache&) {
  throw Error("CUDA-graph decoding needs libphi built with its CUDA kernels", "", "rebuild with -DPHI_WITH_CUDA=ON");
}
DecodeGraph::~DecodeGraph() = default;
at::Tensor DecodeGraph::step(const std::vector<int64_t>&) { return {}; }
int64_t DecodeGraph::nodes() const { return 0; }
std::string DecodeGraph::node_summary() const { return ""; }

struct PagedDecodeGraph::Impl {};

PagedDecodeGraph::PagedDecodeGraph(const Transformer&, PagedKVCache&, int64_t, int64_t, bool) {
  throw Error("CUDA-graph decoding needs libphi built with its CUDA kernels", "", "rebuild with -DPHI_WITH_CUDA=ON");
}
PagedDecodeGraph::~PagedDecodeGraph() = default;
at::Tensor PagedDecodeGraph::step(const std::vector<int64_t>&, const std::vector<int64_t>&, const at::Tensor&) {
  return {};
}

}  // namespace phi
