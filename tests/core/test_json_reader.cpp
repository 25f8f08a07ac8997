// Strict JSON reading: types, missing and unknown keys, overrides; errors name file and path.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "phi/config/overrides.h"
#include "phi/core/error.h"
#include "test_util.h"
#include "phi/core/json_reader.h"

namespace {

using phi::test::error_of;

TEST(JsonReader, ReadsTypedValuesAndDefaults) {
  auto j = nlohmann::json::parse(R"({"a": 3, "b": 2.5, "c": "x", "d": true, "e": [1, 2], "f": {"g": 1}})");
  phi::JsonReader r(j, "test.json");
  EXPECT_EQ(r.required<int64_t>("a"), 3);
  EXPECT_EQ(r.required<double>("b"), 2.5);
  EXPECT_EQ(r.required<std::string>("c"), "x");
  EXPECT_TRUE(r.required<bool>("d"));
  EXPECT_EQ(r.required<std::vector<int64_t>>("e"), (std::vector<int64_t>{1, 2}));
  auto f = r.child("f");
  EXPECT_EQ(f.required<int64_t>("g"), 1);
  f.finish();
  EXPECT_EQ(r.optional<int64_t>("missing", 9), 9);
  r.finish();
}

TEST(JsonReader, WrongTypeNamesPathAndFile) {
  auto j = nlohmann::json::parse(R"({"section": {"n": "four"}})");
  phi::JsonReader r(j, "cfg.json");
  auto message = error_of([&] { r.child("section").required<int64_t>("n"); });
  EXPECT_NE(message.find("$.section.n must be an integer"), std::string::npos) << message;
  EXPECT_NE(message.find("cfg.json"), std::string::npos) << message;
}

TEST(JsonReader, FloatIsNotAnInteger) {
  auto j = nlohmann::json::parse(R"({"n": 2.5})");
  phi::JsonReader r(j, "cfg.json");
  EXPECT_THROW(r.required<int64_t>("n"), phi::Error);
}

TEST(JsonReader, UnknownKeysAreErrors) {
  auto j = nlohmann::json::parse(R"({"known": 1, "typo_key": 2})");
  phi::JsonReader r(j, "cfg.json");
  r.required<int64_t>("known");
  auto message = error_of([&] { r.finish(); });
  EXPECT_NE(message.find("unknown key $.typo_key"), std::string::npos) << message;
}

TEST(JsonReader, MalformedFileNamesFile) {
  const std::string path = ::testing::TempDir() + "/malformed.json";
  { std::ofstream(path) << "{\"a\": 1,,}"; }
  auto message = error_of([&] { phi::read_json_file(path); });
  EXPECT_NE(message.find("malformed JSON"), std::string::npos) << message;
  EXPECT_NE(message.find(path), std::string::npos) << message;
}

TEST(Overrides, SetsNestedValuesWithJsonParsing) {
  auto j = nlohmann::json::parse(R"({"a": {"b": 1, "c": "x"}, "d": 1})");
  phi::apply_overrides(j, {"a.b=2.5", "a.c=hello", "d=[1,2]", "a.e=true"});
  EXPECT_EQ(j["a"]["b"], 2.5);
  EXPECT_EQ(j["a"]["c"], "hello");
  EXPECT_EQ(j["d"], nlohmann::json::parse("[1,2]"));
  EXPECT_EQ(j["a"]["e"], true);
}

TEST(Overrides, MalformedAndMissingSectionsAreErrors) {
  auto j = nlohmann::json::parse(R"({"a": {"b": 1}})");
  EXPECT_NE(error_of([&] { phi::apply_overrides(j, {"novalue"}); }).find("malformed override"), std::string::npos);
  EXPECT_NE(error_of([&] { phi::apply_overrides(j, {"x.y=1"}); }).find("no such section $.x"), std::string::npos);
  EXPECT_NE(error_of([&] { phi::apply_overrides(j, {"a.b.c=1"}); }).find("$.a.b is not an object"),
            std::string::npos);
}

}  // namespace
