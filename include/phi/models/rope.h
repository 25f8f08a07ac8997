// Rotary position embeddings: plain RoPE, partial rotary, and LongRoPE's short/long factor sets
// with their magnitude scales (docs/phi_family.md §2.1, §4).
#pragma once

#include <cstdint>
#include <utility>

#include <ATen/core/Tensor.h>

#include "phi/config/model_config.h"

namespace phi {

/// Which LongRoPE factor set a sequence uses: the long set once the total length (the largest
/// position + 1, or the planned prompt + new tokens of a request) exceeds the original context.
bool rope_uses_long_factors(const ModelConfig& config, int64_t total_length);

/// Inverse frequencies [rotary_dim / 2] in float32 (LongRoPE factors applied).
at::Tensor rope_inverse_frequencies(const ModelConfig& config, bool long_factors);

/// LongRoPE's magnitude scale of the factor set (1 without LongRoPE).
double rope_magnitude_scale(const ModelConfig& config, bool long_factors);

/// cos and sin [B, T, rotary_dim] in float32 for int64 positions [B, T], magnitude-scaled for
/// LongRoPE.
std::pair<at::Tensor, at::Tensor> rope_cos_sin(const ModelConfig& config, const at::Tensor& positions,
                                               bool long_factors);

/// The same tables from inverse frequencies already on the positions' device (device ops only:
/// usable inside a CUDA graph capture).
std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& positions, const at::Tensor& inv_freq, double mscale);

}  // namespace phi
