// Safetensors reading/writing and every bad-file case: each must be a phi::Error naming the file
// (and the tensor where there is one), never a crash or an out-of-bounds read.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "phi/core/error.h"
#include "test_util.h"
#include "phi/io/safetensors.h"
#include "phi/models/family.h"
#include "phi/models/model_loader.h"
#include "phi/models/transformer.h"

namespace fs = std::filesystem;

namespace {

using phi::test::expect_error;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("phi_st_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes a file from a header JSON and a data region.
  std::string write_raw(const std::string& name, const std::string& header, const std::string& data,
                        int64_t header_length_override = -1) {
    std::string p = path(name);
    std::ofstream out(p, std::ios::binary);
    uint64_t n = header_length_override >= 0 ? static_cast<uint64_t>(header_length_override) : header.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
    out << header << data;
    return p;
  }

  fs::path dir_;
};

TEST_F(SafetensorsTest, RoundTripAllFloatDtypes) {
  phi::NamedTensors tensors = {
      {"a", at::randn({3, 4})},
      {"b", at::randn({5}).to(at::kHalf)},
      {"c", at::randn({2, 2, 2}).to(at::kBFloat16)},
      {"ids", at::arange(7, at::kLong)},
  };
  auto p = path("x.safetensors");
  phi::save_safetensors(p, tensors);
  auto file = phi::SafetensorsFile::open(p);
  ASSERT_EQ(file->tensors().size(), 4u);
  for (const auto& [name, t] : tensors) {
    auto loaded = file->tensor(name);
    EXPECT_EQ(loaded.scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(at::equal(loaded, t)) << name;
  }
  EXPECT_EQ(file->metadata().at("format"), "pt");
}

TEST_F(SafetensorsTest, TensorsOutliveTheFileObjectAndWritesDoNotTouchTheFile) {
  auto p = path("x.safetensors");
  phi::save_safetensors(p, {{"a", at::ones({4})}});
  at::Tensor t;
  {
    auto file = phi::SafetensorsFile::open(p);
    t = file->tensor("a");
  }
  t.add_(1);  // copy-on-write mapping
  EXPECT_TRUE(at::equal(t, at::full({4}, 2.0f)));
  EXPECT_TRUE(at::equal(phi::SafetensorsFile::open(p)->tensor("a"), at::ones({4})));
}

TEST_F(SafetensorsTest, ShardedDirectoryRoundTrip) {
  phi::NamedTensors tensors;
  for (int i = 0; i < 6; ++i) tensors.push_back({"t" + std::to_string(i), at::randn({64})});
  phi::save_safetensors_directory(dir_.string(), tensors, 600);  // 256 bytes each -> 3 shards
  EXPECT_TRUE(fs::exists(dir_ / "model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(dir_ / "model-00003-of-00003.safetensors"));
  EXPECT_FALSE(fs::exists(dir_ / "model.safetensors"));
  auto store = phi::TensorStore::open_directory(dir_.string());
  EXPECT_EQ(store.names().size(), 6u);
  for (const auto& [name, t] : tensors) EXPECT_TRUE(at::equal(store.tensor(name), t));
}

TEST_F(SafetensorsTest, TruncatedBelowHeaderLength) {
  auto p = path("short.safetensors");
  std::ofstream(p, std::ios::binary) << "abc";
  expect_error([&] { phi::SafetensorsFile::open(p); }, {"truncated", p});
}

TEST_F(SafetensorsTest, HeaderLengthBeyondFile) {
  auto p = write_raw("h.safetensors", "{}", "", 1000);
  expect_error([&] { phi::SafetensorsFile::open(p); }, {"header length 1000", "beyond the end", p});
}

TEST_F(SafetensorsTest, MalformedHeaderJson) {
  auto p = write_raw("m.safetensors", "{\"a\": {\"dtype\": ", "");
  expect_error([&] { phi::SafetensorsFile::open(p); }, {"malformed header JSON", p});
}

TEST_F(SafetensorsTest, OffsetsOutOfRange) {
  auto p = write_raw("o.safetensors",
                     R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", std::string(8, '\0'));
  expect_error([&] { phi::SafetensorsFile::open(p); }, {"\"w\"", "out of range", p});
}

TEST_F(SafetensorsTest, TruncatedData) {
  auto p = path("t.safetensors");
  phi::save_safetensors(p, {{"a", at::randn({16})}, {"b", at::randn({16})}});
  fs::resize_file(p, fs::file_size(p) - 10);
  expect_error([&] { phi::SafetensorsFile::open(p); }, {"\"b\"", "truncated file?", p});
}

TEST_F(SafetensorsTest, OverlappingOffsets) {
  auto p = write_raw("ov.safetensors",
                     R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                         "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
                     std::string(24, '\0'));
  expect_error([&] { phi::SafetensorsFile::open(p); }, {"overlapping", "\"a\"", "\"b\""});
}

TEST_F(SafetensorsTest, SizeDisagreesWithShape) {
  auto p = write_raw("s.safetensors", R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}})",
                     std::string(16, '\0'));
  expect_error([&] { phi::SafetensorsFile::open(p); }, {"\"w\"", "holds 16 bytes", "need 12"});
}

TEST_F(SafetensorsTest, UnsupportedDtype) {
  auto p = write_raw("d.safetensors", R"({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}})",
                     std::string(8, '\0'));
  expect_error([&] { phi::SafetensorsFile::open(p); }, {"\"w\"", "unsupported safetensors dtype \"C64\""});
}

TEST_F(SafetensorsTest, NegativeShapeAndBadOffsets) {
  auto p1 = write_raw("n.safetensors", R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})",
                      std::string(4, '\0'));
  expect_error([&] { phi::SafetensorsFile::open(p1); }, {"\"w\"", "negative"});
  auto p2 = write_raw("b.safetensors", R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})",
                      std::string(4, '\0'));
  expect_error([&] { phi::SafetensorsFile::open(p2); }, {"\"w\"", "begin > end"});
}

