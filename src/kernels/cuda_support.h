// What every kernel dispatch file (src/kernels/*_dispatch.cpp) shares: from at::Tensor to the
// launchers' params (dtype, stream, device pointers, attention shapes) and the checks that name
// what is wrong. Compiled with and without CUDA: without it, require_cuda() throws before anything
// reaches a launcher (launch.h's launchers then only return kNotCompiled).
#pragma once

#include <cstdint>
#include <initializer_list>

#include <ATen/core/Tensor.h>

#include "kernels/cuda/launch.h"

namespace phi::kernels {

cuda::DType dtype_of(const at::Tensor& t, const char* what);
/// Throws unless the kernels were compiled, a GPU is present and every defined tensor is on it.
void require_cuda(const char* what, std::initializer_list<const at::Tensor*> tensors);
/// The current CUDA stream of t's device (a cudaStream_t).
void* stream_of(const at::Tensor& t);
/// The multiprocessor count of t's device (sizes grids).
int multiprocessor_count(const at::Tensor& t);
/// Throws naming `what` and the CUDA error when a launcher returned non-zero.
void check_launch(int code, const char* what);
inline const void* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }
/// The shape and strides of q [B, Hq, Tq, D], k / v [B, Hkv, Tk, D], checked (ranks, GQA groups,
/// contiguous head dim, one dtype, 16-byte aligned rows).
cuda::AttentionShape attention_shape(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const char* what);
/// key_lengths as int64 [B] on q's device (undefined stays undefined).
at::Tensor lengths_on(const at::Tensor& key_lengths, const at::Tensor& q);
inline const int64_t* lengths_ptr(const at::Tensor& lengths) {
  return lengths.defined() ? lengths.data_ptr<int64_t>() : nullptr;
}

}  // namespace phi::kernels
