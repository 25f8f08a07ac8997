// Model configs: presets, JSON round trip, validation errors with paths, HF config.json reading.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include <nlohmann/json.hpp>

#include "phi/config/model_config.h"
#include "phi/core/error.h"
#include "test_util.h"
#include "phi/models/family.h"
#include "phi/models/model_info.h"

namespace {

using phi::test::error_of;

TEST(ModelConfig, EveryPresetLoadsAndRoundTrips) {
  auto names = phi::preset_names();
  for (const char* required : {"phi-1", "phi-1.5", "phi-2", "phi-3-mini-4k", "phi-3-mini-128k", "phi-3-small-8k",
                               "phi-3-small-128k", "phi-3-medium-4k", "phi-3-medium-128k"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), required), names.end()) << required;
  }
  for (const auto& name : names) {
    auto config = phi::preset_model_config(name);
    auto again = phi::model_config_from_json(phi::model_config_to_json(config), "roundtrip");
    EXPECT_EQ(phi::model_config_to_json(again), phi::model_config_to_json(config)) << name;
  }
}

TEST(ModelConfig, ParameterCountsOfTheFamily) {
  EXPECT_EQ(phi::model_info(phi::preset_model_config("phi-3-mini-4k")).n_parameters, 3821079552);
  EXPECT_EQ(phi::model_info(phi::preset_model_config("phi-3-mini-128k")).n_parameters, 3821079552);
  EXPECT_EQ(phi::model_info(phi::preset_model_config("phi-2")).n_parameters, 2779683840);
  EXPECT_EQ(phi::model_info(phi::preset_model_config("phi-1.5")).n_parameters, 1418270720);
  EXPECT_EQ(phi::model_info(phi::preset_model_config("phi-3-small-8k")).n_parameters, 7392272384);
  EXPECT_EQ(phi::model_info(phi::preset_model_config("phi-3-medium-4k")).n_parameters, 13960238080);
  // KV cache: 2 * layers * kv_heads * head_dim values per token.
  EXPECT_EQ(phi::model_info(phi::preset_model_config("phi-3-mini-4k")).kv_cache_bytes_per_token(2), 393216);
  EXPECT_EQ(phi::model_info(phi::preset_model_config("phi-3-medium-4k")).kv_cache_bytes_per_token(2), 204800);
}

TEST(ModelConfig, UnknownKeyNamesPath) {
  auto j = phi::model_config_to_json(phi::preset_model_config("tiny-phi3"));
  j["long_rope_typo"] = 1;
  auto message = error_of([&] { phi::model_config_from_json(j, "my.json"); });
  EXPECT_NE(message.find("unknown key $.long_rope_typo"), std::string::npos) << message;
  EXPECT_NE(message.find("my.json"), std::string::npos) << message;
}

TEST(ModelConfig, OutOfRangeValuesNamePath) {
  auto j = phi::model_config_to_json(phi::preset_model_config("tiny-phi3"));
  j["n_kv_heads"] = 3;
  EXPECT_NE(error_of([&] { phi::model_config_from_json(j, "c.json"); }).find("$.n_kv_heads must divide n_heads"),
            std::string::npos);
  j = phi::model_config_to_json(phi::preset_model_config("tiny-phi3"));
  j["hidden_size"] = -4;
  EXPECT_NE(error_of([&] { phi::model_config_from_json(j, "c.json"); }).find("$.hidden_size must be > 0"),
            std::string::npos);
  j = phi::model_config_to_json(phi::preset_model_config("tiny-phi3"));
  j["mlp"] = "relu";
  EXPECT_NE(error_of([&] { phi::model_config_from_json(j, "c.json"); }).find("$.mlp has unknown value \"relu\""),
            std::string::npos);
}

TEST(HfConfig, Phi3LongRopeFromOldAndNewLayouts) {
  auto old_layout = nlohmann::json::parse(R"({
    "model_type": "phi3", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 131072, "original_max_position_embeddings": 4096, "rope_theta": 10000.0,
    "rope_scaling": {"type": "su", "short_factor": [1,1,1,1], "long_factor": [2,2,2,2]},
    "rms_norm_eps": 1e-5, "sliding_window": 262144, "torch_dtype": "bfloat16"})");
  auto c = phi::model_config_from_hf_json(old_layout, "config.json");
  EXPECT_TRUE(c.use_long_rope);
  EXPECT_NEAR(c.long_rope.short_mscale, 1.1902380714238083, 1e-12);
  EXPECT_EQ(c.long_rope.original_max_position_embeddings, 4096);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.hub_dtype, "bfloat16");

  auto new_layout = old_layout;
  new_layout.erase("rope_scaling");
  new_layout.erase("rope_theta");
  new_layout["rope_parameters"] = nlohmann::json::parse(
      R"({"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1,1,1,1], "long_factor": [2,2,2,2],
          "original_max_position_embeddings": 4096, "partial_rotary_factor": 1.0})");
  auto c2 = phi::model_config_from_hf_json(new_layout, "config.json");
  EXPECT_EQ(phi::model_config_to_json(c2), phi::model_config_to_json(c));
}

TEST(HfConfig, Phi3SmallDefaultsFollowTheRemoteCode) {
  auto j = nlohmann::json::parse(R"({
    "model_type": "phi3small", "vocab_size": 100352, "hidden_size": 4096, "ff_intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "max_position_embeddings": 8192, "rope_embedding_base": 1000000, "mup_use_scaling": true,
    "mup_attn_multiplier": 1.0, "mup_embedding_multiplier": 10.0, "mup_width_multiplier": 8.0,
    "blocksparse_block_size": 64, "blocksparse_num_local_blocks": 16, "blocksparse_vert_stride": 8,
    "dense_attention_every_n_layers": 2, "gegelu_limit": 20.0, "layer_norm_epsilon": 1e-5})");
  auto c = phi::model_config_from_hf_json(j, "config.json");
  EXPECT_EQ(phi::model_config_to_json(c)["attention_scale"], 1.0 / 128);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_TRUE(c.layer_is_blocksparse(0));
  EXPECT_FALSE(c.layer_is_blocksparse(1));
  EXPECT_EQ(c.masked_token_ids.size(), 91u);
  EXPECT_EQ(phi::model_info(c).n_parameters, 7392272384);
}

TEST(HfConfig, NotAPhiModelIsAnError) {
  auto j = nlohmann::json::parse(R"({"model_type": "llama"})");
  auto message = error_of([&] { phi::model_config_from_hf_json(j, "config.json"); });
  EXPECT_NE(message.find("$.model_type \"llama\" is not a phi model"), std::string::npos) << message;
}

}  // namespace
