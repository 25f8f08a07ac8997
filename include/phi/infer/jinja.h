// A small Jinja2 interpreter for chat templates (the subset Hugging Face chat templates use):
// {{ expr }}, {% if/elif/else/endif %}, {% for x in xs %}...{% endfor %} with loop.index/first/last,
// {% set %}, whitespace control ({%- -%}), comments; expressions with literals, names, attribute and
// index access, + and ~, comparisons, and/or/not, in, `is defined`/`is none`, `x if c else y`, and the
// filters trim, length, upper, lower, tojson, default; raise_exception(msg).
// Values are JSON values (nlohmann::json). Errors name the template position.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace phi::jinja {

struct Node;

class Template {
 public:
  /// Parses `source`; throws phi::Error naming the offset of a syntax error.
  explicit Template(std::string source);
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;
  /// Renders with `context` (a JSON object of variables).
  std::string render(const nlohmann::json& context) const;

 private:
  std::string source_;
  std::unique_ptr<Node> root_;
};

}  // namespace phi::jinja
