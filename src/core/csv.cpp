#include "core/csv.h"

#include "phi/core/error.h"
#include "phi/core/text_io.h"

namespace phi {

std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& where) {
  std::vector<std::vector<std::string>> records;
  std::vector<std::string> record;
  std::string field;
  bool quoted = false, field_started = false;
  size_t line = 1, quote_line = 0;
  auto end_field = [&] {
    record.push_back(std::move(field));
    field.clear();
    field_started = false;
  };
  auto end_record = [&] {
    if (!(record.empty() && !field_started && field.empty())) {
      end_field();
      records.push_back(std::move(record));
    }
    record.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        if (c == '\n') ++line;
        field += c;
      }
      continue;
    }
    if (c == '"' && !field_started) {
      quoted = true;
      field_started = true;
      quote_line = line;
    } else if (c == ',') {
      end_field();  // the record is no longer empty: "a," ends with an empty second field
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      ++line;
      end_record();
    } else {
      field += c;
      field_started = true;
    }
  }
  if (quoted) throw Error("unterminated quoted field opened on line " + std::to_string(quote_line), where);
  end_record();
  return records;
}

std::vector<std::vector<std::string>> read_csv_file(const std::string& path) {
  return parse_csv(read_text_file(path, "CSV file"), path);
}

}  // namespace phi
