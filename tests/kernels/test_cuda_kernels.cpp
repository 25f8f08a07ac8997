// Every CUDA kernel against its ATen reference computed in float32 on fresh random inputs, with
// the caching allocator poisoned (NaN) before each call so that an unwritten output element fails.
// Tolerances (relative: ||out - ref|| / ||ref||): bf16 1e-2, f16 5e-3, float32 1e-5. Skipped with a
// message when no GPU is present.
#include <algorithm>
#include <map>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>

#include "phi/config/model_config.h"
#include "phi/core/error.h"
#include "phi/infer/decode_graph.h"
#include "phi/kernels/attention.h"
#include "phi/kernels/cuda_kernels.h"
#include "phi/kernels/ops.h"
#include "phi/kernels/verified.h"
#include "phi/models/family.h"
#include "phi/models/transformer.h"

namespace {

#define REQUIRE_GPU()                                                                                   \
  if (!phi::cuda_kernels_runnable()) {                                                                  \
    GTEST_SKIP() << "no CUDA GPU present (kernels compiled: " << phi::cuda_kernels_compiled() << ")"; \
  }

double tolerance(at::ScalarType t) { return t == at::kFloat ? 1e-5 : (t == at::kHalf ? 5e-3 : 1e-2); }

// ||out - ref|| / ||ref|| in float64; NaN (an unwritten or broken element) gives +inf.
double rel(const at::Tensor& out, const at::Tensor& ref) {
  auto o = out.to(at::kDouble).cpu(), r = ref.to(at::kDouble).cpu();
  if (!at::isfinite(o).all().item<bool>()) return INFINITY;
  return ((o - r).norm() / r.norm().clamp_min(1e-30)).item<double>();
}

// Fills freed blocks of the caching allocator with NaN so that fresh outputs start poisoned.
void poison() {
  for (int64_t n : {int64_t(1) << 16, int64_t(1) << 20, int64_t(1) << 24}) {
    auto t = at::full({n}, NAN, at::device(at::kCUDA).dtype(at::kFloat));
  }
}

at::TensorOptions on(at::ScalarType t) { return at::device(at::kCUDA).dtype(t); }

TEST(CudaKernels, AddNormForwardAndBackward) {
  REQUIRE_GPU();
  for (bool rms : {true, false}) {
    for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      for (bool with_residual : {false, true}) {
        const int64_t rows = 37, cols = 3072;
        auto x = at::randn({rows, cols}, on(dtype));
        auto r = with_residual ? at::randn({rows, cols}, on(dtype)) : at::Tensor();
        auto w = (1 + 0.1 * at::randn({cols}, on(at::kFloat))).to(dtype);
        auto b = rms ? at::Tensor() : (0.1 * at::randn({cols}, on(at::kFloat))).to(dtype);
        auto dy = at::randn({rows, cols}, on(dtype));
        auto dh_in = with_residual ? at::randn({rows, cols}, on(dtype)) : at::Tensor();
        poison();
        auto f = phi::add_norm_cuda(x, r, w, b, 1e-5, rms);
        poison();
        auto g = phi::add_norm_backward_cuda(dy, dh_in, f.h, w, f, rms);
        // Reference in float32 with autograd.
        auto xf = x.to(at::kFloat).requires_grad_(true);
        auto wf = w.to(at::kFloat).requires_grad_(true);
        auto bf = rms ? at::Tensor() : b.to(at::kFloat).requires_grad_(true);
        auto h = with_residual ? xf + r.to(at::kFloat) : xf * 1.0;
        auto y = rms ? phi::rms_norm(h, wf, 1e-5) : phi::layer_norm(h, wf, bf, 1e-5);
        auto loss = (y * dy.to(at::kFloat)).sum();
        if (with_residual) loss = loss + (h * dh_in.to(at::kFloat)).sum();
        loss.backward();
        const double tol = tolerance(dtype);
        const std::string what = std::string(rms ? "rms" : "layer") + " " + c10::toString(dtype) +
                                 (with_residual ? " +residual" : "");
        EXPECT_LT(rel(f.h, h), tol) << what;
        EXPECT_LT(rel(f.y, y), tol) << what;
        EXPECT_LT(rel(g.dh, xf.grad()), tol) << what;
        EXPECT_LT(rel(g.dweight, wf.grad()), tol) << what;
        if (!rms) EXPECT_LT(rel(g.dbias, bf.grad()), tol) << what;
      }
    }
  }
}

