// The fused AdamW path (ATen's multi-tensor kernel, the default for CUDA parameters) against the
// per-parameter reference update, on the CPU: same parameters after several steps with weight
// decay groups, per-group learning-rate scales and clipping.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "phi/config/model_config.h"
#include "phi/models/family.h"
#include "phi/models/transformer.h"
#include "phi/train/optimizer.h"

namespace {

phi::ParameterMap trained(const std::string& fused) {
  auto model = phi::Transformer::random(phi::preset_model_config("tiny-phi"), 4, at::kFloat, 0.05);
  phi::OptimizerConfig config;
  config.name = "adamw";
  config.lr = 1e-2;
  config.weight_decay = 0.1;
  config.clip_grad_norm = 0.5;
  config.lr_scale = {{"embed", 0.5}};
  config.fused = fused;
  phi::Optimizer optimizer(model.mutable_parameters(), config);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(9);
  for (int step = 0; step < 4; ++step) {
    auto ids = at::randint(0, 400, {2, 12}, generator);
    auto logits = model.forward(ids);
    at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}).narrow(0, 0, 23), ids.reshape({-1}).narrow(0, 1, 23))
        .backward();
    optimizer.step(config.lr);
  }
  return model.parameters();
}

TEST(Optimizer, FusedAdamWMatchesTheReferenceUpdate) {
  auto reference = trained("off");
  auto fused = trained("on");
  for (const auto& [name, p] : reference) {
    const double err = (fused.at(name) - p).abs().max().item<double>();
    // 4 steps at lr 1e-2 move parameters by ~4e-2; the attention key bias has a mathematically
    // zero gradient whose float noise Adam normalises, so it differs most (~5e-5).
    EXPECT_LT(err, 2e-4) << name;
  }
}

}  // namespace
