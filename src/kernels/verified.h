// Kernels written without a GPU wait here until a GPU run has passed their tests (scripts/
// gpu_check.sh runs the CudaKernels.Unverified* tests in processes of their own); the attention
// dispatch uses them only once the flag is true. Flip a flag in the commit that records the passing
// run in docs/perf.md, and rename its test.
#pragma once

namespace phi::verified {

// The flash kernels' sliding window and Phi-3-small block-sparse pattern
// (UnverifiedFlashAttentionWithSlidingWindowAndBlockSparsePattern).
constexpr bool kFlashMasks = false;
// The paged decode kernel (UnverifiedPagedDecodeAttentionReadsThroughThePageTable).
constexpr bool kPagedDecode = false;

}  // namespace phi::verified