TEST(CudaKernels, ActivationsForwardAndBackward) {
  REQUIRE_GPU();
  using phi::FusedActivation;
  for (auto kind : {FusedActivation::kGeluNew, FusedActivation::kSwiGlu, FusedActivation::kGeGelu}) {
    for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      const int64_t inner = 1000;
      const bool gated = kind != FusedActivation::kGeluNew;
      auto x = (3 * at::randn({19, gated ? 2 * inner : inner}, on(at::kFloat))).to(dtype);
      auto dy = at::randn({19, inner}, on(dtype));
      const double limit = 5.0;  // small enough that the clamps matter
      poison();
      auto y = phi::activation_cuda(x, kind, limit);
      poison();
      auto dx = phi::activation_backward_cuda(x, dy, kind, limit);
      auto xf = x.to(at::kFloat).requires_grad_(true);
      auto ref = kind == FusedActivation::kGeluNew ? phi::gelu_new(xf)
                 : kind == FusedActivation::kSwiGlu ? phi::swiglu(xf)
                                                    : phi::gegelu(xf, limit);
      (ref * dy.to(at::kFloat)).sum().backward();
      EXPECT_LT(rel(y, ref), tolerance(dtype)) << static_cast<int>(kind) << " " << dtype;
      EXPECT_LT(rel(dx, xf.grad()), tolerance(dtype)) << static_cast<int>(kind) << " " << dtype;
    }
  }
}

TEST(CudaKernels, RotaryForwardAndInverse) {
  REQUIRE_GPU();
  for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (int64_t rot : {int64_t(96), int64_t(32)}) {  // full and partial rotary (phi-2 style)
      const int64_t B = 2, T = 50, H = 6, D = 96;
      // q as the model makes it: a transposed view of [B, T, H, D].
      auto q = at::randn({B, T, H, D}, on(dtype)).transpose(1, 2);
      auto pos = at::arange(T, on(at::kFloat)).view({1, T, 1}).expand({B, T, rot / 2});
      auto inv = at::pow(10000.0, -at::arange(0, rot, 2, on(at::kFloat)) / rot);
      auto angles = at::cat({pos * inv, pos * inv}, -1);
      auto cos = angles.cos(), sin = angles.sin();
      poison();
      auto out = phi::rotary_cuda(q, cos, sin);
      auto qf = q.to(at::kFloat).requires_grad_(true);
      auto ref = phi::apply_rotary(qf, cos, sin);
      EXPECT_LT(rel(out, ref), tolerance(dtype)) << dtype << " rot " << rot;
      auto g = at::randn({B, H, T, D}, on(dtype));
      (ref * g.to(at::kFloat)).sum().backward();
      poison();
      auto back = phi::rotary_cuda(g, cos, sin, /*inverse=*/true);
      EXPECT_LT(rel(back, qf.grad()), tolerance(dtype)) << dtype << " rot " << rot << " (inverse)";
    }
  }
}

struct AttentionCase {
  int64_t B, Hq, Hkv, T, D;
  bool padding;
};

phi::AttentionMaskSpec rows_mask(int64_t B, int64_t T, const at::Tensor& lengths) {
  phi::AttentionMaskSpec m;
  m.query_positions = at::arange(T, on(at::kLong)).unsqueeze(0).expand({B, T});
  m.key_lengths = lengths;
  return m;
}

TEST(CudaKernels, GemvEqualsLinearForOneRow) {
  REQUIRE_GPU();
  for (auto dtype : {at::kBFloat16, at::kHalf}) {
    // Row lengths around the kernel's unrolled / tail split; N not a multiple of the block's rows.
    for (auto [N, K] : std::vector<std::pair<int64_t, int64_t>>{{1000, 3072}, {37, 72}, {5, 8}, {32064, 3072}, {3072, 8192}, {40, 17920}}) {
      for (bool with_bias : {false, true}) {
        auto w = at::randn({N, K}, on(dtype)) * 0.05;
        auto x = at::randn({1, 1, K}, on(dtype));
        auto b = with_bias ? at::randn({N}, on(dtype)) : at::Tensor();
        ASSERT_TRUE(phi::gemv_applies(x, w, b));
        auto ref = at::linear(x.to(at::kFloat), w.to(at::kFloat), with_bias ? b.to(at::kFloat) : at::Tensor());
        poison();
        auto y = phi::gemv_cuda(x, w, b);
        EXPECT_EQ(y.sizes(), ref.sizes());
        EXPECT_LT(rel(y, ref), tolerance(dtype)) << dtype << " N" << N << " K" << K << " bias " << with_bias;
      }
    }
  }
  // Shapes it does not take fall back to at::linear through phi::linear.
  auto w = at::randn({16, 12}, on(at::kBFloat16));
  EXPECT_FALSE(phi::gemv_applies(at::randn({1, 12}, on(at::kBFloat16)), w, {}));    // K % 8 != 0
  EXPECT_FALSE(phi::gemv_applies(at::randn({2, 16}, on(at::kBFloat16)), at::randn({4, 16}, on(at::kBFloat16)), {}));  // 2 rows
  auto unaligned = at::randn({20}, on(at::kBFloat16)).narrow(0, 1, 16);  // 2-byte offset
  EXPECT_FALSE(phi::gemv_applies(unaligned, at::randn({4, 16}, on(at::kBFloat16)), {}));
}

