#include "phi/data/code_filters.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <string_view>
#include <utility>

#ifdef PHI_WITH_ICU
#include <unicode/uchar.h>
#endif

#include "phi/core/error.h"
#include "phi/data/documents.h"

namespace phi {

namespace {

// The code point at s[i], advancing i (the text is valid UTF-8).
uint32_t next_code_point(const std::string& s, size_t& i) {
  const auto b = static_cast<unsigned char>(s[i]);
  const int length = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
  uint32_t c = length == 1 ? b : b & (0x7F >> length);
  for (int k = 1; k < length && i + static_cast<size_t>(k) < s.size(); ++k) {
    c = (c << 6) | (static_cast<unsigned char>(s[i + static_cast<size_t>(k)]) & 0x3F);
  }
  i += static_cast<size_t>(length);
  return c;
}

// Python's str.isalnum() for one code point: letters and numbers.
bool py_alnum(uint32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
#ifdef PHI_WITH_ICU
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & (U_GC_L_MASK | U_GC_N_MASK)) != 0;
#else
  return true;
#endif
}

bool identifier_char(uint32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
#ifdef PHI_WITH_ICU
  return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_XID_CONTINUE) != 0;
#else
  return true;
#endif
}

std::string hex(uint32_t c) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "U+%04X", c);
  return buffer;
}

class PythonLexer {
 public:
  explicit PythonLexer(const std::string& s) : s_(s) {}

  std::string run() {
    try {
      lex();
    } catch (const std::pair<int64_t, std::string>& e) {
      return "line " + std::to_string(e.first) + ": " + e.second;
    }
    return "";
  }

 private:
  [[noreturn]] void fail(const std::string& what, int64_t line = 0) const {
    throw std::make_pair(line ? line : line_, what);
  }

  bool at(size_t i, char c) const { return i < s_.size() && s_[i] == c; }

  void newline() {
    if (s_[pos_] == '\r' && at(pos_ + 1, '\n')) ++pos_;
    ++pos_;
    ++line_;
  }

  // Indentation of a new logical line; false when the line is blank or a comment.
  bool indentation() {
    int64_t col = 0, alt = 0;
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c == ' ') {
        ++col;
        ++alt;
      } else if (c == '\t') {
        col = (col / 8 + 1) * 8;
        ++alt;
      } else if (c == '\f') {
        col = alt = 0;
      } else {
        break;
      }
      ++pos_;
    }
    if (pos_ >= s_.size()) return false;
    const char c = s_[pos_];
    if (c == '\n' || c == '\r') {
      newline();
      return false;
    }
    if (c == '#') {
      while (pos_ < s_.size() && s_[pos_] != '\n' && s_[pos_] != '\r') ++pos_;
      if (pos_ < s_.size()) newline();
      return false;
    }
    if (c == '\\' && (at(pos_ + 1, '\n') || at(pos_ + 1, '\r'))) return true;  // handled as a continuation
    const auto [top, top_alt] = indents_.back();
    if (block_expected_) {
      if (col <= top) fail("expected an indented block after line " + std::to_string(block_line_));
      if (alt <= top_alt) fail("inconsistent use of tabs and spaces in indentation");
      indents_.emplace_back(col, alt);
    } else if (col > top) {
      fail("unexpected indent");
    } else {
      if (col == top && alt != top_alt) fail("inconsistent use of tabs and spaces in indentation");
      while (col < indents_.back().first) indents_.pop_back();
      if (col != indents_.back().first) fail("unindent does not match any outer indentation level");
      if (alt != indents_.back().second) fail("inconsistent use of tabs and spaces in indentation");
    }
    block_expected_ = false;
    return true;
  }

  void string_literal(bool raw) {
    (void)raw;  // a backslash escapes the next character in raw strings too, for where they end
    const char q = s_[pos_];
    const int64_t start_line = line_;
    const bool triple = at(pos_ + 1, q) && at(pos_ + 2, q);
    pos_ += triple ? 3 : 1;
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c == '\\') {
        if (at(pos_ + 1, '\n') || at(pos_ + 1, '\r')) {
          ++pos_;
          newline();
        } else {
          pos_ += 2;
        }
        continue;
      }
      if (c == '\n' || c == '\r') {
        if (!triple) fail("unterminated string literal", start_line);
        newline();
        continue;
      }
      if (c == q && (!triple || (at(pos_ + 1, q) && at(pos_ + 2, q)))) {
        pos_ += triple ? 3 : 1;
        return;
      }
      ++pos_;
    }
    fail(triple ? "unterminated triple-quoted string literal" : "unterminated string literal", start_line);
  }

  void lex() {
    if (s_.find('\0') != std::string::npos) fail("source code cannot contain null bytes", 1);
    bool line_start = true, tokens = false, colon = false;
    while (pos_ < s_.size()) {
      if (line_start && brackets_.empty()) {
        if (!indentation()) continue;
        line_start = false;
        tokens = colon = false;
        if (pos_ >= s_.size()) break;
      }
      const char c = s_[pos_];
      if (c == '#') {
        while (pos_ < s_.size() && s_[pos_] != '\n' && s_[pos_] != '\r') ++pos_;
        continue;
      }
      if (c == '\n' || c == '\r') {
        const int64_t ending = line_;
        newline();
        if (brackets_.empty()) {
          if (tokens && colon) {
            block_expected_ = true;
            block_line_ = ending;
          }
          line_start = true;
        }
        continue;
      }
      if (c == ' ' || c == '\t' || c == '\f') {
        ++pos_;
        continue;
      }
      if (c == '\\') {
        if (at(pos_ + 1, '\n') || at(pos_ + 1, '\r')) {
          ++pos_;
          newline();
          continue;
        }
        if (pos_ + 1 >= s_.size()) fail("unexpected end of file after line continuation character");
        fail("unexpected character after line continuation character");
      }
      tokens = true;
      colon = false;
      if (c == '"' || c == '\'') {
        string_literal(false);
        continue;
      }
      if (c == '(' || c == '[' || c == '{') {
        brackets_.emplace_back(c, line_);
        ++pos_;
        continue;
      }
      if (c == ')' || c == ']' || c == '}') {
        const char open = c == ')' ? '(' : c == ']' ? '[' : '{';
        if (brackets_.empty()) fail(std::string("unmatched '") + c + "'");
        if (brackets_.back().first != open) {
          fail(std::string("closing parenthesis '") + c + "' does not match opening parenthesis '" +
               brackets_.back().first + "' on line " + std::to_string(brackets_.back().second));
        }
        brackets_.pop_back();
        ++pos_;
        continue;
      }
      if (c == ':') {
        if (at(pos_ + 1, '=')) {
          pos_ += 2;
        } else {
          colon = true;
          ++pos_;
        }
        continue;
      }
      if (std::string_view("+-*/%@&|^~<>=.,;!").find(c) != std::string_view::npos) {
        ++pos_;
        continue;
      }
      const auto u = static_cast<unsigned char>(c);
      if (u >= 0x80 || identifier_char(u)) {
        // A name or a number; a string prefix (r, b, u, f, t and their pairs) right before a quote.
        const size_t begin = pos_;
        while (pos_ < s_.size()) {
          size_t j = pos_;
          const uint32_t cp = next_code_point(s_, j);
          if (!identifier_char(cp)) {
            if (pos_ == begin) fail("invalid character '" + s_.substr(pos_, j - pos_) + "' (" + hex(cp) + ")");
            break;
          }
          pos_ = j;
        }
        if (pos_ < s_.size() && (s_[pos_] == '"' || s_[pos_] == '\'') && pos_ - begin <= 2) {
          std::string prefix = s_.substr(begin, pos_ - begin);
          for (auto& ch : prefix) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          static const char* const kPrefixes[] = {"r", "u", "b", "f", "t", "br", "rb", "fr", "rf", "tr", "rt"};
          if (std::any_of(std::begin(kPrefixes), std::end(kPrefixes), [&](const char* p) { return prefix == p; })) {
            string_literal(prefix.find('r') != std::string::npos);
          }
        }
        continue;
      }
      fail(std::string("invalid character '") + c + "' (" + hex(u) + ")");
    }
    if (!brackets_.empty()) {
      fail(std::string("'") + brackets_.back().first + "' was never closed", brackets_.back().second);
    }
    if (block_expected_ || (!line_start && colon)) {
      fail("expected an indented block after line " + std::to_string(block_expected_ ? block_line_ : line_));
    }
  }

  const std::string& s_;
  size_t pos_ = 0;
  int64_t line_ = 1;
  std::vector<std::pair<int64_t, int64_t>> indents_{{0, 0}};  // columns with tabs to 8 and to 1
  std::vector<std::pair<char, int64_t>> brackets_;
  bool block_expected_ = false;
  int64_t block_line_ = 0;
};

}  // namespace

