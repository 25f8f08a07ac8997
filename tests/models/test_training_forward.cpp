// Training-side forwards through the public API: document masks (packed documents see only
// themselves, positions restart per document) and activation checkpointing (same gradients, and
// the recomputation runs under the forward's autocast state).
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>

#include "phi/config/model_config.h"
#include "phi/models/checkpointing.h"
#include "phi/models/family.h"
#include "phi/models/rope.h"
#include "phi/models/transformer.h"

namespace {

// Relative error over the real logits (Phi-3-small's masked dummy tokens hold float's lowest value).
double relative_error(const at::Tensor& ours, const at::Tensor& reference) {
  auto real = reference.gt(-1e30);
  auto a = ours.masked_fill(real.logical_not(), 0), b = reference.masked_fill(real.logical_not(), 0);
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

class SegmentTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SegmentTest, PackedDocumentsEqualEachDocumentAlone) {
  at::NoGradGuard no_grad;
  auto model = phi::Transformer::random(phi::preset_model_config(GetParam()), 5, at::kFloat, 0.1);
  // Three documents of lengths 7, 12 and 5 packed into one row.
  const std::vector<int64_t> lengths = {7, 12, 5};
  const int64_t T = 24;
  auto ids = at::randint(0, 400, {1, T}, at::kLong);
  std::vector<int64_t> segment_ids;
  for (size_t d = 0; d < lengths.size(); ++d) segment_ids.insert(segment_ids.end(), lengths[d], static_cast<int64_t>(d));
  auto segments = at::tensor(segment_ids, at::kLong).unsqueeze(0);
  auto packed = model.forward(ids, {}, segments);
  auto unmasked = model.forward(ids);
  int64_t start = 0;
  for (auto n : lengths) {
    auto alone = model.forward(ids.narrow(1, start, n));
    EXPECT_LT(relative_error(packed.narrow(1, start, n), alone), 1e-5) << "document at " << start;
    start += n;
  }
  // Without the mask the later documents see the earlier ones.
  EXPECT_GT(relative_error(unmasked.narrow(1, 7, 12), model.forward(ids.narrow(1, 7, 12))), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Families, SegmentTest, ::testing::Values("tiny-phi", "tiny-phi3", "tiny-phi3small"));

std::map<std::string, at::Tensor> gradients(phi::Transformer& model, const at::Tensor& ids, bool checkpoint) {
  for (auto& [name, p] : model.mutable_parameters()) {
    p.requires_grad_(true);
    p.mutable_grad() = at::Tensor();
  }
  model.set_activation_checkpointing(checkpoint);
  auto logits = model.forward(ids);
  auto loss = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}).narrow(0, 0, ids.numel() - 1),
                                     ids.reshape({-1}).narrow(0, 1, ids.numel() - 1));
  loss.backward();
  std::map<std::string, at::Tensor> out;
  for (auto& [name, p] : model.mutable_parameters()) out[name] = p.grad().clone();
  return out;
}

TEST(ActivationCheckpointing, GradientsEqualTheStoredActivationsOnes) {
  for (const std::string preset : {"tiny-phi", "tiny-phi3"}) {
    auto model = phi::Transformer::random(phi::preset_model_config(preset), 3, at::kFloat, 0.05);
    auto ids = at::randint(0, 400, {2, 16}, at::kLong);
    auto stored = gradients(model, ids, false);
    auto recomputed = gradients(model, ids, true);
    ASSERT_EQ(stored.size(), recomputed.size());
    for (const auto& [name, g] : stored) {
      ASSERT_TRUE(recomputed[name].defined()) << name;
      EXPECT_TRUE(at::equal(g, recomputed[name])) << preset << " " << name;
    }
  }
}

