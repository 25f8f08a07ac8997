// Which CUDA kernels have passed their GPU test: the one table. Kernels written without a GPU are
// compiled and wired into the dispatch behind these entries, and are used only once their entry is
// true. scripts/gpu_check.sh reads the table (`phi info --kernels`) to run each unverified kernel's
// test in a process of its own and its bench rows apart; bench_gpu registers rows by it; help texts
// and docs/kernels.md quote it. Flip an entry in the commit that records the passing run in
// docs/perf.md.
#pragma once

#include <cstddef>

namespace phi::verified {

struct Kernel {
  const char* name;      // what the dispatch and the bench ask about
  bool verified;         // its GPU test has passed on a GPU (docs/perf.md)
  const char* gpu_test;  // the gtest (tests/kernels/test_cuda_kernels.cpp) that checks it
  const char* what;
};

inline constexpr Kernel kKernels[] = {
    {"add_norm", true, "CudaKernels.AddNormForwardAndBackward", "residual add + RMSNorm / LayerNorm, forward and backward"},
    {"activations", true, "CudaKernels.ActivationsForwardAndBackward", "gelu_new, SwiGLU, GeGELU, forward and backward"},
    {"rotary", true, "CudaKernels.RotaryForwardAndInverse", "rotary embedding and its inverse"},
    {"gemv", true, "CudaKernels.GemvEqualsLinearForOneRow", "batch-1 matrix-vector product"},
    {"kv_append", true, "CudaKernels.KvCacheAppendRotatesKeysAndWritesOneRowPerSequence", "decode's KV-cache append"},
    {"flash_wmma", true, "CudaKernels.FlashAttentionForwardAndBackward", "WMMA flash attention, forward and backward"},
    {"decode", true, "CudaKernels.DecodeAttentionOverACache", "split-K decode attention over a dense cache"},
    {"decode_graph", true, "CudaKernels.GraphDecodingEqualsCachedForward", "decode steps replayed as CUDA graphs (fixed slots)"},
    {"flash_mma", false, "CudaKernels.MmaFlashAttentionForwardAndBackward",
     "mma.sync flash attention, forward and backward (FlashKernel::kMma, --flash-kernel mma)"},
    {"flash_masks", false, "CudaKernels.FlashAttentionWithSlidingWindowAndBlockSparsePattern",
     "the flash kernels' sliding window and Phi-3-small block-sparse pattern"},
    {"flash_mma_masks", false, "CudaKernels.MmaFlashAttentionWithSlidingWindowAndBlockSparsePattern",
     "the same masks on the mma.sync kernels"},
    {"paged_decode", false, "CudaKernels.PagedDecodeAttentionReadsThroughThePageTable",
     "decode attention reading a paged cache through its page table"},
    {"paged_decode_graph", false, "CudaKernels.PagedDecodeGraphEqualsCachedForward",
     "the server's decode steps over the paged cache replayed as CUDA graphs (serve --cuda-graphs)"},
};

constexpr bool same(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) ++a, ++b;
  return *a == *b;
}

/// The entry named `name`, or null.
constexpr const Kernel* find(const char* name) {
  for (const auto& k : kKernels) {
    if (same(k.name, name)) return &k;
  }
  return nullptr;
}
/// The entry named `name` has passed on a GPU (false for an unknown name).
constexpr bool is(const char* name) {
  const Kernel* k = find(name);
  return k != nullptr && k->verified;
}
constexpr bool known(const char* name) { return find(name) != nullptr; }

// The dispatch's switches.
static_assert(known("flash_masks") && known("paged_decode") && known("paged_decode_graph"));
inline constexpr bool kFlashMasks = is("flash_masks");
inline constexpr bool kPagedDecode = is("paged_decode");

/// "verified on a GPU" or "not yet verified on a GPU", for help texts.
constexpr const char* status_text(const char* name) { return is(name) ? "verified on a GPU" : "not yet verified on a GPU"; }

}  // namespace phi::verified
