// Character classes the data stages share, as the Python tools they are compared with define
// them. Defined in text_norm.cpp in builds with ICU (PHI_WITH_ICU) only.
#pragma once

namespace phi {

/// datatrove's punctuation list (its utils/text.py PUNCTUATION): ASCII punctuation, control
/// characters, and the CJK / typographic marks common in web text.
bool is_datatrove_punctuation(char32_t c);

/// Python's str.isspace(), which its \s and str.split() use: bidirectional class WS, B or S, or
/// category Zs.
bool is_python_space(char32_t c);

}  // namespace phi
