// The attention reference against a naive per-head softmax loop, and its masks.
#include <gtest/gtest.h>

#include <cmath>

#include <ATen/ATen.h>

#include "phi/kernels/attention.h"
#include "phi/kernels/cuda_kernels.h"

namespace {

// Naive float64 attention over explicit per-head loops with an explicit visibility predicate.
template <typename Visible>
at::Tensor naive(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, Visible visible) {
  auto qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble);
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), S = k.size(2), group = H / k.size(1);
  auto out = at::zeros_like(qd);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> w(S, 0.0);
        double max = -INFINITY, sum = 0;
        for (int64_t s = 0; s < S; ++s) {
          if (!visible(b, h, t, s)) continue;
          w[s] = (qd[b][h][t] * kd[b][h / group][s]).sum().item<double>() * scale;
          max = std::max(max, w[s]);
        }
        for (int64_t s = 0; s < S; ++s) {
          w[s] = visible(b, h, t, s) ? std::exp(w[s] - max) : 0.0;
          sum += w[s];
        }
        for (int64_t s = 0; s < S; ++s) {
          if (w[s] != 0.0) out[b][h][t] += vd[b][h / group][s] * (w[s] / sum);
        }
      }
    }
  }
  return out;
}

TEST(Attention, GqaCausalWithKeyLengthsMatchesNaive) {
  auto q = at::randn({2, 4, 6, 8}), k = at::randn({2, 2, 6, 8}), v = at::randn({2, 2, 6, 8});
  phi::AttentionMaskSpec spec;
  spec.query_positions = at::arange(6, at::kLong).unsqueeze(0).expand({2, 6}).contiguous();
  spec.key_lengths = at::tensor(std::vector<int64_t>{6, 4}, at::kLong);
  auto ours = phi::attention(q, k, v, 0.3, spec);
  std::vector<int64_t> lengths = {6, 4};
  auto ref = naive(q, k, v, 0.3, [&](int64_t b, int64_t, int64_t t, int64_t s) { return s <= t && s < lengths[b]; });
  EXPECT_LT((ours.to(at::kDouble) - ref).abs().max().item<double>(), 1e-5);
}

TEST(Attention, SlidingWindowAndBlockSparseMatchNaive) {
  const int64_t T = 40, H = 4;
  auto q = at::randn({1, H, T, 8}), k = at::randn({1, 2, T, 8}), v = at::randn({1, 2, T, 8});
  phi::AttentionMaskSpec spec;
  spec.query_positions = at::arange(T, at::kLong).unsqueeze(0);
  spec.key_lengths = at::full({1}, T, at::kLong);
  spec.sliding_window = 7;
  auto windowed = phi::attention(q, k, v, 0.25, spec);
  auto ref_w = naive(q, k, v, 0.25, [](int64_t, int64_t, int64_t t, int64_t s) { return s <= t && t - s < 7; });
  EXPECT_LT((windowed.to(at::kDouble) - ref_w).abs().max().item<double>(), 1e-5);

  phi::BlockSparseLayout layout{4, 2, 3, false};
  spec.sliding_window = 0;
  spec.blocksparse = &layout;
  auto sparse = phi::attention(q, k, v, 0.25, spec);
  auto ref_s = naive(q, k, v, 0.25, [](int64_t, int64_t h, int64_t t, int64_t s) {
    const int64_t qb = t / 4, kb = s / 4;
    return s <= t && (qb - kb < 2 || (kb + h * 1 + 1) % 3 == 0);
  });
  EXPECT_LT((sparse.to(at::kDouble) - ref_s).abs().max().item<double>(), 1e-5);
  EXPECT_GT((sparse - phi::attention(q, k, v, 0.25, [&] {
               auto dense = spec;
               dense.blocksparse = nullptr;
               return dense;
             }())).abs().max().item<double>(), 1e-3) << "the pattern must matter at this length";
}

TEST(Attention, Bf16InputsAccumulateInFloat32) {
  auto q = at::randn({1, 2, 16, 64}), k = at::randn({1, 2, 16, 64}), v = at::randn({1, 2, 16, 64});
  phi::AttentionMaskSpec spec;
  spec.query_positions = at::arange(16, at::kLong).unsqueeze(0);
  spec.key_lengths = at::full({1}, 16, at::kLong);
  auto ref = phi::attention(q, k, v, 0.125, spec);
  auto low = phi::attention(q.to(at::kBFloat16), k.to(at::kBFloat16), v.to(at::kBFloat16), 0.125, spec);
  EXPECT_EQ(low.scalar_type(), at::kBFloat16);
  EXPECT_LT((low.to(at::kFloat) - ref).abs().max().item<double>() / ref.abs().max().item<double>(), 2e-2);
}

}  // namespace

// The flash kernels' mask parameters (flash_mask_for) against the reference mask: the kernels see
// key j from query i of head h iff j <= i, i - j < window (when set) and the 64 x 64 tile is in the
// pattern (tile_in_pattern in kernels/cuda/common.cuh); that rule, evaluated here on the CPU,
// must give build_attention_mask's mask for Phi-3-small's layouts, per head and shared.
TEST(Attention, FlashMaskParametersDescribeTheReferenceMask) {
  const int64_t T = 333;
  for (int64_t heads : {int64_t(4), int64_t(32)}) {
    for (int variant = 0; variant < 4; ++variant) {
      phi::BlockSparseLayout layout;
      layout.block_size = 64;
      layout.n_local_blocks = variant == 3 ? 1 : 2;
      layout.vert_stride = variant == 2 ? 8 : 3;
      layout.homo_head = variant == 1;
      phi::AttentionMaskSpec spec;
      spec.query_positions = at::arange(T, at::kLong).unsqueeze(0);
      spec.key_lengths = at::full({1}, T, at::kLong);
      spec.blocksparse = variant == 0 ? nullptr : &layout;
      const int64_t window = variant == 0 ? 100 : 0;
      spec.sliding_window = window;
      auto flash = phi::flash_mask_for(spec, window, heads);
      ASSERT_TRUE(flash.has_value());
      auto reference = phi::build_attention_mask(spec, heads, T).expand({1, heads, T, T})[0];
      auto ours = at::zeros({heads, T, T}, at::kBool);
      auto acc = ours.accessor<bool, 3>();
      for (int64_t h = 0; h < heads; ++h) {
        for (int64_t i = 0; i < T; ++i) {
          for (int64_t j = 0; j <= i; ++j) {
            const int64_t qb = i / 64, kb = j / 64;
            const bool in_window = flash->window == 0 || i - j < flash->window;
            const bool in_pattern = flash->vert_stride == 0 || qb - kb < flash->local_blocks ||
                                    (kb + h * flash->head_step + 1) % flash->vert_stride == 0;
            acc[h][i][j] = in_window && in_pattern;
          }
        }
      }
      EXPECT_TRUE(at::equal(ours, reference)) << "heads " << heads << " variant " << variant;
    }
  }
  // What the kernels cannot express: another block size, document segments.
  phi::BlockSparseLayout other;
  other.block_size = 32;
  phi::AttentionMaskSpec spec;
  spec.blocksparse = &other;
  EXPECT_FALSE(phi::flash_mask_for(spec, 0, 4).has_value());
  spec.blocksparse = nullptr;
  spec.segments = at::zeros({1, 4}, at::kLong);
  EXPECT_FALSE(phi::flash_mask_for(spec, 0, 4).has_value());
}
