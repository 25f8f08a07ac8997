#include "phi/infer/jinja.h"

#include <cstdint>
#include <cctype>
#include <functional>
#include <vector>

#include "phi/core/error.h"

namespace phi::jinja {

using Json = nlohmann::json;

namespace {

[[noreturn]] void syntax_error(const std::string& message, size_t offset) {
  throw Error("chat template: " + message + " at offset " + std::to_string(offset), "",
              "check the chat_template in tokenizer_config.json");
}

// ---- Lexing the template into text and tags ------------------------------------------------------

struct Piece {
  enum Kind { kText, kOutput, kStatement } kind;
  std::string text;
  size_t offset;
};

std::vector<Piece> split_template(const std::string& s) {
  std::vector<Piece> pieces;
  size_t pos = 0;
  bool trim_next_left = false;
  while (pos < s.size()) {
    size_t open = s.find('{', pos);
    while (open != std::string::npos && open + 1 < s.size() && s[open + 1] != '{' && s[open + 1] != '%' &&
           s[open + 1] != '#') {
      open = s.find('{', open + 1);
    }
    if (open == std::string::npos || open + 1 >= s.size()) open = s.size();
    std::string text = s.substr(pos, open - pos);
    if (trim_next_left) {
      size_t k = text.find_first_not_of(" \t\r\n");
      text = k == std::string::npos ? "" : text.substr(k);
      trim_next_left = false;
    }
    if (open == s.size()) {
      if (!text.empty()) pieces.push_back({Piece::kText, text, pos});
      break;
    }
    const char kind = s[open + 1];
    const std::string close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
    size_t end = s.find(close, open + 2);
    if (end == std::string::npos) syntax_error("unclosed tag", open);
    std::string inner = s.substr(open + 2, end - open - 2);
    if (!inner.empty() && inner.front() == '-') {
      size_t k = text.find_last_not_of(" \t\r\n");
      text = k == std::string::npos ? "" : text.substr(0, k + 1);
      inner.erase(0, 1);
    }
    if (!inner.empty() && inner.back() == '-') {
      trim_next_left = true;
      inner.pop_back();
    }
    if (!text.empty()) pieces.push_back({Piece::kText, text, pos});
    if (kind != '#') pieces.push_back({kind == '{' ? Piece::kOutput : Piece::kStatement, inner, open});
    pos = end + 2;
  }
  return pieces;
}

// ---- Expressions ---------------------------------------------------------------------------------

struct Token {
  enum Kind { kName, kString, kNumber, kOp, kEnd } kind;
  std::string text;
};

std::vector<Token> lex(const std::string& s, size_t offset, size_t max_tokens) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    if (out.size() >= max_tokens) {
      syntax_error("a tag of more than " + std::to_string(max_tokens) + " tokens", offset);
    }
    char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) { ++i; continue; }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Token::kName, s.substr(i, j - i)});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '.')) ++j;
      out.push_back({Token::kNumber, s.substr(i, j - i)});
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string value;
      size_t j = i + 1;
      while (j < s.size() && s[j] != c) {
        if (s[j] == '\\' && j + 1 < s.size()) {
          char e = s[++j];
          value += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
        } else {
          value += s[j];
        }
        ++j;
      }
      if (j >= s.size()) syntax_error("unterminated string", offset + i);
      out.push_back({Token::kString, value});
      i = j + 1;
    } else {
      static const char* two[] = {"==", "!=", "<=", ">="};
      std::string op(1, c);
      for (const char* t : two) {
        if (s.compare(i, 2, t) == 0) op = t;
      }
      out.push_back({Token::kOp, op});
      i += op.size();
    }
  }
  out.push_back({Token::kEnd, ""});
  return out;
}

