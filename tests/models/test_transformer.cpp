// The decoder through its public API: KV-cache decoding equals the full forward, batches of
// unequal lengths equal the sequences run alone, for every family's tiny preset.
#include <algorithm>

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "phi/config/model_config.h"
#include "phi/core/error.h"
#include "phi/models/family.h"
#include "phi/models/rope.h"
#include "phi/models/transformer.h"

namespace {

phi::ModelConfig tiny(const std::string& preset, bool long_rope) {
  auto config = phi::preset_model_config(preset);
  if (long_rope) {
    const size_t half = static_cast<size_t>(config.rotary_dim / 2);
    config.use_long_rope = true;
    config.long_rope.original_max_position_embeddings = 16;
    config.long_rope.short_mscale = 1.1;
    config.long_rope.long_mscale = 1.2;
    for (size_t i = 0; i < half; ++i) {
      config.long_rope.short_factor.push_back(1.0 + 0.1 * static_cast<double>(i));
      config.long_rope.long_factor.push_back(2.0 + 0.5 * static_cast<double>(i));
    }
  }
  return config;
}

double relative_error(const at::Tensor& ours, const at::Tensor& reference) {
  return (ours - reference).abs().max().item<double>() / reference.abs().max().item<double>();
}

struct Case {
  std::string preset;
  bool long_rope;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.preset << (c.long_rope ? "+longrope" : ""); }

class DecoderTest : public ::testing::TestWithParam<Case> {};

TEST_P(DecoderTest, KvCacheDecodingOf32TokensEqualsFullForward) {
  at::NoGradGuard no_grad;
  auto config = tiny(GetParam().preset, GetParam().long_rope);
  auto model = phi::Transformer::random(config, 7, at::kFloat, 0.1);
  const int64_t prompt = 9, steps = 32, total = prompt + steps;
  auto ids = at::randint(0, 400, {2, total}, at::kLong);
  auto full = model.forward(ids);

  auto cache = model.make_cache(2, total, total);
  auto logits = model.forward_cached(ids.narrow(1, 0, prompt), {prompt, prompt}, cache);
  EXPECT_LT(relative_error(logits, full.narrow(1, 0, prompt)), 1e-5);
  for (int64_t t = prompt; t < total; ++t) {
    auto step = model.forward_cached(ids.narrow(1, t, 1), {1, 1}, cache);
    EXPECT_LT(relative_error(step, full.narrow(1, t, 1)), 1e-5) << "step " << t;
  }
  EXPECT_EQ(cache.lengths_vector(), (std::vector<int64_t>{total, total}));
}

// What scoring does (eval/loglikelihood.h): a prefix computed once in one slot, copied into others,
// unequal suffixes run behind it with only chosen positions' logits; equal to whole-sequence forwards.
TEST_P(DecoderTest, SharedPrefixAndSelectedLogitsEqualFullForward) {
  at::NoGradGuard no_grad;
  auto config = tiny(GetParam().preset, GetParam().long_rope);
  auto model = phi::Transformer::random(config, 11, at::kFloat, 0.1);
  const int64_t prefix = 13, capacity = 40;
  const std::vector<int64_t> suffix = {9, 4, 12};
  auto ids = at::randint(0, 400, {3, prefix + 12}, at::kLong);
  ids.narrow(1, 0, prefix).copy_(ids[0].narrow(0, 0, prefix).expand({3, prefix}));
  auto cache = model.make_cache(4, capacity, capacity);
  auto none = model.forward_cached(ids[0].narrow(0, 0, prefix).unsqueeze(0), {prefix}, cache, {3},
                                   at::empty({1, 0}, at::kLong));
  EXPECT_EQ(none.size(1), 0);
  cache.copy_prefix(3, prefix, {0, 1, 2});
  EXPECT_EQ(cache.lengths_vector(), (std::vector<int64_t>{prefix, prefix, prefix, prefix}));
  // Row b's last two real positions (and a repeat, as padded scoring rows have).
  auto positions = at::tensor(std::vector<int64_t>{7, 8, 8, 2, 3, 3, 10, 11, 11}, at::kLong).view({3, 3});
  auto got = model.forward_cached(ids.narrow(1, prefix, 12), suffix, cache, {0, 1, 2}, positions);
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{3, 3, config.vocab_size}));
  for (int64_t b = 0; b < 3; ++b) {
    auto full = model.forward(ids[b].narrow(0, 0, prefix + suffix[b]).unsqueeze(0))[0];
    for (int64_t k = 0; k < 3; ++k) {
      const int64_t p = prefix + positions[b][k].item<int64_t>();
      EXPECT_LT(relative_error(got[b][k], full[p]), 1e-5) << "row " << b << " position " << p;
    }
  }
  EXPECT_THROW(cache.copy_prefix(3, prefix + 1, {0}), phi::Error);
  EXPECT_THROW(model.forward_cached(ids.narrow(1, 0, 2), {2, 2, 2}, cache, {0, 1, 2}, positions), phi::Error);
}