TEST_F(SafetensorsTest, IndexNamesMissingShard) {
  nlohmann::json index = {{"weight_map", {{"a", "model-00001-of-00002.safetensors"}}}};
  std::ofstream(path("model.safetensors.index.json")) << index.dump();
  expect_error([&] { phi::TensorStore::open_directory(dir_.string()); },
               {"model-00001-of-00002.safetensors", "does not exist"});
}

TEST_F(SafetensorsTest, FailedSaveKeepsThePreviousFile) {
  auto p = path("keep.safetensors");
  phi::save_safetensors(p, {{"a", at::ones({2})}});
  EXPECT_THROW(phi::save_safetensors(p, {{"a", at::zeros({2})}, {"a", at::zeros({2})}}), phi::Error);
  EXPECT_TRUE(at::equal(phi::SafetensorsFile::open(p)->tensor("a"), at::ones({2})));
  for (const auto& entry : fs::directory_iterator(dir_)) {
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << "left a temporary file";
  }
}

// ---- Model-level checks: missing, unexpected and mis-shaped tensors ------------------------------

class CheckpointTest : public SafetensorsTest {
 protected:
  std::string make_model(const std::string& name) {
    auto config = phi::preset_model_config("tiny-phi3");
    auto model = phi::Transformer::random(config, 1, at::kFloat);
    auto out = path(name);
    phi::save_model(model, out, at::kFloat);
    return out;
  }
  // Rewrites model.safetensors of `model_dir` through `edit`.
  template <typename F>
  void edit_weights(const std::string& model_dir, F&& edit) {
    auto file = model_dir + "/model.safetensors";
    auto store = phi::TensorStore::open_file(file);
    phi::NamedTensors tensors;
    for (const auto& n : store.names()) tensors.push_back({n, store.tensor(n).clone()});
    edit(tensors);
    phi::save_safetensors(file, tensors);
  }
};

TEST_F(CheckpointTest, SavedModelLoadsBackIdentically) {
  auto dir = make_model("m");
  auto model = phi::load_model(dir);
  auto reference = phi::Transformer::random(phi::preset_model_config("tiny-phi3"), 1, at::kFloat);
  for (const auto& [name, t] : reference.parameters()) EXPECT_TRUE(at::equal(model.parameter(name), t)) << name;
}

TEST_F(CheckpointTest, MissingTensor) {
  auto dir = make_model("m");
  edit_weights(dir, [](phi::NamedTensors& t) {
    t.erase(std::remove_if(t.begin(), t.end(), [](auto& x) { return x.first == "model.norm.weight"; }), t.end());
  });
  expect_error([&] { phi::load_model(dir); }, {"missing tensor \"model.norm.weight\"", "model.safetensors"});
}

TEST_F(CheckpointTest, UnexpectedTensor) {
  auto dir = make_model("m");
  edit_weights(dir, [](phi::NamedTensors& t) { t.push_back({"model.layers.9.extra.weight", at::zeros({2})}); });
  expect_error([&] { phi::load_model(dir); }, {"unexpected tensor \"model.layers.9.extra.weight\""});
}

TEST_F(CheckpointTest, WrongShape) {
  auto dir = make_model("m");
  edit_weights(dir, [](phi::NamedTensors& t) {
    for (auto& x : t) {
      if (x.first == "model.layers.0.mlp.down_proj.weight") x.second = at::zeros({64, 10});
    }
  });
  expect_error([&] { phi::load_model(dir); },
               {"\"model.layers.0.mlp.down_proj.weight\"", "[64, 10]", "[64, 128]", "model.safetensors"});
}

TEST_F(CheckpointTest, NonFloatWeight) {
  auto dir = make_model("m");
  edit_weights(dir, [](phi::NamedTensors& t) {
    for (auto& x : t) {
      if (x.first == "model.norm.weight") x.second = x.second.to(at::kInt);
    }
  });
  expect_error([&] { phi::load_model(dir); }, {"\"model.norm.weight\"", "dtype I32"});
}

}  // namespace
