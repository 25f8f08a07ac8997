// The server's continuous batching through its public API (phi::Scheduler): requests that wait for
// pages and are preempted, and decode steps through the fixed-shape paged step (what the server
// captures as CUDA graphs; run as it is on the CPU), give the same greedy and seeded-sampled tokens
// as a cache that holds every request decoded by the usual cached forward.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <unistd.h>

#include "phi/config/model_config.h"
#include "phi/infer/scheduler.h"
#include "phi/models/family.h"
#include "phi/models/transformer.h"
#include "phi/tokenizer/tokenizer.h"
#include "phi/tokenizer/trainer.h"

namespace {

// A 300-token byte-level BPE trained on a few lines (the scheduler only streams text with it).
std::unique_ptr<phi::Tokenizer> small_tokenizer() {
  const auto dir = std::filesystem::temp_directory_path() / ("phi_scheduler_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream corpus(dir / "corpus.txt");
    for (int i = 0; i < 50; ++i) corpus << "the quick brown fox " << i << " jumps over the lazy dog\n";
  }
  phi::TokenizerTrainOptions options;
  options.kind = "bpe";
  options.vocab_size = 300;
  options.inputs = {(dir / "corpus.txt").string()};
  options.output = (dir / "tok").string();
  phi::train_tokenizer(options);
  auto tokenizer = phi::load_tokenizer(options.output);
  std::filesystem::remove_all(dir);
  return tokenizer;
}

struct Run {
  std::vector<std::vector<int64_t>> tokens;
  int64_t preemptions = 0;
  bool pages_back = false;
};

Run run_all(const phi::Transformer& model, const phi::Tokenizer& tokenizer, phi::SchedulerOptions options,
            const std::vector<std::vector<int64_t>>& prompts) {
  phi::Scheduler scheduler(model, tokenizer, options);
  std::vector<std::shared_ptr<phi::RequestHandle>> handles;
  for (size_t i = 0; i < prompts.size(); ++i) {
    phi::SamplingParams params;
    params.max_new_tokens = 20;
    params.ignore_eos = true;
    params.temperature = i % 2 == 0 ? 0.0 : 0.8;  // greedy and seeded sampling (top 4)
    params.top_k = 4;
    params.seed = 7 + i;
    handles.push_back(scheduler.submit(prompts[i], params));
  }
  Run run;
  for (auto& handle : handles) run.tokens.push_back(handle->wait().tokens);
  run.preemptions = scheduler.preemptions();
  // The last step returns its pages after the final events are sent.
  for (int i = 0; i < 500 && !run.pages_back; ++i) {
    run.pages_back = scheduler.free_pages() == scheduler.cache_pages() && scheduler.load() == 0;
    if (!run.pages_back) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return run;
}

}  // namespace

TEST(Scheduler, PreemptionAndTheFixedShapeStepKeepEveryOutput) {
  auto tokenizer = small_tokenizer();
  for (const std::string preset : {"tiny-phi3", "tiny-phi3small"}) {
    auto config = phi::preset_model_config(preset);
    auto model = phi::Transformer::random(config, 21, at::kFloat, 0.1);
    std::vector<std::vector<int64_t>> prompts;
    for (int64_t i = 0; i < 8; ++i) {
      auto ids = at::randint(0, 300, {3 + 2 * i}, at::kLong);
      prompts.emplace_back(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
    }
    phi::SchedulerOptions roomy;
    roomy.max_batch_size = 8;
    roomy.slot_capacity = 64;
    roomy.page_size = 4;
    auto reference = run_all(model, *tokenizer, roomy, prompts);
    EXPECT_EQ(reference.preemptions, 0) << preset;
    EXPECT_TRUE(reference.pages_back) << preset;
    for (bool fixed_shape : {false, true}) {
      for (int64_t cache_tokens : {int64_t(0), int64_t(48)}) {
        auto options = roomy;
        options.fixed_shape_decode = fixed_shape;
        options.cache_tokens = cache_tokens;
        auto run = run_all(model, *tokenizer, options, prompts);
        const std::string what = preset + (fixed_shape ? " fixed-shape step" : " cached forward") +
                                 (cache_tokens ? ", 48-token cache" : ", roomy cache");
        EXPECT_EQ(run.tokens, reference.tokens) << what;
        EXPECT_TRUE(run.pages_back) << what;
        if (cache_tokens > 0) EXPECT_GT(run.preemptions, 0) << what;
      }
    }
  }
}
