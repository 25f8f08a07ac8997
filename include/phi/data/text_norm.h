// Text normalisation for deduplication and decontamination, the same as datatrove's
// simplify_text with its default settings, so that signatures and matches are comparable with it:
// lower case (Unicode, full mappings), every run of decimal digits (with one decimal separator)
// becomes "0", datatrove's punctuation set becomes spaces, whitespace runs become one space, and
// the text is decomposed (NFD) with its combining marks removed. Needs ICU (Debian libicu-dev).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace phi {

/// Whether this build has ICU (without it simplify_text throws phi::Error saying so).
bool text_normalization_available();

/// UTF-8 in and out; invalid UTF-8 is an error.
std::string simplify_text(const std::string& text);

/// The words of a simplified text (split on its single spaces).
std::vector<std::string_view> split_words(const std::string& simplified);

}  // namespace phi