TEST(ActivationCheckpointing, RecomputesUnderTheForwardsAutocastState) {
  auto w = at::randn({8, 8}).requires_grad_(true);
  auto x = at::randn({4, 8}).requires_grad_(true);
  std::vector<std::pair<bool, at::ScalarType>> seen;
  auto fn = [&](const at::Tensor& input) {
    auto y = at::matmul(input, w);
    seen.push_back({at::autocast::is_autocast_enabled(at::kCPU), y.scalar_type()});
    return y.to(at::kFloat).tanh();
  };
  at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCPU, true);
  auto out = phi::checkpointed(fn, x);
  at::autocast::set_autocast_enabled(at::kCPU, false);
  at::autocast::clear_cache();
  out.sum().backward();
  ASSERT_EQ(seen.size(), 2u);  // the forward and the recomputation
  EXPECT_TRUE(seen[1].first);
  EXPECT_EQ(seen[1].second, at::kBFloat16);
  EXPECT_FALSE(at::autocast::is_autocast_enabled(at::kCPU));  // restored after the backward
  ASSERT_TRUE(w.grad().defined() && x.grad().defined());
  // The same gradients as without checkpointing (same bf16 products).
  auto w2 = w.detach().clone().requires_grad_(true);
  auto x2 = x.detach().clone().requires_grad_(true);
  at::autocast::set_autocast_enabled(at::kCPU, true);
  auto ref = at::matmul(x2, w2).to(at::kFloat).tanh();
  at::autocast::set_autocast_enabled(at::kCPU, false);
  at::autocast::clear_cache();
  ref.sum().backward();
  EXPECT_TRUE(at::allclose(w.grad(), w2.grad(), 1e-6, 1e-6));
  EXPECT_TRUE(at::allclose(x.grad(), x2.grad(), 1e-6, 1e-6));
}

}  // namespace

namespace {

// The chunked head loss equals cross-entropy over the full logits, and so do its gradients.
TEST(ChunkedLmLoss, EqualsFullLogitsCrossEntropyWithGradients) {
  for (const std::string preset : {"tiny-phi", "tiny-phi3", "tiny-phi3small"}) {
    auto model = phi::Transformer::random(phi::preset_model_config(preset), 11, at::kFloat, 0.05);
    for (auto& [name, p] : model.mutable_parameters()) p.requires_grad_(true);
    auto ids = at::randint(0, 400, {3, 21}, at::kLong);
    auto targets = at::randint(0, 400, {3, 21}, at::kLong);
    targets.narrow(1, 0, 5).fill_(-100);  // a prompt that is not trained on
    auto reference = [&] {
      auto logits = model.forward(ids);
      auto flat = targets.reshape({-1});
      auto sum = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), flat, {}, at::Reduction::Sum, -100);
      return sum / flat.ne(-100).sum().to(at::kFloat);
    }();
    reference.backward();
    std::map<std::string, at::Tensor> expected;
    for (auto& [name, p] : model.mutable_parameters()) {
      expected[name] = p.grad().clone();
      p.mutable_grad() = at::Tensor();
    }
    auto chunked = model.loss(ids, targets, {}, /*chunk_rows=*/8);  // 63 rows in 8 chunks
    EXPECT_NEAR(chunked.item<double>(), reference.item<double>(), 1e-5 * std::abs(reference.item<double>())) << preset;
    chunked.backward();
    for (auto& [name, p] : model.mutable_parameters()) {
      ASSERT_TRUE(p.grad().defined()) << preset << " " << name;
      const double err = (p.grad() - expected[name]).abs().max().item<double>() /
                         std::max(expected[name].abs().max().item<double>(), 1e-12);
      EXPECT_LT(err, 1e-4) << preset << " " << name;
    }
  }
}

}  // namespace

namespace {

// The graph-capturable decode step (device inputs, no host reads) equals the cached forward.
TEST(DecodeStepFixedShape, EqualsForwardCached) {
  at::NoGradGuard no_grad;
  for (const std::string preset : {"tiny-phi", "tiny-phi3", "tiny-phi3small"}) {
    auto config = phi::preset_model_config(preset);
    auto model = phi::Transformer::random(config, 2, at::kFloat, 0.1);
    const int64_t prompt = 11, steps = 6, n = 2;
    auto ids = at::randint(0, 400, {n, prompt + steps}, at::kLong);
    auto a = model.make_cache(n, prompt + steps, prompt + steps);
    auto b = model.make_cache(n, prompt + steps, prompt + steps);
    model.forward_cached(ids.narrow(1, 0, prompt), {prompt, prompt}, a);
    model.forward_cached(ids.narrow(1, 0, prompt), {prompt, prompt}, b);
    auto inv_freq = phi::rope_inverse_frequencies(config, false).to(at::kFloat);
    const double mscale = phi::rope_magnitude_scale(config, false);
    for (int64_t t = prompt; t < prompt + steps; ++t) {
      auto expected = model.forward_cached(ids.narrow(1, t, 1), {1, 1}, a);
      auto positions = at::full({n}, t, at::kLong);
      auto got = model.decode_step_fixed_shape(ids.narrow(1, t, 1).contiguous(), positions, inv_freq, mscale, b);
      b.advance({0, 1}, {1, 1});
      EXPECT_LT(relative_error(got, expected), 1e-5) << preset << " step " << t;
    }
  }
}

}  // namespace
