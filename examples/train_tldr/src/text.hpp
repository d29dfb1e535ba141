#pragma once
// ASCII character classes for the text the pipeline reads (locale-free), shared by the oracle,
// its attacks and the data reader.

namespace tldr::text {

/// ' ', '\t', '\n', '\r', '\f', '\v': isspace in the "C" locale.
inline bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/// [A-Za-z0-9]: isalnum in the "C" locale.
inline bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

}  // namespace tldr::text
