// Command-line overrides: `--set a.b=value` edits a JSON document before it is parsed.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace phi {

/// Applies "a.b.c=value" assignments in order. The value is parsed as JSON when it is valid JSON
/// (numbers, true/false, null, arrays, objects, quoted strings) and taken as a plain string
/// otherwise. Intermediate objects must exist; a missing leaf is added (the typed reader then
/// rejects it if it is unknown). Throws phi::Error naming the offending assignment.
void apply_overrides(nlohmann::json& document, const std::vector<std::string>& assignments);

}  // namespace phi
