#include "phi/infer/decode_graph.h"

#include <algorithm>
#include <map>
#include <string>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "phi/core/error.h"
#include "phi/models/rope.h"

namespace phi {

namespace {
// Each cache row's current length (where its next token goes).
std::vector<int64_t> row_lengths(const KVCache& cache) {
  std::vector<int64_t> lengths;
  for (int64_t r = 0; r < cache.batch_size(); ++r) lengths.push_back(cache.length(r));
  return lengths;
}
// "N x name" per kind of node, most frequent first (kernel names where the runtime knows them).
std::string describe(cudaGraph_t graph, size_t count) {
  std::vector<cudaGraphNode_t> nodes(count);
  if (cudaGraphGetNodes(graph, nodes.data(), &count) != cudaSuccess) return "";
  std::map<std::string, int> histogram;
  for (auto node : nodes) {
    cudaGraphNodeType type;
    std::string name = "other";
    if (cudaGraphNodeGetType(node, &type) == cudaSuccess) {
      if (type == cudaGraphNodeTypeKernel) {
        cudaKernelNodeParams params{};
        const char* fn = nullptr;
        name = "kernel (library)";
        if (cudaGraphKernelNodeGetParams(node, &params) == cudaSuccess &&
            cudaFuncGetName(&fn, params.func) == cudaSuccess && fn != nullptr) {
          name = std::string(fn).substr(0, 90);
        }
      } else if (type == cudaGraphNodeTypeMemcpy) {
        name = "memcpy";
      } else if (type == cudaGraphNodeTypeMemset) {
        name = "memset";
      }
    }
    ++histogram[name];
  }
  cudaGetLastError();  // clear a failed name lookup
  std::vector<std::pair<int, std::string>> sorted;
  for (const auto& [name, n] : histogram) sorted.push_back({n, name});
  std::sort(sorted.rbegin(), sorted.rend());
  std::string out;
  for (const auto& [n, name] : sorted) out += std::to_string(n) + " x " + name + "\n";
  return out;
}
}  // namespace

struct DecodeGraph::Impl {
  const Transformer* model;
  KVCache* cache;
  at::Tensor ids, positions, inv_freq, logits;
  double mscale = 1.0;
  int64_t nodes = 0;
  std::string summary;
  at::cuda::CUDAGraph graph;
};

DecodeGraph::DecodeGraph(const Transformer& model, KVCache& cache) : impl_(std::make_unique<Impl>()) {
  PHI_CHECK(model.device().is_cuda(), "DecodeGraph needs a model on a CUDA device");
  auto& m = *impl_;
  m.model = &model;
  m.cache = &cache;
  const int64_t n = cache.batch_size();
  for (int64_t r = 0; r < n; ++r) {
    // The capture writes K/V at each row's current length: it needs one free position.
    PHI_CHECK(cache.length(r) < cache.capacity(), "DecodeGraph: cache row ", r, " is full (", cache.capacity(),
              " positions)");
  }
  auto long_options = at::TensorOptions().dtype(at::kLong).device(model.device());
  m.ids = at::zeros({n, 1}, long_options);
  m.positions = at::tensor(row_lengths(cache), at::kLong).to(model.device());
  const bool long_factors = cache.long_rope(0);
  m.inv_freq = rope_inverse_frequencies(model.config(), long_factors).to(model.device(), at::kFloat);
  m.mscale = rope_magnitude_scale(model.config(), long_factors);
  at::NoGradGuard no_grad;
  c10::cuda::CUDAGuard device_guard(model.device());
  auto stream = c10::cuda::getStreamFromPool(false, model.device().index());
  {
    c10::cuda::CUDAStreamGuard stream_guard(stream);
    // A warm-up step (library handles, workspaces); it writes K/V at the current positions, which
    // the first real step overwrites.
    model.decode_step_fixed_shape(m.ids, m.positions, m.inv_freq, m.mscale, cache);
    stream.synchronize();
    m.graph.capture_begin();
    m.logits = model.decode_step_fixed_shape(m.ids, m.positions, m.inv_freq, m.mscale, cache);
    cudaStreamCaptureStatus status;
    cudaGraph_t captured = nullptr;
    size_t count = 0;
    if (cudaStreamGetCaptureInfo(stream.stream(), &status, nullptr, &captured) == cudaSuccess && captured != nullptr &&
        cudaGraphGetNodes(captured, nullptr, &count) == cudaSuccess) {
      m.nodes = static_cast<int64_t>(count);
      m.summary = describe(captured, count);
    }
    m.graph.capture_end();
  }
  stream.synchronize();
}

DecodeGraph::~DecodeGraph() = default;

int64_t DecodeGraph::nodes() const { return impl_->nodes; }
std::string DecodeGraph::node_summary() const { return impl_->summary; }

at::Tensor DecodeGraph::step(const std::vector<int64_t>& tokens) {
  auto& m = *impl_;
  const int64_t n = m.cache->batch_size();
  PHI_CHECK(static_cast<int64_t>(tokens.size()) == n, "DecodeGraph::step needs ", n, " tokens");
  const auto lengths = row_lengths(*m.cache);
  for (int64_t r = 0; r < n; ++r) {
    PHI_CHECK(lengths[static_cast<size_t>(r)] < m.cache->capacity(), "cache row ", r, " is full (", m.cache->capacity(),
              " positions)");
  }
  m.ids.copy_(at::tensor(tokens, at::kLong).view({n, 1}));
  m.positions.copy_(at::tensor(lengths, at::kLong));
  m.graph.replay();
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) rows[static_cast<size_t>(r)] = r;
  m.cache->advance(rows, std::vector<int64_t>(static_cast<size_t>(n), 1));
  return m.logits.view({n, m.logits.size(-1)});
}

