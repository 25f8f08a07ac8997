#include "phi/data/quality_filters.h"

#include <algorithm>
#include <set>

#ifdef PHI_WITH_ICU
#include <unicode/uchar.h>
#include <unicode/utf8.h>
#endif

#include "data/unicode_classes.h"
#include "phi/core/error.h"
#include "phi/data/documents.h"

namespace phi {

#ifndef PHI_WITH_ICU
std::string gopher_quality(const std::string&, const GopherQualityOptions&) {
  throw Error("this build has no ICU: the quality filters are not available", "", "install libicu-dev and rebuild");
}
std::string c4_quality(std::string&, const C4QualityOptions&) {
  throw Error("this build has no ICU: the quality filters are not available", "", "install libicu-dev and rebuild");
}
int64_t count_sentences(const std::string&) {
  throw Error("this build has no ICU: the quality filters are not available", "", "install libicu-dev and rebuild");
}
#else

namespace {

std::vector<UChar32> code_points(const std::string& s) {
  std::vector<UChar32> out;
  int32_t i = 0;
  const auto n = static_cast<int32_t>(s.size());
  while (i < n) {
    UChar32 c;
    U8_NEXT(reinterpret_cast<const uint8_t*>(s.data()), i, n, c);
    out.push_back(c);
  }
  return out;
}

bool py_space(UChar32 c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);  // the ASCII ones
  return is_python_space(static_cast<char32_t>(c));
}

// Python's str.isalpha(): letters (Lu, Ll, Lt, Lm, Lo).
bool py_alpha(UChar32 c) {
  switch (u_charType(c)) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return true;
    default:
      return false;
  }
}

// Python's str.splitlines() boundaries.
bool py_line_break(UChar32 c) {
  return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 ||
         c == 0x2028 || c == 0x2029;
}

// datatrove's PUNCTUATION_SET: its punctuation list and its sentence-terminal punctuation
// (Unicode's Sentence_Terminal and five Khmer signs).
bool symbol_char(UChar32 c) {
  if (is_datatrove_punctuation(static_cast<char32_t>(c)) || u_hasBinaryProperty(c, UCHAR_S_TERM)) return true;
  return c == 0x17d4 || c == 0x17d5 || c == 0x17d6 || c == 0x17d9 || c == 0x17da;
}

using Word = std::vector<UChar32>;

std::vector<Word> split_words(const std::vector<UChar32>& text) {
  std::vector<Word> words;
  Word current;
  for (UChar32 c : text) {
    if (py_space(c)) {
      if (!current.empty()) words.push_back(std::move(current));
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  if (!current.empty()) words.push_back(std::move(current));
  return words;
}

std::vector<std::vector<UChar32>> split_lines(const std::vector<UChar32>& text) {
  std::vector<std::vector<UChar32>> lines;
  std::vector<UChar32> current;
  for (size_t i = 0; i < text.size(); ++i) {
    if (py_line_break(text[i])) {
      lines.push_back(std::move(current));
      current.clear();
      if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else {
      current.push_back(text[i]);
    }
  }
  if (!current.empty()) lines.push_back(std::move(current));
  return lines;
}

// Non-overlapping occurrences, as str.count.
size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + what.size())) ++n;
  return n;
}

bool starts_with(const std::vector<UChar32>& line, UChar32 c) {
  auto it = std::find_if(line.begin(), line.end(), [](UChar32 x) { return !py_space(x); });
  return it != line.end() && *it == c;
}

bool ends_with_ellipsis(const std::vector<UChar32>& line) {
  auto end = line.size();
  while (end > 0 && py_space(line[end - 1])) --end;
  if (end >= 1 && line[end - 1] == 0x2026) return true;
  return end >= 3 && line[end - 1] == '.' && line[end - 2] == '.' && line[end - 3] == '.';
}

std::string to_utf8(const Word& w) {
  std::string out;
  for (UChar32 c : w) {
    uint8_t buf[4];
    int32_t len = 0;
    U8_APPEND_UNSAFE(buf, len, c);  // c came from valid UTF-8
    out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(len));
  }
  return out;
}

using Line = std::vector<UChar32>;

