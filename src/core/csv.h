// CSV as RFC 4180 and Python's csv module read it: comma-separated fields, double-quoted fields
// holding commas, newlines and "" for a quote; records end at \n or \r\n outside quotes.
#pragma once

#include <string>
#include <vector>

namespace phi {

/// Every record of the file (blank lines skipped). An unterminated quoted field is an error naming
/// the file and the line where it opened.
std::vector<std::vector<std::string>> read_csv_file(const std::string& path);

/// The same over text in memory; `where` names it in errors.
std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& where);

}  // namespace phi