struct Context {
  explicit Context(const Limits& l) : limits(l) {}
  const Limits& limits;
  uint64_t steps = 0;
  uint64_t iterations = 0;
  // One node render or loop iteration; a render that runs past the budget stops.
  void tick() {
    if (++steps > limits.max_steps) {
      throw Error("chat template: rendering took more than " + std::to_string(limits.max_steps) + " steps");
    }
  }
  void check_size(size_t bytes, const char* what) const {
    if (bytes > limits.max_value_bytes) {
      throw Error(std::string("chat template: ") + what + " of " + std::to_string(bytes) + " bytes exceeds the limit of " +
                  std::to_string(limits.max_value_bytes));
    }
  }
  std::vector<Json> scopes;  // innermost last
  const Json* lookup(const std::string& name) const {
    for (auto it = scopes.rbegin(); it != scopes.rend(); ++it) {
      if (it->contains(name)) return &(*it)[name];
    }
    return nullptr;
  }
};

using Expr = std::function<Json(Context&)>;

Json undefined() { return Json(Json::value_t::discarded); }

bool truthy(const Json& v) {
  if (v.is_null() || v.is_discarded()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0;
  if (v.is_string()) return !v.get<std::string>().empty();
  if (v.is_array() || v.is_object()) return !v.empty();
  return true;
}

// The `upper` / `lower` filter and string method (ASCII letters only).
std::string change_case(std::string s, bool upper) {
  for (auto& ch : s) {
    const auto byte = static_cast<unsigned char>(ch);
    ch = static_cast<char>(upper ? std::toupper(byte) : std::tolower(byte));
  }
  return s;
}

std::string to_text(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null() || v.is_discarded()) return "";
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  return v.dump();
}

class ExprParser {
 public:
  ExprParser(std::vector<Token> tokens, size_t offset, int max_depth)
      : t_(std::move(tokens)), offset_(offset), max_depth_(max_depth) {}
  Expr parse() {
    auto e = conditional();
    return e;
  }
  bool at_end() const { return t_[i_].kind == Token::kEnd; }
  const Token& peek() const { return t_[i_]; }
  Token take() { return t_[i_].kind == Token::kEnd ? t_[i_] : t_[i_++]; }
  void expect_name(const std::string& name) {
    if (!accept_name(name)) syntax_error("expected '" + name + "'", offset_);
  }
  bool accept_name(const std::string& name) {
    if (t_[i_].kind == Token::kName && t_[i_].text == name) { ++i_; return true; }
    return false;
  }
  bool accept_op(const std::string& op) {
    if (t_[i_].kind == Token::kOp && t_[i_].text == op) { ++i_; return true; }
    return false;
  }

