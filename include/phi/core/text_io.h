// Reading text inputs: whole files, and JSONL files line by line with positions for errors.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace phi {

/// The whole file as bytes; `what` names it in the error ("cannot open <what>").
std::string read_text_file(const std::string& path, const std::string& what = "input file");

/// Calls `line_fn(value, where)` for each non-blank line of a JSONL file, `where` being
/// "path:line"; a line that is not JSON is an error naming it. Stops early when line_fn returns
/// false.
void for_each_jsonl(const std::string& path,
                    const std::function<bool(const nlohmann::json& value, const std::string& where)>& line_fn);

}  // namespace phi
