#include "phi/models/rope.h"

#include <ATen/ATen.h>

namespace phi {

bool rope_uses_long_factors(const ModelConfig& config, int64_t total_length) {
  return config.use_long_rope && total_length > config.long_rope.original_max_position_embeddings;
}

at::Tensor rope_inverse_frequencies(const ModelConfig& config, bool long_factors) {
  const int64_t dim = config.rotary_dim;
  auto exponent = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  auto inv_freq = 1.0 / at::pow(config.rope_theta, exponent);
  if (config.use_long_rope) {
    const auto& factors = long_factors ? config.long_rope.long_factor : config.long_rope.short_factor;
    auto ext = at::tensor(std::vector<float>(factors.begin(), factors.end()), at::kFloat);
    inv_freq = 1.0 / (ext * at::pow(config.rope_theta, exponent));
  }
  return inv_freq;
}

double rope_magnitude_scale(const ModelConfig& config, bool long_factors) {
  if (!config.use_long_rope) return 1.0;
  return long_factors ? config.long_rope.long_mscale : config.long_rope.short_mscale;
}

std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& positions, const at::Tensor& inv_freq, double mscale) {
  auto freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq;  // [B, T, r/2]
  auto emb = at::cat({freqs, freqs}, -1);
  auto cos = emb.cos();
  auto sin = emb.sin();
  if (mscale != 1.0) {
    cos = cos * mscale;
    sin = sin * mscale;
  }
  return {cos, sin};
}

std::pair<at::Tensor, at::Tensor> rope_cos_sin(const ModelConfig& config, const at::Tensor& positions,
                                               bool long_factors) {
  return rope_tables(positions, rope_inverse_frequencies(config, long_factors).to(positions.device()),
                     rope_magnitude_scale(config, long_factors));
}

}  // namespace phi
