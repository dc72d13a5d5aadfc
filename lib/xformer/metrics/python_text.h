// Python's str semantics on UTF-8 bytes, for metrics that must count what sacreBLEU counts
// (it works on Python strings: code points, and str.isspace()'s idea of whitespace).
#pragma once
#include <cstddef>
#include <string_view>

namespace xformer::metrics {

// Byte length of the whitespace character starting at s[i] (Python's str.isspace() set: ASCII
// whitespace, U+001C..U+001F, NBSP, U+1680, U+2000..U+200A, U+2028/9, U+202F, U+205F, U+3000),
// or 0 if s[i] does not start one.
size_t whitespace_len(std::string_view s, size_t i);

// Byte length of the code point starting at s[i]: 1..4 for well-formed UTF-8; a byte that
// does not start a well-formed sequence counts as one character of its own.
size_t code_point_len(std::string_view s, size_t i);

}  // namespace xformer::metrics