 private:
  // Recursion guard: nested parentheses, brackets, `not`s and conditionals count.
  struct Nesting {
    ExprParser& p;
    explicit Nesting(ExprParser& parser) : p(parser) {
      if (++p.depth_ > p.max_depth_) syntax_error("expression nested deeper than " + std::to_string(p.max_depth_), p.offset_);
    }
    ~Nesting() { --p.depth_; }
  };
  Expr conditional() {
    Nesting nesting(*this);
    auto value = or_expr();
    if (accept_name("if")) {
      auto cond = or_expr();
      Expr otherwise = [](Context&) { return Json(""); };
      if (accept_name("else")) otherwise = conditional();
      return [value, cond, otherwise](Context& c) { return truthy(cond(c)) ? value(c) : otherwise(c); };
    }
    return value;
  }
  Expr or_expr() {
    auto left = and_expr();
    while (accept_name("or")) {
      auto right = and_expr();
      left = [left, right](Context& c) { auto l = left(c); return truthy(l) ? l : right(c); };
    }
    return left;
  }
  Expr and_expr() {
    auto left = not_expr();
    while (accept_name("and")) {
      auto right = not_expr();
      left = [left, right](Context& c) { auto l = left(c); return truthy(l) ? right(c) : l; };
    }
    return left;
  }
  Expr not_expr() {
    Nesting nesting(*this);
    if (accept_name("not")) {
      auto e = not_expr();
      return [e](Context& c) { return Json(!truthy(e(c))); };
    }
    return comparison();
  }
  Expr comparison() {
    auto left = additive();
    while (true) {
      if (peek().kind == Token::kOp && (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
                                        peek().text == ">" || peek().text == "<=" || peek().text == ">=")) {
        std::string op = take().text;
        auto right = additive();
        left = [left, right, op](Context& c) {
          Json l = left(c), r = right(c);
          if (op == "==") return Json(l == r);
          if (op == "!=") return Json(l != r);
          if (op == "<") return Json(l < r);
          if (op == ">") return Json(l > r);
          if (op == "<=") return Json(l <= r);
          return Json(l >= r);
        };
      } else if (peek().kind == Token::kName && (peek().text == "in" || (peek().text == "not" && t_[i_ + 1].text == "in"))) {
        bool negate = accept_name("not");
        expect_name("in");
        auto right = additive();
        left = [left, right, negate](Context& c) {
          Json l = left(c), r = right(c);
          bool found = false;
          if (r.is_string() && l.is_string()) found = r.get<std::string>().find(l.get<std::string>()) != std::string::npos;
          else if (r.is_array()) for (const auto& x : r) found = found || x == l;
          else if (r.is_object() && l.is_string()) found = r.contains(l.get<std::string>());
          return Json(negate ? !found : found);
        };
      } else if (accept_name("is")) {
        bool negate = accept_name("not");
        Token test = take();
        left = [left, test, negate](Context& c) {
          bool result = false;
          if (test.text == "defined") {
            result = !left(c).is_discarded();
          } else {
            Json v = left(c);
            if (test.text == "none") result = v.is_null();
            else if (test.text == "string") result = v.is_string();
            else if (test.text == "mapping") result = v.is_object();
            else if (test.text == "iterable" || test.text == "sequence") result = v.is_array() || v.is_string();
            else throw Error("chat template: unknown test '" + test.text + "'");
          }
          return Json(negate ? !result : result);
        };
      } else {
        return left;
      }
    }
  }
  Expr additive() {
    auto left = filtered();
    int links = 0;
    while (peek().kind == Token::kOp && (peek().text == "+" || peek().text == "~" || peek().text == "-")) {
      chain_link(links);
      std::string op = take().text;
      auto right = filtered();
      left = [left, right, op](Context& c) {
        Json l = left(c), r = right(c);
        if (op == "-") {
          if (!l.is_number() || !r.is_number()) throw Error("chat template: '-' needs two numbers");
          return Json(l.get<double>() - r.get<double>());
        }
        if (op == "~" || l.is_string() || r.is_string()) {
          std::string a = to_text(l), b = to_text(r);
          c.check_size(a.size() + b.size(), "a string");
          return Json(a + b);
        }
        if (l.is_array() && r.is_array()) {
          c.check_size((l.size() + r.size()) * 64, "a list");
          Json out = l;
          for (const auto& x : r) out.push_back(x);
          return out;
        }
        if (!l.is_number() || !r.is_number()) throw Error("chat template: '+' of " + std::string(l.type_name()) + " and " + r.type_name());
        if (l.is_number_integer() && r.is_number_integer()) return Json(l.get<int64_t>() + r.get<int64_t>());
        return Json(l.get<double>() + r.get<double>());
      };
    }
    return left;
  }
  // A chain of filters, attributes or operators nests its evaluation like parentheses do.
  void chain_link(int& links) {
    if (++links > max_depth_ * 4) syntax_error("a chain of more than " + std::to_string(max_depth_ * 4) + " operations", offset_);
  }
  Expr filtered() {
    auto value = postfix();
    int links = 0;
    while (accept_op("|")) {
      chain_link(links);
      Token name = take();
      std::vector<Expr> args;
      if (accept_op("(")) {
        if (!accept_op(")")) {
          do args.push_back(conditional()); while (accept_op(","));
          if (!accept_op(")")) syntax_error("expected ')'", offset_);
        }
      }
      value = [value, name, args](Context& c) {
        Json v = value(c);
        const std::string& f = name.text;
        if (f == "trim") {
          std::string s = to_text(v);
          size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
          return Json(a == std::string::npos ? "" : s.substr(a, b - a + 1));
        }
        if (f == "length" || f == "count") return Json(v.is_string() ? v.get<std::string>().size() : v.size());
        if (f == "upper" || f == "lower") {
          return Json(change_case(to_text(v), f == "upper"));
        }
        if (f == "tojson") return Json(v.dump(-1, ' ', false, Json::error_handler_t::replace));
        if (f == "string") return Json(to_text(v));
        if (f == "default") return (v.is_null() || v.is_discarded()) && !args.empty() ? args[0](c) : v;
        throw Error("chat template: unknown filter '" + f + "'");
      };
    }
    return value;
  }
  Expr postfix() {
    auto value = primary();
    int links = 0;
    while (true) {
      chain_link(links);
      if (accept_op(".")) {
        Token name = take();
        if (accept_op("(")) {  // string methods
          std::vector<Expr> args;
          if (!accept_op(")")) {
            do args.push_back(conditional()); while (accept_op(","));
            if (!accept_op(")")) syntax_error("expected ')'", offset_);
          }
          value = [value, name, args](Context& c) {
            std::string s = to_text(value(c));
            const auto& m = name.text;
            if (m == "strip" || m == "rstrip" || m == "lstrip") {
              size_t a = m == "rstrip" ? 0 : s.find_first_not_of(" \t\r\n");
              if (a == std::string::npos) return Json("");
              size_t b = m == "lstrip" ? s.size() - 1 : s.find_last_not_of(" \t\r\n");
              return Json(s.substr(a, b - a + 1));
            }
            if (m == "upper" || m == "lower") {
              return Json(change_case(std::move(s), m == "upper"));
            }
            if (m == "startswith" && !args.empty()) return Json(s.rfind(to_text(args[0](c)), 0) == 0);
            if (m == "endswith" && !args.empty()) {
              std::string t = to_text(args[0](c));
              return Json(s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0);
            }
            throw Error("chat template: unknown method '" + m + "'");
          };
        } else {
          value = [value, name](Context& c) {
            Json v = value(c);
            if (v.is_object() && v.contains(name.text)) return v[name.text];
            return undefined();
          };
        }
      } else if (accept_op("[")) {
        auto index = conditional();
        if (!accept_op("]")) syntax_error("expected ']'", offset_);
        value = [value, index](Context& c) {
          Json v = value(c), k = index(c);
          if (v.is_object() && k.is_string()) return v.contains(k.get<std::string>()) ? v[k.get<std::string>()] : undefined();
          if (v.is_array() && k.is_number_integer()) {
            int64_t i = k.get<int64_t>();
            if (i < 0) i += static_cast<int64_t>(v.size());
            if (i < 0 || i >= static_cast<int64_t>(v.size())) throw Error("chat template: index out of range");
            return v[i];
          }
          return undefined();
        };
      } else {
        return value;
      }
    }
  }
  Expr primary() {
    Token t = take();
    if (t.kind == Token::kString) { Json v = t.text; return [v](Context&) { return v; }; }
    if (t.kind == Token::kNumber) {
      Json v;
      try {
        v = t.text.find('.') == std::string::npos ? Json(std::stoll(t.text)) : Json(std::stod(t.text));
      } catch (const std::exception&) {
        syntax_error("bad number '" + t.text + "'", offset_);
      }
      return [v](Context&) { return v; };
    }
    if (t.kind == Token::kOp && t.text == "(") {
      auto e = conditional();
      if (!accept_op(")")) syntax_error("expected ')'", offset_);
      return e;
    }
    if (t.kind == Token::kOp && t.text == "[") {
      std::vector<Expr> items;
      if (!accept_op("]")) {
        do items.push_back(conditional()); while (accept_op(","));
        if (!accept_op("]")) syntax_error("expected ']'", offset_);
      }
      return [items](Context& c) { Json a = Json::array(); for (const auto& e : items) a.push_back(e(c)); return a; };
    }
    if (t.kind == Token::kName) {
      if (t.text == "true" || t.text == "True") return [](Context&) { return Json(true); };
      if (t.text == "false" || t.text == "False") return [](Context&) { return Json(false); };
      if (t.text == "none" || t.text == "None") return [](Context&) { return Json(nullptr); };
      if (t.text == "raise_exception" && accept_op("(")) {
        auto message = conditional();
        if (!accept_op(")")) syntax_error("expected ')'", offset_);
        return [message](Context& c) -> Json {
          throw Error("chat template raised: " + to_text(message(c)), "", "the messages do not fit the model's chat format");
        };
      }
      std::string name = t.text;
      return [name](Context& c) {
        const Json* v = c.lookup(name);
        return v ? *v : undefined();
      };
    }
    syntax_error("unexpected '" + t.text + "'", offset_);
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  size_t offset_;
  int max_depth_;
  int depth_ = 0;
};

}  // namespace

