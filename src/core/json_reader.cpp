#include "phi/core/json_reader.h"

#include <cstdint>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/file_util.h"
#include "phi/core/text_io.h"

namespace phi {

std::string json_error_text(const nlohmann::json::exception& e) {
  std::string text = e.what();
  const auto close = text.find("] ");
  if (text.rfind("[json.exception.", 0) == 0 && close != std::string::npos) text = text.substr(close + 2);
  return text;
}

nlohmann::json read_json_file(const std::string& path) {
  const std::string text = read_text_file(path, "JSON file");
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error("malformed JSON: " + json_error_text(e), path, "fix the syntax at the byte offset given above");
  } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for a double
    throw Error("malformed JSON: " + json_error_text(e), path, "fix the value named above");
  }
}

void write_json_file_atomic(const std::string& path, const nlohmann::json& value) {
  std::string text = value.dump(2) + "\n";
  write_file_atomic(path, text.data(), text.size());
}

JsonReader::JsonReader(const nlohmann::json& object, std::string source, std::string path)
    : object_(object), source_(std::move(source)), path_(std::move(path)) {
  if (!object_.is_object()) {
    throw Error(path_ + " must be a JSON object, got " + std::string(object_.type_name()), source_);
  }
}

bool JsonReader::has(const std::string& key) const { return object_.contains(key); }

bool JsonReader::has_value(const std::string& key) const {
  return object_.contains(key) && !object_.at(key).is_null();
}

std::string JsonReader::path_of(const std::string& key) const { return path_ + "." + key; }

void JsonReader::fail(const std::string& key, const std::string& message) const {
  throw Error(path_of(key) + " " + message, source_);
}

const nlohmann::json& JsonReader::value_of(const std::string& key) {
  mark(key);
  return object_.at(key);
}

const nlohmann::json& JsonReader::raw(const std::string& key) {
  if (!has(key)) fail(key, "is required but missing");
  return value_of(key);
}

JsonReader JsonReader::child(const std::string& key) {
  const auto& value = raw(key);
  if (!value.is_object()) fail(key, "must be an object, got " + std::string(value.type_name()));
  return JsonReader(value, source_, path_of(key));
}

void JsonReader::ignore(std::initializer_list<const char*> keys) {
  for (const char* key : keys) mark(key);
}

std::vector<std::string> JsonReader::unread_keys() const {
  std::vector<std::string> out;
  for (const auto& item : object_.items()) {
    if (!read_.count(item.key())) out.push_back(item.key());
  }
  return out;
}

void JsonReader::finish() const {
  auto unknown = unread_keys();
  if (unknown.empty()) return;
  std::string list;
  for (const auto& key : unknown) list += (list.empty() ? "" : ", ") + key;
  throw Error("unknown key " + path_of(unknown.front()) + " (unknown keys here: " + list + ")",
              source_, "remove the key or check its spelling against docs/configs.md");
}

void JsonReader::convert(const std::string& key, bool& out) {
  const auto& v = value_of(key);
  if (!v.is_boolean()) fail(key, "must be a boolean, got " + std::string(v.type_name()));
  out = v.get<bool>();
}

void JsonReader::convert(const std::string& key, int64_t& out) {
  const auto& v = value_of(key);
  if (!v.is_number_integer()) fail(key, "must be an integer, got " + v.dump());
  out = v.get<int64_t>();
}

void JsonReader::convert(const std::string& key, int& out) {
  int64_t wide = 0;
  convert(key, wide);
  if (wide < INT32_MIN || wide > INT32_MAX) fail(key, "is out of the 32-bit integer range");
  out = static_cast<int>(wide);
}

void JsonReader::convert(const std::string& key, double& out) {
  const auto& v = value_of(key);
  if (!v.is_number()) fail(key, "must be a number, got " + v.dump());
  out = v.get<double>();
}

void JsonReader::convert(const std::string& key, std::string& out) {
  const auto& v = value_of(key);
  if (!v.is_string()) fail(key, "must be a string, got " + v.dump());
  out = v.get<std::string>();
}

void JsonReader::convert(const std::string& key, std::vector<double>& out) {
  const auto& v = value_of(key);
  if (!v.is_array()) fail(key, "must be an array of numbers, got " + std::string(v.type_name()));
  out.clear();
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number()) fail(key + "[" + std::to_string(i) + "]", "must be a number");
    out.push_back(v[i].get<double>());
  }
}

void JsonReader::convert(const std::string& key, std::vector<int64_t>& out) {
  const auto& v = value_of(key);
  if (!v.is_array()) fail(key, "must be an array of integers, got " + std::string(v.type_name()));
  out.clear();
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number_integer()) fail(key + "[" + std::to_string(i) + "]", "must be an integer");
    out.push_back(v[i].get<int64_t>());
  }
}

void JsonReader::convert(const std::string& key, std::vector<std::string>& out) {
  const auto& v = value_of(key);
  if (!v.is_array()) fail(key, "must be an array of strings, got " + std::string(v.type_name()));
  out.clear();
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) fail(key + "[" + std::to_string(i) + "]", "must be a string");
    out.push_back(v[i].get<std::string>());
  }
}

}  // namespace phi