TEST_P(DecoderTest, BatchOfUnequalLengthsEqualsSequencesAlone) {
  at::NoGradGuard no_grad;
  auto config = tiny(GetParam().preset, GetParam().long_rope);
  auto model = phi::Transformer::random(config, 3, at::kFloat, 0.1);
  std::vector<int64_t> lengths = {5, 40, 1, 23};
  const int64_t max_len = 40;
  auto ids = at::randint(0, 400, {4, max_len}, at::kLong);
  // LongRoPE chooses one factor set per forward from the longest sequence, so the sequences run
  // alone use a cache planned for the batch's longest length.
  auto batched = model.forward(ids, at::tensor(lengths, at::kLong));
  for (size_t b = 0; b < lengths.size(); ++b) {
    auto alone_ids = ids[b].narrow(0, 0, lengths[b]).unsqueeze(0);
    at::Tensor alone;
    if (config.use_long_rope) {
      auto cache = model.make_cache(1, max_len, max_len);
      alone = model.forward_cached(alone_ids, {lengths[b]}, cache)[0];
    } else {
      alone = model.forward(alone_ids)[0];
    }
    EXPECT_LT(relative_error(batched[b].narrow(0, 0, lengths[b]), alone), 1e-5) << "sequence " << b;
    EXPECT_EQ(batched[b].narrow(0, lengths[b], max_len - lengths[b]).abs().sum().item<double>(), 0.0);
  }
}

TEST_P(DecoderTest, BatchedDecodeWithDifferentPromptLengthsEqualsSingleDecodes) {
  at::NoGradGuard no_grad;
  auto config = tiny(GetParam().preset, GetParam().long_rope);
  auto model = phi::Transformer::random(config, 5, at::kFloat, 0.1);
  std::vector<int64_t> prompts = {3, 11, 7};
  const int64_t steps = 6, capacity = 32;
  auto ids = at::randint(0, 400, {3, 11 + steps}, at::kLong);
  auto cache = model.make_cache(3, capacity, capacity);
  model.forward_cached(ids.narrow(1, 0, 11), prompts, cache);
  for (int64_t s = 0; s < steps; ++s) {
    std::vector<at::Tensor> next;
    for (int64_t b = 0; b < 3; ++b) next.push_back(ids[b].narrow(0, prompts[b] + s, 1));
    auto step = model.forward_cached(at::stack(next), {1, 1, 1}, cache);
    for (int64_t b = 0; b < 3; ++b) {
      auto single = model.make_cache(1, capacity, capacity);
      auto ref = model.forward_cached(ids[b].narrow(0, 0, prompts[b] + s + 1).unsqueeze(0),
                                      {prompts[b] + s + 1}, single);
      EXPECT_LT(relative_error(step[b][0], ref[0][prompts[b] + s]), 1e-5) << "seq " << b << " step " << s;
    }
  }
}