// ---- PagedDecodeGraph ------------------------------------------------------------------------------

struct PagedDecodeGraph::Impl {
  int64_t rows = 0, width = 0;
  at::Tensor ids, positions, table, inv_freq, logits;
  double mscale = 1.0;
  at::cuda::CUDAGraph graph;
};

PagedDecodeGraph::PagedDecodeGraph(const Transformer& model, PagedKVCache& cache, int64_t rows, int64_t width,
                                   bool long_factors)
    : impl_(std::make_unique<Impl>()) {
  PHI_CHECK(model.device().is_cuda(), "PagedDecodeGraph needs a model on a CUDA device");
  PHI_CHECK(rows > 0 && width > 0, "PagedDecodeGraph needs rows and a page-table width > 0");
  auto& m = *impl_;
  m.rows = rows;
  m.width = width;
  const auto device = model.device();
  // Inputs of a step that touches only the scratch page: position 0, every table entry scratch.
  m.ids = at::zeros({rows, 1}, at::TensorOptions().dtype(at::kLong).device(device));
  m.positions = at::zeros({rows}, at::TensorOptions().dtype(at::kLong).device(device));
  m.table = at::full({rows, width}, cache.scratch_page(), at::TensorOptions().dtype(at::kInt).device(device));
  m.inv_freq = rope_inverse_frequencies(model.config(), long_factors).to(device, at::kFloat);
  m.mscale = rope_magnitude_scale(model.config(), long_factors);
  at::NoGradGuard no_grad;
  c10::cuda::CUDAGuard device_guard(device);
  auto stream = c10::cuda::getStreamFromPool(false, device.index());
  {
    c10::cuda::CUDAStreamGuard stream_guard(stream);
    model.decode_step_paged(m.ids, m.positions, m.table, m.inv_freq, m.mscale, cache);  // warm-up
    stream.synchronize();
    m.graph.capture_begin();
    m.logits = model.decode_step_paged(m.ids, m.positions, m.table, m.inv_freq, m.mscale, cache);
    m.graph.capture_end();
  }
  stream.synchronize();
}

PagedDecodeGraph::~PagedDecodeGraph() = default;

at::Tensor PagedDecodeGraph::step(const std::vector<int64_t>& tokens, const std::vector<int64_t>& positions,
                                  const at::Tensor& page_table) {
  auto& m = *impl_;
  PHI_CHECK(static_cast<int64_t>(tokens.size()) == m.rows && static_cast<int64_t>(positions.size()) == m.rows,
            "PagedDecodeGraph::step needs ", m.rows, " tokens and positions");
  PHI_CHECK(page_table.sizes() == at::IntArrayRef({m.rows, m.width}) && page_table.scalar_type() == at::kInt,
            "PagedDecodeGraph::step needs an int32 page table [", m.rows, ", ", m.width, "], got ", page_table.sizes());
  m.ids.copy_(at::tensor(tokens, at::kLong).view({m.rows, 1}));
  m.positions.copy_(at::tensor(positions, at::kLong));
  m.table.copy_(page_table);
  m.graph.replay();
  return m.logits.view({m.rows, m.logits.size(-1)});
}

}  // namespace phi