TEST(CudaKernels, KvCacheAppendRotatesKeysAndWritesOneRowPerSequence) {
  REQUIRE_GPU();
  for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (int64_t rot : {int64_t(0), int64_t(32), int64_t(96)}) {
      const int64_t B = 3, H = 4, D = 96, C = 50;
      auto opts = at::device(at::kCUDA).dtype(dtype);
      // k and v as the model makes them: views into one projection [B, 1, 2 * H * D].
      auto kv = at::randn({B, 1, 2 * H * D}, opts);
      auto k = kv.narrow(-1, 0, H * D).view({B, 1, H, D}).transpose(1, 2);
      auto v = kv.narrow(-1, H * D, H * D).view({B, 1, H, D}).transpose(1, 2);
      auto k_cache = at::randn({B, H, C, D}, opts), v_cache = at::randn({B, H, C, D}, opts);
      auto k_before = k_cache.clone(), v_before = v_cache.clone();
      auto positions = at::tensor({7, 0, 49}, at::kLong).cuda();
      auto cos = at::randn({B, 1, rot}, opts.dtype(at::kFloat)), sin = at::randn({B, 1, rot}, opts.dtype(at::kFloat));
      phi::kv_append_cuda(k, v, cos, sin, k_cache, v_cache, positions);
      auto k_ref = rot > 0 ? phi::apply_rotary(k.to(at::kFloat), cos, sin) : k.to(at::kFloat);
      for (int64_t b = 0; b < B; ++b) {
        const int64_t p = positions[b].item<int64_t>();
        EXPECT_LT(rel(k_cache[b].select(1, p), k_ref[b].select(1, 0)), tolerance(dtype)) << dtype << " rot " << rot;
        EXPECT_TRUE(at::equal(v_cache[b].select(1, p), v[b].select(1, 0)));
        // every other row untouched
        k_cache[b].select(1, p).copy_(k_before[b].select(1, p));
        v_cache[b].select(1, p).copy_(v_before[b].select(1, p));
      }
      EXPECT_TRUE(at::equal(k_cache, k_before) && at::equal(v_cache, v_before)) << dtype << " rot " << rot;
    }
  }
}

// Forward (output and logsumexp) and backward of one kind of flash kernels against the float32
// reference: GQA, padding, every head dim, q / k / v as strided views of one projection.
void check_flash_kernels(phi::FlashKernel kernel) {
  const std::vector<AttentionCase> cases = {
      {2, 4, 4, 128, 64, false}, {2, 8, 2, 200, 80, true}, {1, 6, 3, 257, 96, true}, {2, 4, 1, 96, 128, false},
      {1, 32, 32, 512, 96, false}};
  for (const auto& c : cases) {
    for (auto dtype : {at::kBFloat16, at::kHalf}) {
      const std::string what = "B" + std::to_string(c.B) + " Hq" + std::to_string(c.Hq) + " Hkv" + std::to_string(c.Hkv) +
                               " T" + std::to_string(c.T) + " D" + std::to_string(c.D) + (c.padding ? " padded " : " ") +
                               c10::toString(dtype);
      // q, k, v as strided views of one [B, T, (Hq + 2 Hkv), D] projection, like the model's.
      auto qkv = at::randn({c.B, c.T, c.Hq + 2 * c.Hkv, c.D}, on(dtype));
      auto q = qkv.narrow(2, 0, c.Hq).transpose(1, 2);
      auto k = qkv.narrow(2, c.Hq, c.Hkv).transpose(1, 2);
      auto v = qkv.narrow(2, c.Hq + c.Hkv, c.Hkv).transpose(1, 2);
      at::Tensor lengths = at::full({c.B}, c.T, on(at::kLong));
      if (c.padding) lengths[0] = c.T - 37;
      const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
      poison();
      auto f = phi::flash_attention_forward_cuda(q, k, v, c.padding ? lengths : at::Tensor(), scale, {}, kernel);
      auto qf = q.to(at::kFloat).requires_grad_(true), kf = k.to(at::kFloat).requires_grad_(true),
           vf = v.to(at::kFloat).requires_grad_(true);
      auto mask = rows_mask(c.B, c.T, lengths);
      auto ref = phi::attention_reference(qf, kf, vf, scale, mask);
      EXPECT_LT(rel(f.out, ref), tolerance(dtype)) << what;
      // logsumexp of the visible scaled scores.
      {
        at::NoGradGuard no_grad;
        auto kr = kf.repeat_interleave(c.Hq / c.Hkv, 1);
        auto scores = at::matmul(qf, kr.transpose(-1, -2)) * scale;
        auto visible = phi::build_attention_mask(mask, c.Hq, c.T);
        auto lse_ref = scores.masked_fill(visible.logical_not(), -INFINITY).logsumexp(-1);
        EXPECT_LT(rel(f.lse, lse_ref), 1e-3) << what << " lse";
      }
      auto d_out = at::randn({c.B, c.Hq, c.T, c.D}, on(dtype));
      (ref * d_out.to(at::kFloat)).sum().backward();
      poison();
      auto g = phi::flash_attention_backward_cuda(q, k, v, f, d_out, c.padding ? lengths : at::Tensor(), scale, {},
                                                  kernel);
      EXPECT_LT(rel(g.dq, qf.grad()), tolerance(dtype)) << what << " dq";
      EXPECT_LT(rel(g.dk, kf.grad()), tolerance(dtype)) << what << " dk";
      EXPECT_LT(rel(g.dv, vf.grad()), tolerance(dtype)) << what << " dv";
    }
  }
}