Line strip(const Line& line) {
  size_t b = 0, e = line.size();
  while (b < e && py_space(line[b])) ++b;
  while (e > b && py_space(line[e - 1])) --e;
  return Line(line.begin() + static_cast<std::ptrdiff_t>(b), line.begin() + static_cast<std::ptrdiff_t>(e));
}

bool has_prefix_at(const Line& line, size_t i, const char* ascii) {
  for (size_t k = 0; ascii[k]; ++k) {
    if (i + k >= line.size() || line[i + k] != static_cast<UChar32>(ascii[k])) return false;
  }
  return true;
}

// datatrove's CITATION_REGEX, \[\d*]|\[edit]|\[citation needed], removed as re.sub does (\d: Unicode
// decimal digits).
Line remove_citations(const Line& line) {
  Line out;
  size_t i = 0;
  while (i < line.size()) {
    if (line[i] == '[') {
      size_t j = i + 1;
      while (j < line.size() && u_charType(line[j]) == U_DECIMAL_DIGIT_NUMBER) ++j;
      if (j < line.size() && line[j] == ']') {
        i = j + 1;
        continue;
      }
      if (has_prefix_at(line, i, "[edit]")) {
        i += 6;
        continue;
      }
      if (has_prefix_at(line, i, "[citation needed]")) {
        i += 17;
        continue;
      }
    }
    out.push_back(line[i++]);
  }
  return out;
}

// str.lower() as far as ASCII substrings can tell: the only non-ASCII characters whose lower case
// holds an ASCII letter are KELVIN SIGN (k) and LATIN CAPITAL I WITH DOT (i + U+0307).
std::string lower_for_matching(const Line& line) {
  std::string out;
  for (UChar32 c : line) {
    if (c < 0x80) {
      out += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    } else if (c == 0x212A) {
      out += 'k';
    } else if (c == 0x130) {
      out += "i\xCC\x87";
    } else {
      out += '\x7F';  // stands for any other character: no pattern holds it
    }
  }
  return out;
}

bool is_sentence_end(UChar32 c) { return c == '.' || c == '!' || c == '?'; }
bool is_closer(UChar32 c) { return c == '"' || c == '\'' || c == ')' || c == ']' || c == 0x201D || c == 0x2019; }

int64_t count_sentences(const Line& line) {
  int64_t sentences = 1;
  size_t i = 0;
  while (i < line.size()) {
    if (!is_sentence_end(line[i])) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < line.size() && (is_sentence_end(line[j]) || is_closer(line[j]))) ++j;
    size_t k = j;
    while (k < line.size() && py_space(line[k])) ++k;
    if (k > j && k < line.size() && !u_hasBinaryProperty(line[k], UCHAR_LOWERCASE)) ++sentences;
    i = j;
  }
  return sentences;
}

}  // namespace

int64_t count_sentences(const std::string& text) { return count_sentences(strip(code_points(text))); }

std::string c4_quality(std::string& text, const C4QualityOptions& o) {
  if (!valid_utf8(text)) throw Error("text is not valid UTF-8");
  static const char* const kPolicy[] = {"terms of use", "privacy policy", "cookie policy",
                                        "uses cookies", "use of cookies", "use cookies"};
  int64_t sentences = 0;
  std::vector<Line> kept;
  for (const auto& raw : split_lines(code_points(text))) {
    Line line = strip(raw);
    // Words (str.split): how many, and the longest in code points.
    int64_t n_words = 0, longest = 0, current = 0;
    for (UChar32 c : line) {
      if (py_space(c)) {
        current = 0;
      } else {
        n_words += current == 0 ? 1 : 0;
        longest = std::max(longest, ++current);
      }
    }
    if (o.max_word_length > 0 && longest > o.max_word_length) continue;
    if (o.remove_citations) line = remove_citations(line);
    if (o.filter_no_terminal_punct) {
      const bool terminal =
          !line.empty() && (is_sentence_end(line.back()) || line.back() == '"' || line.back() == '\'');
      const bool ellipsis = line.size() >= 3 && line[line.size() - 1] == '.' && line[line.size() - 2] == '.' &&
                            line[line.size() - 3] == '.';
      if (!terminal || ellipsis) continue;
    }
    if (o.min_words_per_line > 0 && n_words < o.min_words_per_line) continue;
    const auto lower = lower_for_matching(line);
    if (o.filter_lorem_ipsum && lower.find("lorem ipsum") != std::string::npos) return "lorem_ipsum";
    if (o.filter_javascript && lower.find("javascript") != std::string::npos) continue;
    if (o.filter_curly_bracket && std::find(line.begin(), line.end(), '{') != line.end()) return "curly_bracket";
    if (o.filter_policy && std::any_of(std::begin(kPolicy), std::end(kPolicy),
                                       [&](const char* p) { return lower.find(p) != std::string::npos; })) {
      continue;
    }
    if (o.min_num_sentences > 0) sentences += count_sentences(line);
    kept.push_back(std::move(line));
  }
  if (o.min_num_sentences > 0 && sentences < o.min_num_sentences) return "too_few_sentences";
  Line joined;
  for (size_t i = 0; i < kept.size(); ++i) {
    if (i) joined.push_back('\n');
    joined.insert(joined.end(), kept[i].begin(), kept[i].end());
  }
  text = to_utf8(strip(joined));
  return "";
}

