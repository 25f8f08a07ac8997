// CPU kernels for what LibTorch does slowly on a small machine (issue 17: batch-1 decode), behind
// plain declarations. Each has its ATen reference (ops.h) and a test against it
// (tests/kernels/test_cpu_kernels.cpp); ops.h's functions dispatch to them.
#pragma once

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace phi {

/// y = x W^T (+ b) for one row x [.., K] (numel K) and a contiguous W [N, K], f32 / bf16 / f16 with
/// x of W's dtype, on the CPU: f32 accumulation, rows spread over the threads, AVX-512 / AVX2 /
/// portable chosen at run time. Returns [.., N] in x's dtype. Throws phi::Error when
/// gemv_cpu_applies is false.
at::Tensor gemv_cpu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);
/// True when gemv_cpu takes these arguments.
bool gemv_cpu_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);
/// The instruction set gemv_cpu runs with here: "avx512", "avx2" or "portable".
const char* gemv_cpu_isa();
/// Every instruction set this CPU can run gemv_cpu with, "portable" first.
std::vector<std::string> gemv_cpu_isas();
/// gemv_cpu with one of gemv_cpu_isas() (tests cover each path on the CPU at hand).
at::Tensor gemv_cpu_with(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, const std::string& isa);

}  // namespace phi