// ---- Statements ----------------------------------------------------------------------------------

struct Node {
  virtual ~Node() = default;
  virtual void render(Context& c, std::string& out) const = 0;
};

namespace {

void append_output(Context& c, std::string& out, const std::string& text) {
  if (out.size() + text.size() > c.limits.max_output_bytes) {
    throw Error("chat template: output exceeds " + std::to_string(c.limits.max_output_bytes) + " bytes");
  }
  out += text;
}

struct TextNode : Node {
  std::string text;
  void render(Context& c, std::string& out) const override { append_output(c, out, text); }
};
struct OutputNode : Node {
  Expr expr;
  void render(Context& c, std::string& out) const override { append_output(c, out, to_text(expr(c))); }
};
struct BlockNode : Node {
  std::vector<std::unique_ptr<Node>> children;
  void render(Context& c, std::string& out) const override {
    for (const auto& child : children) {
      c.tick();
      child->render(c, out);
    }
  }
};
struct IfNode : Node {
  std::vector<std::pair<Expr, std::unique_ptr<BlockNode>>> branches;
  std::unique_ptr<BlockNode> otherwise;
  void render(Context& c, std::string& out) const override {
    for (const auto& [cond, body] : branches) {
      if (truthy(cond(c))) {
        body->render(c, out);
        return;
      }
    }
    if (otherwise) otherwise->render(c, out);
  }
};
struct ForNode : Node {
  std::string var;
  Expr iterable;
  std::unique_ptr<BlockNode> body;
  void render(Context& c, std::string& out) const override {
    Json items = iterable(c);
    if (!items.is_array()) return;
    const size_t n = items.size();
    for (size_t i = 0; i < n; ++i) {
      if (++c.iterations > c.limits.max_loop_iterations) {
        throw Error("chat template: loops ran more than " + std::to_string(c.limits.max_loop_iterations) + " iterations");
      }
      c.tick();
      Json scope = Json::object();
      scope[var] = items[i];
      scope["loop"] = {{"index", i + 1}, {"index0", i}, {"first", i == 0}, {"last", i + 1 == n}, {"length", n},
                       {"revindex", n - i}, {"revindex0", n - i - 1}};
      c.scopes.push_back(scope);
      body->render(c, out);
      c.scopes.pop_back();
    }
  }
};
struct SetNode : Node {
  std::string var;
  Expr value;
  void render(Context& c, std::string&) const override { c.scopes.back()[var] = value(c); }
};

std::string first_word(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  size_t b = s.find_first_of(" \t\r\n", a);
  return s.substr(a, b == std::string::npos ? std::string::npos : b - a);
}
std::string after_first_word(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n");
  size_t b = s.find_first_of(" \t\r\n", a);
  return b == std::string::npos ? "" : s.substr(b);
}

class StatementParser {
 public:
  StatementParser(std::vector<Piece> pieces, const Limits& limits) : p_(std::move(pieces)), limits_(limits) {}
  std::unique_ptr<BlockNode> parse_block(const std::vector<std::string>& terminators, std::string* ended_by) {
    if (++depth_ > limits_.max_depth) {
      syntax_error("blocks nested deeper than " + std::to_string(limits_.max_depth), i_ < p_.size() ? p_[i_].offset : 0);
    }
    struct Leave {
      int& d;
      ~Leave() { --d; }
    } leave{depth_};
    auto block = std::make_unique<BlockNode>();
    while (i_ < p_.size()) {
      const Piece& piece = p_[i_];
      if (piece.kind == Piece::kText) {
        auto node = std::make_unique<TextNode>();
        node->text = piece.text;
        block->children.push_back(std::move(node));
        ++i_;
      } else if (piece.kind == Piece::kOutput) {
        auto node = std::make_unique<OutputNode>();
        ExprParser parser = expression(piece.text, piece.offset);
        node->expr = parser.parse();
        if (!parser.at_end()) syntax_error("unexpected '" + parser.peek().text + "'", piece.offset);
        block->children.push_back(std::move(node));
        ++i_;
      } else {
        std::string word = first_word(piece.text);
        for (const auto& t : terminators) {
          if (word == t) {
            if (ended_by) *ended_by = word;
            return block;
          }
        }
        ++i_;
        if (word == "if") {
          block->children.push_back(parse_if(piece));
        } else if (word == "for") {
          block->children.push_back(parse_for(piece));
        } else if (word == "set") {
          auto node = std::make_unique<SetNode>();
          ExprParser parser = expression(after_first_word(piece.text), piece.offset);
          node->var = parser.take().text;
          if (!parser.accept_op("=")) syntax_error("expected '=' in set", piece.offset);
          node->value = parser.parse();
          block->children.push_back(std::move(node));
        } else {
          syntax_error("unsupported statement '" + word + "'", piece.offset);
        }
      }
    }
    if (!terminators.empty()) syntax_error("missing {% " + terminators.back() + " %}", p_.empty() ? 0 : p_.back().offset);
    return block;
  }