TEST(CudaKernels, FlashAttentionForwardAndBackward) {
  REQUIRE_GPU();
  check_flash_kernels(phi::FlashKernel::kWmma);
}

// The mma.sync kernels (their status: the "flash_mma" entry of phi/kernels/verified.h).
TEST(CudaKernels, MmaFlashAttentionForwardAndBackward) {
  REQUIRE_GPU();
  check_flash_kernels(phi::FlashKernel::kMma);
}

// The flash kernels' optional masks against the reference mask: Phi-3's sliding window and
// Phi-3-small's block-sparse pattern at 64-token blocks (per-head and shared patterns), forward
// and backward, GQA, a sequence length that ends inside a tile. Whether a test has passed on a GPU
// is its kernel's entry in phi/kernels/verified.h; gpu_check.sh runs the unverified ones each in a
// process of its own after the others.
void check_flash_masks(phi::FlashKernel kernel) {
  const int64_t B = 2, Hq = 4, Hkv = 2, T = 333;
  for (int64_t D : {int64_t(64), int64_t(96)}) {
    for (int variant = 0; variant < 4; ++variant) {
      phi::BlockSparseLayout layout;
      layout.block_size = 64;
      layout.n_local_blocks = 2;
      layout.vert_stride = 3;
      layout.homo_head = variant == 3;
      phi::FlashMask flash_mask;
      auto mask = rows_mask(B, T, at::full({B}, T, on(at::kLong)));
      std::string what = "D" + std::to_string(D);
      if (variant < 2) {
        flash_mask.window = variant == 0 ? 100 : 64;
        mask.sliding_window = flash_mask.window;
        what += " window " + std::to_string(flash_mask.window);
      } else {
        flash_mask.local_blocks = layout.n_local_blocks;
        flash_mask.vert_stride = layout.vert_stride;
        flash_mask.head_step = layout.homo_head ? 0 : std::max<int64_t>(1, layout.vert_stride / Hq);
        mask.blocksparse = &layout;
        what += layout.homo_head ? " blocksparse shared" : " blocksparse per head";
      }
      auto qkv = at::randn({B, T, Hq + 2 * Hkv, D}, on(at::kBFloat16));
      auto q = qkv.narrow(2, 0, Hq).transpose(1, 2);
      auto k = qkv.narrow(2, Hq, Hkv).transpose(1, 2);
      auto v = qkv.narrow(2, Hq + Hkv, Hkv).transpose(1, 2);
      const double scale = 1.0 / std::sqrt(static_cast<double>(D));
      poison();
      auto f = phi::flash_attention_forward_cuda(q, k, v, {}, scale, flash_mask, kernel);
      auto qf = q.to(at::kFloat).requires_grad_(true), kf = k.to(at::kFloat).requires_grad_(true),
           vf = v.to(at::kFloat).requires_grad_(true);
      auto ref = phi::attention_reference(qf, kf, vf, scale, mask);
      EXPECT_LT(rel(f.out, ref), tolerance(at::kBFloat16)) << what;
      auto d_out = at::randn({B, Hq, T, D}, on(at::kBFloat16));
      (ref * d_out.to(at::kFloat)).sum().backward();
      poison();
      auto g = phi::flash_attention_backward_cuda(q, k, v, f, d_out, {}, scale, flash_mask, kernel);
      EXPECT_LT(rel(g.dq, qf.grad()), tolerance(at::kBFloat16)) << what << " dq";
      EXPECT_LT(rel(g.dk, kf.grad()), tolerance(at::kBFloat16)) << what << " dk";
      EXPECT_LT(rel(g.dv, vf.grad()), tolerance(at::kBFloat16)) << what << " dv";
    }
  }
}

TEST(CudaKernels, FlashAttentionWithSlidingWindowAndBlockSparsePattern) {
  REQUIRE_GPU();
  check_flash_masks(phi::FlashKernel::kWmma);
}

TEST(CudaKernels, MmaFlashAttentionWithSlidingWindowAndBlockSparsePattern) {
  REQUIRE_GPU();
  check_flash_masks(phi::FlashKernel::kMma);
}

