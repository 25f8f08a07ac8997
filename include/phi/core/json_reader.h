// Strict reading of JSON configs: every read names its JSON path ("$.rope_scaling.type") and its
// source file, wrong types are errors, and finish() reports every key that was never read.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "phi/core/error.h"

namespace phi {

/// Parses a JSON file; errors name the file, and the line/column for syntax errors.
nlohmann::json read_json_file(const std::string& path);

/// nlohmann's exception text without its "[json.exception.type_error.302] " prefix, for messages
/// that reach users.
std::string json_error_text(const nlohmann::json::exception& e);

/// Writes JSON to `path` atomically (temporary name, fsync, rename), pretty-printed.
void write_json_file_atomic(const std::string& path, const nlohmann::json& value);

/// A view of one JSON object that remembers which keys were read.
class JsonReader {
 public:
  /// `source` is the file (or "--set", "<preset>") the object came from; `path` its JSON path.
  JsonReader(const nlohmann::json& object, std::string source, std::string path = "$");

  bool has(const std::string& key) const;
  /// True when the key is present and not null.
  bool has_value(const std::string& key) const;

  template <typename T>
  T required(const std::string& key) {
    T value{};
    if (!has(key)) fail(key, "is required but missing");
    convert(key, value);
    return value;
  }

  template <typename T>
  T optional(const std::string& key, T default_value) {
    if (!has_value(key)) {
      mark(key);
      return default_value;
    }
    T value{};
    convert(key, value);
    return value;
  }

  /// A nested object; errors if the value is not an object.
  JsonReader child(const std::string& key);
  /// The raw value (marks the key as read).
  const nlohmann::json& raw(const std::string& key);
  /// Marks keys as known without reading them (values that do not affect the engine).
  void ignore(std::initializer_list<const char*> keys);

  /// Throws naming the first unknown key (with the full list of unknown keys).
  void finish() const;
  /// Unread keys, for lenient readers that only warn.
  std::vector<std::string> unread_keys() const;

  std::string path_of(const std::string& key) const;
  const std::string& source() const { return source_; }
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

 private:
  void mark(const std::string& key) { read_.insert(key); }
  void convert(const std::string& key, bool& out);
  void convert(const std::string& key, int64_t& out);
  void convert(const std::string& key, int& out);
  void convert(const std::string& key, double& out);
  void convert(const std::string& key, std::string& out);
  void convert(const std::string& key, std::vector<double>& out);
  void convert(const std::string& key, std::vector<int64_t>& out);
  void convert(const std::string& key, std::vector<std::string>& out);
  const nlohmann::json& value_of(const std::string& key);

  const nlohmann::json& object_;
  std::string source_;
  std::string path_;
  std::set<std::string> read_;
};

}  // namespace phi