 private:
  // A parser over one tag's expression, within the limits.
  ExprParser expression(const std::string& text, size_t offset) const {
    return ExprParser(lex(text, offset, limits_.max_tokens_per_tag), offset, limits_.max_depth);
  }
  std::unique_ptr<Node> parse_if(const Piece& head) {
    auto node = std::make_unique<IfNode>();
    ExprParser parser = expression(after_first_word(head.text), head.offset);
    Expr cond = parser.parse();
    while (true) {
      std::string ended;
      auto body = parse_block({"elif", "else", "endif"}, &ended);
      node->branches.push_back({cond, std::move(body)});
      const Piece& stop = p_[i_++];
      if (ended == "elif") {
        ExprParser next = expression(after_first_word(stop.text), stop.offset);
        cond = next.parse();
        continue;
      }
      if (ended == "else") {
        std::string end;
        node->otherwise = parse_block({"endif"}, &end);
        ++i_;
      }
      break;
    }
    return node;
  }
  std::unique_ptr<Node> parse_for(const Piece& head) {
    auto node = std::make_unique<ForNode>();
    ExprParser parser = expression(after_first_word(head.text), head.offset);
    node->var = parser.take().text;
    parser.expect_name("in");
    node->iterable = parser.parse();
    std::string ended;
    node->body = parse_block({"endfor"}, &ended);
    ++i_;
    return node;
  }