TEST(CudaKernels, DecodeAttentionOverACache) {
  REQUIRE_GPU();
  for (int64_t D : {int64_t(64), int64_t(80), int64_t(96), int64_t(128)}) {
    for (int64_t Tq : {int64_t(1), int64_t(3)}) {
      for (auto dtype : {at::kBFloat16, at::kHalf, at::kFloat}) {
        const int64_t B = 3, Hq = 8, Hkv = 4, capacity = 1100;
        auto lengths = at::tensor(std::vector<int64_t>{1037, 5, 600}, at::kLong).to(at::kCUDA);
        auto q = at::randn({B, Hq, Tq, D}, on(dtype));
        auto k = at::randn({B, Hkv, capacity, D}, on(dtype));
        auto v = at::randn({B, Hkv, capacity, D}, on(dtype));
        // Cache rows past each length hold garbage that must never be read into the result.
        k.narrow(2, 1037, capacity - 1037).fill_(NAN);
        v.narrow(2, 1037, capacity - 1037).fill_(NAN);
        const double scale = 1.0 / std::sqrt(static_cast<double>(D));
        phi::AttentionMaskSpec mask;
        mask.query_positions = lengths.unsqueeze(1) - Tq + at::arange(Tq, on(at::kLong)).unsqueeze(0);
        mask.key_lengths = lengths;
        auto ref = phi::attention_reference(q.to(at::kFloat), k.narrow(2, 0, 1037).to(at::kFloat),
                                            v.narrow(2, 0, 1037).to(at::kFloat), scale, mask);
        for (int64_t splits : {int64_t(0), int64_t(1), int64_t(7)}) {
          poison();
          auto out = phi::decode_attention_cuda(q, k, v, lengths, scale, splits);
          EXPECT_LT(rel(out, ref), tolerance(dtype)) << "D" << D << " Tq" << Tq << " " << dtype << " splits " << splits;
        }
        // Phi-3's sliding window: only the last `window` keys up to each query (and a window wider
        // than every sequence changes nothing).
        for (int64_t window : {int64_t(300), int64_t(2)}) {
          mask.sliding_window = window;
          auto windowed = phi::attention_reference(q.to(at::kFloat), k.narrow(2, 0, 1037).to(at::kFloat),
                                                   v.narrow(2, 0, 1037).to(at::kFloat), scale, mask);
          for (int64_t splits : {int64_t(0), int64_t(7)}) {
            poison();
            auto out = phi::decode_attention_cuda(q, k, v, lengths, scale, splits, window);
            EXPECT_LT(rel(out, windowed), tolerance(dtype)) << "D" << D << " Tq" << Tq << " window " << window;
          }
        }
        mask.sliding_window = 0;
      }
    }
  }
}

// The paged cache's decode kernel: sequences scattered over shuffled pages of a pool whose every
// other row (free pages, rows past a sequence's length, the table's padding) is NaN, against the
// reference attention of each sequence's keys gathered densely.
TEST(CudaKernels, PagedDecodeAttentionReadsThroughThePageTable) {
  REQUIRE_GPU();
  const int64_t page = 16, n_pages = 200, B = 3, Hq = 8, Hkv = 4;
  const std::vector<int64_t> lengths = {1037, 5, 600};
  const int64_t longest = 1037, width = (longest + page - 1) / page;
  auto order = at::randperm(n_pages, at::kLong);
  std::vector<int32_t> table(B * width, n_pages - 1);  // padding: a page no sequence holds (NaN)
  std::vector<std::vector<int64_t>> rows(B);
  int64_t next = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t p = 0; p < (lengths[b] + page - 1) / page; ++p) table[b * width + p] = static_cast<int32_t>(order[next++].item<int64_t>());
    for (int64_t j = 0; j < lengths[b]; ++j) rows[b].push_back(table[b * width + j / page] * page + j % page);
  }
  ASSERT_LT(next, n_pages);
  auto table_gpu = at::tensor(table, at::kInt).view({B, width}).to(at::kCUDA);
  auto lengths_gpu = at::tensor(lengths, at::kLong).to(at::kCUDA);
  for (int64_t D : {int64_t(64), int64_t(80), int64_t(96), int64_t(128)}) {
    for (int64_t Tq : {int64_t(1), int64_t(3)}) {
      for (auto dtype : {at::kBFloat16, at::kHalf, at::kFloat}) {
        auto k_pool = at::full({n_pages, page, Hkv, D}, NAN, on(dtype));
        auto v_pool = at::full({n_pages, page, Hkv, D}, NAN, on(dtype));
        auto q = at::randn({B, Hq, Tq, D}, on(dtype));
        std::vector<at::Tensor> keys, values;
        for (int64_t b = 0; b < B; ++b) {
          keys.push_back(at::randn({lengths[b], Hkv, D}, on(dtype)));
          values.push_back(at::randn({lengths[b], Hkv, D}, on(dtype)));
          auto index = at::tensor(rows[b], at::kLong).to(at::kCUDA);
          k_pool.view({-1, Hkv, D}).index_copy_(0, index, keys[b]);
          v_pool.view({-1, Hkv, D}).index_copy_(0, index, values[b]);
        }
        const double scale = 1.0 / std::sqrt(static_cast<double>(D));
        for (int64_t window : {int64_t(0), int64_t(300)}) {
          std::vector<at::Tensor> expected;
          for (int64_t b = 0; b < B; ++b) {
            phi::AttentionMaskSpec mask;
            auto len = at::full({1}, lengths[b], on(at::kLong));
            mask.query_positions = (len - Tq + at::arange(Tq, on(at::kLong))).unsqueeze(0);
            mask.key_lengths = len;
            mask.sliding_window = window;
            expected.push_back(phi::attention_reference(q.narrow(0, b, 1).to(at::kFloat),
                                                        keys[b].transpose(0, 1).unsqueeze(0).to(at::kFloat),
                                                        values[b].transpose(0, 1).unsqueeze(0).to(at::kFloat), scale, mask));
          }
          auto ref = at::cat(expected);
          for (int64_t splits : {int64_t(0), int64_t(1), int64_t(7)}) {
            poison();
            auto out = phi::paged_decode_attention_cuda(q, phi::PagedKV{k_pool, v_pool, table_gpu, page}, lengths_gpu,
                                                        longest, scale, splits, window);
            EXPECT_LT(rel(out, ref), tolerance(dtype))
                << "D" << D << " Tq" << Tq << " " << dtype << " splits " << splits << " window " << window;
          }
        }
      }
    }
  }
}

