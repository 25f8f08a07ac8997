// UTF-8 helpers shared by the tokenizers.
#pragma once

#include <cstdint>
#include <cstddef>
#include <string>
#include <string_view>

namespace phi::utf8 {

/// Offset of the first invalid byte, or npos when `text` is valid UTF-8.
size_t find_invalid(std::string_view text);
/// Throws phi::Error naming the offset of the first invalid byte.
void require_valid(std::string_view text, const char* what);
/// Replaces invalid sequences by U+FFFD (one per maximal invalid subpart).
std::string sanitize(std::string_view bytes);
/// True when `text` ends inside a multi-byte character (a prefix of a valid sequence).
bool ends_incomplete(std::string_view text);
/// Appends the UTF-8 encoding of `code_point`.
void append(std::string& out, uint32_t code_point);

}  // namespace phi::utf8
