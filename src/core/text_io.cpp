#include "phi/core/text_io.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "phi/core/error.h"

namespace phi {

std::string read_text_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + what, path, "check that the file exists and is readable");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

namespace {

// std::getline with a cap: false at the end of the input; throws when a line passes `max_bytes`.
bool read_line(std::istream& in, std::string& line, size_t max_bytes, const std::string& path, int64_t number) {
  line.clear();
  std::streambuf* buffer = in.rdbuf();
  bool any = false;
  while (true) {
    const int c = buffer->sbumpc();
    if (c == std::char_traits<char>::eof()) return any;
    any = true;
    if (c == '\n') return true;
    if (line.size() >= max_bytes) {
      throw Error("line is longer than " + std::to_string(max_bytes) + " bytes", path + ":" + std::to_string(number),
                  "split the input into smaller records");
    }
    line.push_back(static_cast<char>(c));
  }
}

// Every non-blank line of `in` as JSON, errors naming source:line; with `bad_line`, a line that is
// not JSON is reported to it and skipped.
void for_each_jsonl_line(std::istream& in, const std::string& path,
                         const std::function<bool(const nlohmann::json& value, const std::string& where)>& line_fn,
                         size_t max_line_bytes,
                         const std::function<void(const std::string& where, const std::string& why)>& bad_line = {}) {
  std::string line;
  int64_t n = 0;
  while (read_line(in, line, max_line_bytes, path, n + 1)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(n);
    auto value = nlohmann::json::parse(line, nullptr, false);
    if (value.is_discarded()) {
      if (!bad_line) throw Error("line is not valid JSON", where);
      bad_line(where, "line is not valid JSON");
      continue;
    }
    if (!line_fn(value, where)) return;
  }
}

}  // namespace

void for_each_jsonl(const std::string& path,
                    const std::function<bool(const nlohmann::json& value, const std::string& where)>& line_fn,
                    size_t max_line_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open JSONL file", path, "check that the file exists and is readable");
  for_each_jsonl_line(in, path, line_fn, max_line_bytes);
}

void for_each_jsonl_raw_line(const std::string& path,
                             const std::function<void(std::string&& line, int64_t number)>& line_fn,
                             size_t max_line_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open JSONL file", path, "check that the file exists and is readable");
  std::string line;
  int64_t n = 0;
  while (read_line(in, line, max_line_bytes, path, n + 1)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    line_fn(std::move(line), n);
    line = std::string();
  }
}

void for_each_jsonl_text(const std::string& text, const std::string& source,
                         const std::function<bool(const nlohmann::json& value, const std::string& where)>& line_fn,
                         size_t max_line_bytes) {
  std::istringstream in(text);
  for_each_jsonl_line(in, source, line_fn, max_line_bytes);
}

void for_each_jsonl_text_skipping(
    const std::string& text, const std::string& source,
    const std::function<bool(const nlohmann::json& value, const std::string& where)>& line_fn,
    const std::function<void(const std::string& where, const std::string& why)>& bad_line) {
  std::istringstream in(text);
  for_each_jsonl_line(in, source, line_fn, kMaxJsonlLineBytes, bad_line);
}

}  // namespace phi