// A small Phi-3 (GQA, head dim 64) with random weights in bf16 on the GPU; `window` is a
// "sliding_window=N" override.
phi::Transformer small_phi3_on_gpu(const std::string& window, uint64_t seed) {
  auto config = phi::preset_model_config("tiny-phi3", {"hidden_size=256", "n_heads=4", "n_kv_heads=2", window});
  auto model = phi::Transformer::random(config, seed, at::kFloat, 0.05);
  model.to(at::Device(at::kCUDA), at::kBFloat16);
  return model;
}

TEST(CudaKernels, ModelForwardWithFusedAttentionMatchesTheReference) {
  REQUIRE_GPU();
  at::NoGradGuard no_grad;
  // Head dim 64 (a fused-kernel size), GQA; no sliding window, one narrower than the sequence (the
  // decode kernel skips the keys before it) and one wider (no key is hidden, the unwindowed kernels
  // run).
  for (const std::string window : {"sliding_window=0", "sliding_window=24", "sliding_window=2047"}) {
    auto model = small_phi3_on_gpu(window, 3);
    auto ids = at::randint(0, model.config().vocab_size, {2, 70}, at::kLong);
    phi::set_attention_backend("aten");
    auto reference = model.forward(ids);
    phi::set_attention_backend("fused");
    auto fused = model.forward(ids);
    auto cache = model.make_cache(2, 80, 80);
    model.forward_cached(ids.narrow(1, 0, 69), {69, 69}, cache);
    auto step = model.forward_cached(ids.narrow(1, 69, 1), {1, 1}, cache);
    phi::set_attention_backend("aten");
    EXPECT_LT(rel(fused, reference), 2e-2) << window;
    EXPECT_LT(rel(step, reference.narrow(1, 69, 1)), 2e-2) << window;
  }
}

// The server's paged cache on CUDA (bf16, page pools written with index_copy_, pages read through
// paged_attention) against the fixed-slot cache, with the ATen and the fused attention: unequal
// prompts, then decode steps over changing subsets of the sequences.
TEST(CudaKernels, PagedCacheOnCudaEqualsTheFixedSlotCache) {
  REQUIRE_GPU();
  at::NoGradGuard no_grad;
  for (const std::string backend : {"aten", "fused"}) {
    auto model = small_phi3_on_gpu("sliding_window=24", 5);
    phi::set_attention_backend(backend);
    auto ids = at::randint(0, model.config().vocab_size, {3, 80}, at::kLong);
    auto dense = model.make_cache(3, 80, 80);
    auto paged = model.make_paged_cache(3, 20, 16, 80);
    const std::vector<int64_t> prompts = {40, 7, 23};
    auto a = model.forward_cached(ids.narrow(1, 0, 40), prompts, dense);
    auto b = model.forward_cached(ids.narrow(1, 0, 40), prompts, paged);
    EXPECT_LT(rel(b, a), 1e-2) << backend << " prefill";
    std::vector<int64_t> lengths = prompts;
    for (int64_t step = 0; step < 12; ++step) {
      std::vector<int64_t> slots;
      for (int64_t s = 0; s < 3; ++s) {
        if ((step + s) % 4 != 0) slots.push_back(s);
      }
      std::vector<at::Tensor> next;
      for (auto s : slots) next.push_back(ids[s].narrow(0, lengths[s], 1));
      const std::vector<int64_t> ones(slots.size(), 1);
      a = model.forward_cached(at::stack(next), ones, dense, slots);
      b = model.forward_cached(at::stack(next), ones, paged, slots);
      EXPECT_LT(rel(b, a), 1e-2) << backend << " step " << step;
      for (auto s : slots) ++lengths[s];
    }
  }
  phi::set_attention_backend("aten");
}