// The paged cache against the dense one through the same steps: a batched prefill of unequal
// prompts, decode steps over changing subsets of the slots, and a slot released and refilled while
// the others go on, so that sequences hold interleaved, recycled pages. With and without a sliding
// window narrower than the sequences.
TEST_P(DecoderTest, PagedCacheEqualsDenseCacheAcrossInterleavedSequences) {
  at::NoGradGuard no_grad;
  for (int64_t window : {0, 5}) {
    auto config = tiny(GetParam().preset, GetParam().long_rope);
    config.sliding_window = window;
    auto model = phi::Transformer::random(config, 11, at::kFloat, 0.1);
    const int64_t capacity = 40, page = 4;
    std::vector<int64_t> prompts = {3, 11, 7};
    auto ids = at::randint(0, 400, {3, capacity}, at::kLong);
    auto dense = model.make_cache(3, capacity, capacity);
    auto paged = model.make_paged_cache(3, 30, page, capacity);
    auto a = model.forward_cached(ids.narrow(1, 0, 11), prompts, dense);
    auto b = model.forward_cached(ids.narrow(1, 0, 11), prompts, paged);
    EXPECT_LT(relative_error(b, a), 1e-5) << "prefill, window " << window;
    std::vector<int64_t> lengths = prompts;
    for (int64_t step = 0; step < 14; ++step) {
      if (step == 6) {  // slot 1 ends; a new 9-token prompt takes it
        dense.reset_slot(1, capacity);
        paged.reset_slot(1, capacity);
        EXPECT_TRUE(paged.pages(1).empty());
        auto fresh = ids[1].narrow(0, 20, 9).unsqueeze(0);
        a = model.forward_cached(fresh, {9}, dense, {1});
        b = model.forward_cached(fresh, {9}, paged, {1});
        EXPECT_LT(relative_error(b, a), 1e-5) << "refill, window " << window;
        lengths[1] = 9;
      }
      std::vector<int64_t> slots;
      for (int64_t s = 0; s < 3; ++s) {
        if ((step + s) % 3 != 0) slots.push_back(s);
      }
      std::vector<at::Tensor> next;
      for (auto s : slots) next.push_back(ids[s].narrow(0, lengths[s] % capacity, 1));
      const std::vector<int64_t> ones(slots.size(), 1);
      a = model.forward_cached(at::stack(next), ones, dense, slots);
      b = model.forward_cached(at::stack(next), ones, paged, slots);
      EXPECT_LT(relative_error(b, a), 1e-5) << "step " << step << ", window " << window;
      for (auto s : slots) ++lengths[s];
    }
    int64_t held = 0;
    for (int64_t s = 0; s < 3; ++s) {
      EXPECT_EQ(paged.length(s), dense.length(s));
      EXPECT_EQ(static_cast<int64_t>(paged.pages(s).size()), paged.pages_for(paged.length(s)));
      held += static_cast<int64_t>(paged.pages(s).size());
    }
    EXPECT_EQ(held + paged.free_pages(), paged.n_pages());
    // Slot 1's second sequence reused the pages its first one returned: its pages are not one run.
    const auto& pages = paged.pages(1);
    EXPECT_FALSE(std::is_sorted(pages.begin(), pages.end()) && pages.back() - pages.front() + 1 ==
                                                                   static_cast<int32_t>(pages.size()));
  }
}

// The fixed-shape paged step (what a CUDA graph captures) against forward_cached: three sequences
// of different lengths in a four-row step whose last row is padding (scratch page, position 0),
// a page table wider than any sequence needs, several steps, with and without a sliding window.
TEST_P(DecoderTest, FixedShapePagedStepEqualsCachedForward) {
  at::NoGradGuard no_grad;
  for (int64_t window : {0, 5}) {
    auto config = tiny(GetParam().preset, GetParam().long_rope);
    config.sliding_window = window;
    auto model = phi::Transformer::random(config, 13, at::kFloat, 0.1);
    const int64_t capacity = 40, page = 4, width = 12;
    const std::vector<int64_t> prompts = {3, 11, 7};
    auto ids = at::randint(0, 400, {3, capacity}, at::kLong);
    auto reference = model.make_paged_cache(3, 40, page, capacity);
    auto ours = model.make_paged_cache(3, 40, page, capacity);
    model.forward_cached(ids.narrow(1, 0, 11), prompts, reference);
    model.forward_cached(ids.narrow(1, 0, 11), prompts, ours);
    const bool long_factors = ours.long_rope(0);
    auto inv_freq = phi::rope_inverse_frequencies(config, long_factors).to(at::kFloat);
    const double mscale = phi::rope_magnitude_scale(config, long_factors);
    std::vector<int64_t> lengths = prompts;
    const std::vector<int64_t> slots = {0, 1, 2};
    for (int64_t step = 0; step < 6; ++step) {
      std::vector<int64_t> tokens;
      for (auto s : slots) tokens.push_back(ids[s][lengths[s]].item<int64_t>());
      auto expected = model.forward_cached(at::tensor(tokens, at::kLong).unsqueeze(1), {1, 1, 1}, reference, slots);
      ours.allocate(slots, {1, 1, 1});
      tokens.push_back(0);
      std::vector<int64_t> positions = {lengths[0], lengths[1], lengths[2], 0};
      auto table = ours.page_table({0, 1, 2, -1}, width);
      auto got = model.decode_step_paged(at::tensor(tokens, at::kLong).unsqueeze(1), at::tensor(positions, at::kLong),
                                         table, inv_freq, mscale, ours);
      ours.advance(slots, {1, 1, 1});
      EXPECT_LT(relative_error(got.narrow(0, 0, 3), expected), 1e-5) << "step " << step << ", window " << window;
      for (auto s : slots) ++lengths[s];
    }
    EXPECT_EQ(ours.free_pages(), reference.free_pages());
  }
}