std::string gopher_quality(const std::string& text, const GopherQualityOptions& o) {
  if (!valid_utf8(text)) throw Error("text is not valid UTF-8");
  const auto chars = code_points(text);
  const auto words = split_words(chars);
  const double n_words = static_cast<double>(words.size());
  std::vector<const Word*> non_symbol;
  for (const auto& w : words) {
    if (std::any_of(w.begin(), w.end(), [](UChar32 c) { return !symbol_char(c); })) non_symbol.push_back(&w);
  }
  const auto n_non_symbol = static_cast<int64_t>(non_symbol.size());
  if (o.min_doc_words > 0 && n_non_symbol < o.min_doc_words) return "gopher_short_doc";
  if (o.max_doc_words > 0 && n_non_symbol > o.max_doc_words) return "gopher_long_doc";
  double total_length = 0;
  for (const auto* w : non_symbol) total_length += static_cast<double>(w->size());
  const double average = total_length / static_cast<double>(non_symbol.size());
  if (o.min_avg_word_length > 0 && average < o.min_avg_word_length) return "gopher_below_avg_threshold";
  if (o.max_avg_word_length > 0 && average > o.max_avg_word_length) return "gopher_above_avg_threshold";
  if (o.max_symbol_word_ratio > 0) {
    if (static_cast<double>(count_of(text, "#")) / n_words > o.max_symbol_word_ratio) return "gopher_too_many_hashes";
    const double ellipses = static_cast<double>(count_of(text, "...") + count_of(text, "\xE2\x80\xA6"));
    if (ellipses / n_words > o.max_symbol_word_ratio) return "gopher_too_many_ellipsis";
  }
  const auto lines = split_lines(chars);
  const double n_lines = static_cast<double>(lines.size());
  if (o.max_bullet_lines_ratio > 0) {
    double bullets = 0;
    for (const auto& line : lines) bullets += starts_with(line, 0x2022) || starts_with(line, '-');
    if (bullets / n_lines > o.max_bullet_lines_ratio) return "gopher_too_many_bullets";
  }
  if (o.max_ellipsis_lines_ratio > 0) {
    double ending = 0;
    for (const auto& line : lines) ending += ends_with_ellipsis(line);
    if (ending / n_lines > o.max_ellipsis_lines_ratio) return "gopher_too_many_end_ellipsis";
  }
  if (o.max_non_alpha_words_ratio > 0) {
    double alpha = 0;
    for (const auto& w : words) alpha += std::any_of(w.begin(), w.end(), py_alpha);
    if (alpha / n_words < o.max_non_alpha_words_ratio) return "gopher_below_alpha_threshold";
  }
  if (o.min_stop_words > 0) {
    std::set<std::string> found;
    for (const auto& w : words) {
      const auto s = to_utf8(w);
      if (std::find(o.stop_words.begin(), o.stop_words.end(), s) != o.stop_words.end()) found.insert(s);
    }
    if (static_cast<int64_t>(found.size()) < o.min_stop_words) return "gopher_enough_stop_words";
  }
  return "";
}

#endif

}  // namespace phi