// The server's decode step captured as a CUDA graph (PagedDecodeGraph, four rows, the last one
// padding) against the eager cached forward on a second paged cache, ATen and fused attention.
TEST(CudaKernels, PagedDecodeGraphEqualsCachedForward) {
  REQUIRE_GPU();
  at::NoGradGuard no_grad;
  for (const std::string backend : {"aten", "fused"}) {
    auto model = small_phi3_on_gpu("sliding_window=24", 9);
    phi::set_attention_backend(backend);
    auto ids = at::randint(0, model.config().vocab_size, {3, 80}, at::kLong);
    auto eager = model.make_paged_cache(3, 20, 16, 80);
    auto graphed = model.make_paged_cache(3, 20, 16, 80);
    const std::vector<int64_t> prompts = {40, 7, 23}, slots = {0, 1, 2}, ones = {1, 1, 1};
    for (auto* cache : {&eager, &graphed}) model.forward_cached(ids.narrow(1, 0, 40), prompts, *cache);
    const int64_t width = 5;
    phi::PagedDecodeGraph graph(model, graphed, 4, width, false);
    std::vector<int64_t> lengths = prompts;
    for (int64_t step = 0; step < 8; ++step) {
      std::vector<int64_t> tokens, positions;
      for (auto s : slots) {
        tokens.push_back(ids[s][lengths[s]].item<int64_t>());
        positions.push_back(lengths[s]);
      }
      auto expected = model.forward_cached(at::tensor(tokens, at::kLong).unsqueeze(1), ones, eager, slots).select(1, 0);
      graphed.allocate(slots, ones);
      tokens.push_back(0);
      positions.push_back(0);
      auto got = graph.step(tokens, positions, graphed.page_table({0, 1, 2, -1}, width));
      graphed.advance(slots, ones);
      EXPECT_LT(rel(got.narrow(0, 0, 3), expected), 2e-2) << backend << " step " << step;
      for (auto s : slots) ++lengths[s];
    }
  }
  phi::set_attention_backend("aten");
}

// The norms, activations and rotary of ops.h dispatched to the fused kernels (PHI_KERNELS=fused)
// inside whole models of the three families: bf16 forward and cached decode against the ATen path,
// and float32 gradients of every parameter (activation and rotary backward kernels under autograd).
TEST(CudaKernels, ModelWithFusedElementwiseKernelsMatchesTheReference) {
  REQUIRE_GPU();
  for (const std::string preset : {"tiny-phi3", "tiny-phi", "tiny-phi3small"}) {
    auto config = phi::preset_model_config(preset, {"hidden_size=256", "n_heads=4", "n_kv_heads=2"});
    auto ids = at::randint(0, config.vocab_size, {2, 70}, at::kLong);
    {
      at::NoGradGuard no_grad;
      auto model = phi::Transformer::random(config, 7, at::kFloat, 0.05);
      model.to(at::Device(at::kCUDA), at::kBFloat16);
      phi::set_elementwise_backend("aten");
      auto reference = model.forward(ids);
      phi::set_elementwise_backend("fused");
      poison();
      auto fused = model.forward(ids);
      auto cache = model.make_cache(2, 80, 80);
      model.forward_cached(ids.narrow(1, 0, 69), {69, 69}, cache);
      auto step = model.forward_cached(ids.narrow(1, 69, 1), {1, 1}, cache);
      phi::set_elementwise_backend("aten");
      EXPECT_LT(rel(fused, reference), 2e-2) << preset;
      EXPECT_LT(rel(step, reference.narrow(1, 69, 1)), 2e-2) << preset;
    }
    auto model = phi::Transformer::random(config, 7, at::kFloat, 0.05);
    model.to(at::Device(at::kCUDA), at::kFloat);
    for (auto& item : model.mutable_parameters()) item.second.requires_grad_(true);
    auto gradients = [&](const std::string& backend) {
      phi::set_elementwise_backend(backend);
      for (auto& item : model.mutable_parameters()) item.second.mutable_grad() = at::Tensor();
      model.loss(ids.narrow(1, 0, 69), ids.narrow(1, 1, 69)).backward();
      std::map<std::string, at::Tensor> g;
      for (auto& item : model.mutable_parameters()) g[item.first] = item.second.grad().clone();
      return g;
    };
    auto reference = gradients("aten");
    auto fused = gradients("fused");
    phi::set_elementwise_backend("aten");
    for (const auto& [name, g] : reference) {
      EXPECT_LT(rel(fused.at(name), g), 1e-4) << preset << " " << name;
    }
  }
}

