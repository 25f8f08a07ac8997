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

void for_each_jsonl(const std::string& path,
                    const std::function<bool(const nlohmann::json& value, const std::string& where)>& line_fn) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open JSONL file", path, "check that the file exists and is readable");
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(n);
    auto value = nlohmann::json::parse(line, nullptr, false);
    if (value.is_discarded()) throw Error("line is not valid JSON", where);
    if (!line_fn(value, where)) return;
  }
}

}  // namespace phi