INSTANTIATE_TEST_SUITE_P(Families, DecoderTest,
                         ::testing::Values(Case{"tiny-phi", false}, Case{"tiny-phi3", false},
                                           Case{"tiny-phi3", true}, Case{"tiny-phi3small", false},
                                           Case{"tiny-phi3small", true}),
                         [](const auto& info) {
                           std::string name = info.param.preset + (info.param.long_rope ? "_longrope" : "");
                           for (auto& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return name;
                         });

TEST(Transformer, RandomInitIsReproducible) {
  auto config = phi::preset_model_config("tiny-phi");
  auto a = phi::Transformer::random(config, 42, at::kFloat);
  auto b = phi::Transformer::random(config, 42, at::kFloat);
  for (const auto& [name, t] : a.parameters()) EXPECT_TRUE(at::equal(t, b.parameter(name))) << name;
}

TEST(Transformer, TokenOutsideVocabularyIsAnError) {
  auto model = phi::Transformer::random(phi::preset_model_config("tiny-phi"), 1, at::kFloat);
  auto ids = at::full({1, 3}, 512, at::kLong);
  EXPECT_THROW(model.forward(ids), phi::Error);
}

TEST(Transformer, CacheOverflowIsAnError) {
  at::NoGradGuard no_grad;
  auto model = phi::Transformer::random(phi::preset_model_config("tiny-phi3"), 1, at::kFloat);
  auto cache = model.make_cache(1, 4, 4);
  EXPECT_THROW(model.forward_cached(at::zeros({1, 5}, at::kLong), {5}, cache), phi::Error);
}

TEST(Transformer, PagedCacheOutOfPagesIsAnErrorThatTakesNothing) {
  at::NoGradGuard no_grad;
  auto model = phi::Transformer::random(phi::preset_model_config("tiny-phi3"), 1, at::kFloat);
  auto cache = model.make_paged_cache(2, 3, 4, 4);  // 12 tokens in all
  model.forward_cached(at::zeros({1, 5}, at::kLong), {5}, cache, {0});
  EXPECT_EQ(cache.free_pages(), 1);
  try {
    model.forward_cached(at::zeros({1, 6}, at::kLong), {6}, cache, {1});
    FAIL() << "no error";
  } catch (const phi::Error& e) {
    EXPECT_NE(std::string(e.what()).find("1 free pages of 4 tokens; this step needs 2"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cache.free_pages(), 1);
  EXPECT_EQ(cache.length(1), 0);
  EXPECT_TRUE(cache.pages(1).empty());
  cache.release(0);
  EXPECT_EQ(cache.free_pages(), 3);
  EXPECT_EQ(cache.length(0), 0);
}

TEST(Transformer, MissingParameterIsAnError) {
  auto config = phi::preset_model_config("tiny-phi3");
  auto params = phi::Transformer::random(config, 1, at::kFloat).parameters();
  params.erase("final_norm.weight");
  EXPECT_THROW(phi::Transformer(config, params), phi::Error);
}

}  // namespace

namespace {

// The training forward is differentiable end to end: every parameter of every family gets a
// finite, non-zero gradient from a next-token loss over a padded batch.
TEST(Transformer, TrainingForwardBackpropagatesToEveryParameter) {
  for (const char* preset : {"tiny-phi", "tiny-phi3", "tiny-phi3small"}) {
    auto config = phi::preset_model_config(preset);
    auto params = phi::Transformer::random(config, 11, at::kFloat, 0.1).parameters();
    for (auto& item : params) item.second.requires_grad_(true);
    phi::Transformer model(config, params);
    auto ids = at::randint(0, 400, {2, 12}, at::kLong);
    auto lengths = at::tensor(std::vector<int64_t>{12, 7}, at::kLong);
    auto logits = model.forward(ids, lengths);
    auto loss = at::cross_entropy_loss(logits.narrow(1, 0, 6).reshape({-1, config.vocab_size}),
                                       ids.narrow(1, 1, 6).reshape({-1}));
    loss.backward();
    for (const auto& [name, p] : model.parameters()) {
      ASSERT_TRUE(p.grad().defined()) << preset << " " << name;
      EXPECT_TRUE(at::isfinite(p.grad()).all().item<bool>()) << preset << " " << name;
      if (name.find("lm_head.bias") == std::string::npos) {
        EXPECT_GT(p.grad().abs().sum().item<double>(), 0.0) << preset << " " << name;
      }
    }
  }
}

}  // namespace
