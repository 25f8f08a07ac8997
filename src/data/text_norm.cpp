#include "phi/data/text_norm.h"

#include <algorithm>
#include <array>

#ifdef PHI_WITH_ICU
#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#endif

#include "data/unicode_classes.h"
#include "phi/core/error.h"
#include "phi/data/documents.h"

namespace phi {

bool text_normalization_available() {
#ifdef PHI_WITH_ICU
  return true;
#else
  return false;
#endif
}

std::vector<std::string_view> split_words(const std::string& simplified) {
  std::vector<std::string_view> words;
  size_t start = 0;
  const std::string_view s(simplified);
  while (start < s.size()) {
    size_t end = s.find(' ', start);
    if (end == std::string_view::npos) end = s.size();
    if (end > start) words.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return words;
}

#ifndef PHI_WITH_ICU
std::string simplify_text(const std::string&) {
  throw Error("this build has no ICU: text normalisation for deduplication is not available", "",
              "install libicu-dev and rebuild");
}
#else

namespace {

constexpr char32_t kPunctuation[] = {
    U'!',      U'/',      U'\u2014', U'\u201d', U':',      U'\uff05', U'\uff11', U'\u3008', U'&',      U'(',
    U'\u3001', U'\u2501', U'\\',     U'\u3010', U'#',      U'%',      U'\u300c', U'\u300d', U'\uff0c', U'\u3011',
    U'\uff1b', U'+',      U'^',      U']',      U'~',      U'\u201c', U'\u300a', U'\u201e', U'\'',     U';',
    U'\u2019', U'{',      U'|',      U'\u2236', U'\u00b4', U'[',      U'=',      U'-',      U'`',      U'*',
    U'\uff0e', U'\uff08', U'\u2013', U'\uff1f', U'\uff01', U'\uff1a', U'$',      U'\uff5e', U'\u00ab', U'\u3009',
    U',',      U'>',      U'<',      U'\u300b', U')',      U'?',      U'\uff09', U'\u3002', U'\u2026', U'@',
    U'_',      U'.',      U'"',      U'}',      U'\u25ba', U'\u00bb'};

bool is_decimal_digit(UChar32 c) { return u_charType(c) == U_DECIMAL_DIGIT_NUMBER; }

bool is_decimal_separator(UChar32 c) {
  return c == U'.' || c == U',' || c == 0x060C || c == 0x066B || c == 0x2396 || c == 0x2397 || c == 0x2398;
}

}  // namespace

bool is_datatrove_punctuation(char32_t c) {
  // Below 160 (every character of most text) a table: the listed ones and the control characters
  // 0-8, 11-31 and 127-159 (tab and newline are whitespace). Above it, the list.
  static const auto low = [] {
    std::array<bool, 160> table{};
    for (char32_t x = 0; x < 160; ++x) table[x] = x < 9 || (x >= 11 && x < 32) || x >= 127;
    for (char32_t x : kPunctuation) {
      if (x < 160) table[x] = true;
    }
    return table;
  }();
  if (c < 160) return low[c];
  return std::find(std::begin(kPunctuation), std::end(kPunctuation), c) != std::end(kPunctuation);
}

bool is_python_space(char32_t c) {
  const auto u = static_cast<UChar32>(c);
  if (u_charType(u) == U_SPACE_SEPARATOR) return true;
  const auto dir = u_charDirection(u);
  return dir == U_WHITE_SPACE_NEUTRAL || dir == U_BLOCK_SEPARATOR || dir == U_SEGMENT_SEPARATOR;
}

namespace {

// simplify_text for ASCII text, without ICU's conversions: lower case, digit runs (with one
// separator) to "0", datatrove's punctuation (every ASCII control character but tab and newline
// among it) to spaces, whitespace runs to one space, stripped; NFD changes no ASCII character.
std::string simplify_ascii(const std::string& text) {
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  std::string out;
  out.reserve(text.size());
  bool pending_space = false;
  auto put = [&](char c) {
    if (pending_space && !out.empty()) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  };
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const char c = text[i];
    if (digit(c)) {
      size_t j = i + 1;
      while (j < n && digit(text[j])) ++j;
      if (j + 1 < n && (text[j] == '.' || text[j] == ',') && digit(text[j + 1])) {
        j += 2;
        while (j < n && digit(text[j])) ++j;
      }
      put('0');
      i = j;
      continue;
    }
    ++i;
    const auto u = static_cast<unsigned char>(c);
    if (is_datatrove_punctuation(u) || u == ' ' || u == '\t' || u == '\n') {
      pending_space = true;  // a space, a tab, a newline, or punctuation made a space
      continue;
    }
    put(u >= 'A' && u <= 'Z' ? static_cast<char>(u + 32) : c);
  }
  return out;
}

}  // namespace

std::string simplify_text(const std::string& text) {
  if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; })) {
    return simplify_ascii(text);
  }
  if (!valid_utf8(text)) throw Error("text is not valid UTF-8", "", "the input must be UTF-8");
  icu::UnicodeString s = icu::UnicodeString::fromUTF8(text);
  s.toLower(icu::Locale::getRoot());
  // Digits: each run (with one decimal separator between runs) becomes "0"; punctuation becomes a
  // space.
  icu::UnicodeString t;
  const int32_t n = s.length();
  for (int32_t i = 0; i < n;) {
    const UChar32 c = s.char32At(i);
    if (is_decimal_digit(c)) {
      int32_t j = s.moveIndex32(i, 1);
      while (j < n && is_decimal_digit(s.char32At(j))) j = s.moveIndex32(j, 1);
      if (j < n && is_decimal_separator(s.char32At(j))) {
        const int32_t k = s.moveIndex32(j, 1);
        if (k < n && is_decimal_digit(s.char32At(k))) {
          j = k;
          while (j < n && is_decimal_digit(s.char32At(j))) j = s.moveIndex32(j, 1);
        }
      }
      t.append(static_cast<UChar>(u'0'));
      i = j;
      continue;
    }
    t.append(is_datatrove_punctuation(static_cast<char32_t>(c)) ? static_cast<UChar32>(U' ') : c);
    i = s.moveIndex32(i, 1);
  }
  // Whitespace: stripped at both ends, runs become one space.
  icu::UnicodeString w;
  bool pending_space = false;
  for (int32_t i = 0; i < t.length(); i = t.moveIndex32(i, 1)) {
    const UChar32 c = t.char32At(i);
    if (is_python_space(static_cast<char32_t>(c))) {
      pending_space = !w.isEmpty();
      continue;
    }
    if (pending_space) w.append(static_cast<UChar>(u' '));
    pending_space = false;
    w.append(c);
  }
  // NFD, combining marks (category Mn) removed, stripped again.
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfd = icu::Normalizer2::getNFDInstance(status);
  if (U_FAILURE(status)) throw Error(std::string("ICU has no NFD normaliser: ") + u_errorName(status));
  icu::UnicodeString d = nfd->normalize(w, status);
  if (U_FAILURE(status)) throw Error(std::string("NFD normalisation failed: ") + u_errorName(status));
  icu::UnicodeString out;
  for (int32_t i = 0; i < d.length(); i = d.moveIndex32(i, 1)) {
    const UChar32 c = d.char32At(i);
    if (u_charType(c) != U_NON_SPACING_MARK) out.append(c);
  }
  // Python's strip() removes its whitespace at both ends.
  int32_t begin = 0, end = out.length();
  while (begin < end && is_python_space(static_cast<char32_t>(out.char32At(begin)))) begin = out.moveIndex32(begin, 1);
  while (end > begin) {
    const int32_t prev = out.moveIndex32(end, -1);
    if (!is_python_space(static_cast<char32_t>(out.char32At(prev)))) break;
    end = prev;
  }
  std::string result;
  out.tempSubStringBetween(begin, end).toUTF8String(result);
  return result;
}

#endif

}  // namespace phi