  std::vector<Piece> p_;
  size_t i_ = 0;
  const Limits& limits_;
  int depth_ = 0;
};

}  // namespace

Template::Template(std::string source, std::string name, Limits limits)
    : source_(std::move(source)), name_(std::move(name)), limits_(limits) {
  const std::string hint = "check the chat template (tokenizer_config.json's chat_template or the --chat-template file)";
  if (source_.size() > limits_.max_source_bytes) {
    throw Error("chat template of " + std::to_string(source_.size()) + " bytes is larger than the limit of " +
                    std::to_string(limits_.max_source_bytes), name_, hint);
  }
  try {
    StatementParser parser(split_template(source_), limits_);
    root_ = parser.parse_block({}, nullptr);
  } catch (const Error& e) {
    throw Error(e.message(), name_, hint);
  } catch (const std::exception& e) {  // e.g. std::bad_alloc, nlohmann's exceptions
    throw Error(std::string("chat template could not be parsed: ") + e.what(), name_, hint);
  }
}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const Json& context) const {
  Context c(limits_);
  c.scopes.push_back(context.is_object() ? context : Json::object());
  std::string out;
  try {
    root_->render(c, out);
  } catch (const Error& e) {
    throw Error(e.message(), name_, e.hint().empty() ? "the chat template failed on these messages" : e.hint());
  } catch (const std::exception& e) {  // nlohmann type errors on unexpected values, std::bad_alloc
    throw Error(std::string("chat template failed: ") + e.what(), name_, "the chat template failed on these messages");
  }
  return out;
}

}  // namespace phi::jinja
