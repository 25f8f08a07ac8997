// A small Jinja2 interpreter for chat templates (the subset Hugging Face chat templates use):
// {{ expr }}, {% if/elif/else/endif %}, {% for x in xs %}...{% endfor %} with loop.index/first/last,
// {% set %}, whitespace control ({%- -%}), comments; expressions with literals, names, attribute and
// index access, + and ~, comparisons, and/or/not, in, `is defined`/`is none`, `x if c else y`, and the
// filters trim, length, upper, lower, tojson, default; raise_exception(msg).
// Values are JSON values (nlohmann::json). Errors name the template and the position.
//
// Templates come from files users download, so parsing and rendering are bounded: source size,
// tokens per tag and nesting depth when parsing; output bytes, evaluation steps, loop iterations
// and the size of any computed value when rendering. Exceeding a limit is a phi::Error, never a
// crash, a hang or an allocation failure.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace phi::jinja {

struct Node;

struct Limits {
  size_t max_source_bytes = 1 << 20;        // template source
  size_t max_tokens_per_tag = 4096;         // lexed tokens in one {{ }} or {% %}
  int max_depth = 64;                       // nesting of blocks, and of expressions
  size_t max_output_bytes = 256u << 20;     // rendered text
  uint64_t max_steps = 20'000'000;          // node renders + expression evaluations
  uint64_t max_loop_iterations = 1'000'000; // all for-loop iterations of one render
  size_t max_value_bytes = 64u << 20;       // any string computed; arrays count elements x 64
};

class Template {
 public:
  /// Parses `source`; throws phi::Error naming `name` and the offset of a syntax error.
  explicit Template(std::string source, std::string name = "chat template", Limits limits = {});
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;
  /// Renders with `context` (a JSON object of variables).
  std::string render(const nlohmann::json& context) const;

 private:
  std::string source_;
  std::string name_;
  Limits limits_;
  std::unique_ptr<Node> root_;
};

}  // namespace phi::jinja