std::string python_syntax_error(const std::string& source) {
  if (!valid_utf8(source)) return "line 1: source is not valid UTF-8";
  return PythonLexer(source).run();
}

std::string code_quality(const std::string& text, const CodeFilterOptions& o) {
  if (!valid_utf8(text)) throw Error("text is not valid UTF-8");
  int64_t chars = 0, alnum = 0, lines = 0, line_length = 0, longest = 0, total_line_chars = 0;
  std::vector<std::string> head;  // the first lines, lower-cased ASCII
  std::string current;
  auto end_line = [&]() {
    ++lines;
    longest = std::max(longest, line_length);
    total_line_chars += line_length;
    if (static_cast<int64_t>(head.size()) < o.autogenerated_lines) head.push_back(current);
    line_length = 0;
    current.clear();
  };
  size_t i = 0;
  while (i < text.size()) {
    const size_t at = i;
    const uint32_t c = next_code_point(text, i);
    ++chars;
    alnum += py_alnum(c) ? 1 : 0;
    if (c == '\n' || c == '\r') {
      if (c == '\r' && i < text.size() && text[i] == '\n') {
        ++i;
        ++chars;
      }
      end_line();
      continue;
    }
    ++line_length;
    if (static_cast<int64_t>(head.size()) < o.autogenerated_lines) {
      for (size_t k = at; k < i; ++k) current += static_cast<char>(std::tolower(static_cast<unsigned char>(text[k])));
    }
  }
  if (line_length > 0) end_line();
  if (o.min_chars > 0 && chars < o.min_chars) return "code_too_short";
  if (o.max_chars > 0 && chars > o.max_chars) return "code_too_long";
  if (o.max_line_length > 0 && longest > o.max_line_length) return "code_long_line";
  if (o.max_mean_line_length > 0 && lines > 0 &&
      static_cast<double>(total_line_chars) / static_cast<double>(lines) > o.max_mean_line_length) {
    return "code_mean_line_length";
  }
  if (o.min_alphanumeric_fraction > 0 && chars > 0 &&
      static_cast<double>(alnum) / static_cast<double>(chars) < o.min_alphanumeric_fraction) {
    return "code_alphanumeric_fraction";
  }
  for (const auto& line : head) {
    for (const auto& marker : o.autogenerated_markers) {
      if (line.find(marker) != std::string::npos) return "code_autogenerated";
    }
  }
  if (o.python && !python_syntax_error(text).empty()) return "code_python_syntax";
  return "";
}

}  // namespace phi