TEST(CudaKernels, GraphDecodingEqualsCachedForward) {
  REQUIRE_GPU();
  at::NoGradGuard no_grad;
  for (const std::string preset : {"tiny-phi3", "tiny-phi"}) {
    auto config = phi::preset_model_config(preset, {"hidden_size=256", "n_heads=4"});
    auto model = phi::Transformer::random(config, 5, at::kFloat, 0.05);
    model.to(at::Device(at::kCUDA), at::kBFloat16);
    for (const std::string backend : {"aten", "fused"}) {
      phi::set_attention_backend(backend);
      phi::set_elementwise_backend(backend);
      const int64_t prompt = 37, steps = 20;
      auto ids = at::randint(0, config.vocab_size, {1, prompt + steps}, at::kLong);
      auto reference_cache = model.make_cache(1, prompt + steps, prompt + steps);
      auto graph_cache = model.make_cache(1, prompt + steps, prompt + steps);
      model.forward_cached(ids.narrow(1, 0, prompt), {prompt}, reference_cache);
      model.forward_cached(ids.narrow(1, 0, prompt), {prompt}, graph_cache);
      phi::DecodeGraph graph(model, graph_cache);
      for (int64_t t = prompt; t < prompt + steps; ++t) {
        auto expected = model.forward_cached(ids.narrow(1, t, 1), {1}, reference_cache).view({1, -1});
        poison();
        auto got = graph.step({ids[0][t].item<int64_t>()});
        EXPECT_LT(rel(got, expected), 2e-2) << preset << " " << backend << " step " << t;
      }
      EXPECT_EQ(graph_cache.length(0), prompt + steps);
    }
  }
  phi::set_attention_backend("aten");
  phi::set_elementwise_backend("aten");
}

TEST(CudaKernels, WithoutGpuTheEntryPointsSayWhy) {
  if (phi::cuda_kernels_runnable()) GTEST_SKIP() << "a GPU is present";
  auto x = at::randn({2, 8});
  EXPECT_THROW(phi::rms_norm_cuda(x, at::ones({8}), 1e-5), phi::Error);
  EXPECT_THROW(phi::activation_cuda(x, phi::FusedActivation::kSwiGlu), phi::Error);
  auto q = at::randn({1, 2, 4, 64});
  EXPECT_THROW(phi::flash_attention_forward_cuda(q, q, q, {}, 0.125), phi::Error);
  EXPECT_THROW(phi::set_attention_backend("magic"), phi::Error);
  EXPECT_THROW(phi::set_elementwise_backend("magic"), phi::Error);
  EXPECT_THROW(phi::set_flash_kernel("fused"), phi::Error);
  EXPECT_EQ(phi::flash_kernel(), "wmma");
  phi::set_flash_kernel("mma");
  EXPECT_EQ(phi::flash_kernel(), "mma");
  phi::set_flash_kernel("wmma");
  EXPECT_THROW(phi::paged_decode_attention_cuda(q, phi::PagedKV{}, {}, 4, 0.125), phi::Error);
  EXPECT_FALSE(phi::gemv_applies(at::randn({1, 16}), at::randn({4, 16}), {}));
  // On CPU tensors the fused setting changes nothing: the ATen references run.
  phi::set_elementwise_backend("fused");
  auto gate_up = at::randn({3, 16});
  EXPECT_TRUE(at::equal(phi::swiglu(gate_up), at::silu(gate_up.narrow(1, 0, 8)) * gate_up.narrow(1, 8, 8)));
  phi::set_elementwise_backend("aten");
}

// The verification table names tests that exist, so that gpu_check.sh runs every unverified kernel.
TEST(CudaKernels, VerificationTableNamesExistingTests) {
  std::set<std::string> tests;
  const auto* unit = ::testing::UnitTest::GetInstance();
  for (int i = 0; i < unit->total_test_suite_count(); ++i) {
    const auto* suite = unit->GetTestSuite(i);
    for (int j = 0; j < suite->total_test_count(); ++j) {
      tests.insert(std::string(suite->name()) + "." + suite->GetTestInfo(j)->name());
    }
  }
  std::set<std::string> names;
  for (const auto& k : phi::verified::kKernels) {
    EXPECT_TRUE(tests.count(k.gpu_test)) << k.name << ": no test " << k.gpu_test;
    EXPECT_TRUE(names.insert(k.name).second) << "duplicate entry " << k.name;
  }
  EXPECT_EQ(phi::verified::kFlashMasks, phi::verified::is("flash_masks"));
  EXPECT_FALSE(phi::verified::known("no_such_kernel"));
}

// One table of flash head dims: the host check names the value and the supported ones, on any device.
TEST(CudaKernels, UnsupportedHeadDimIsNamed) {
  for (int64_t d : {64, 80, 96, 128}) EXPECT_TRUE(phi::flash_head_dim_supported(d)) << d;
  for (int64_t d : {0, 32, 72, 256}) EXPECT_FALSE(phi::flash_head_dim_supported(d)) << d;
  auto q = at::zeros({1, 2, 16, 72}, at::kBFloat16);
  try {
    phi::flash_attention_forward_cuda(q, q, q, {}, 0.1);
    FAIL() << "head dim 72 accepted";
  } catch (const phi::Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("head dim 72"), std::string::npos) << message;
    EXPECT_NE(message.find(phi::flash_head_dims_text()), std::string::npos) << message;
  }
  EXPECT_TRUE(phi::decode_head_dim_supported(96));
  EXPECT_FALSE(phi::decode_head_dim_supported(100));
}

}  // namespace
