#pragma once
// Stable 64-bit hashes for seeds, word tables and data splits: std::hash may differ between
// library versions and runs, these never do.

#include <cstdint>
#include <string_view>

namespace tldr {

/// FNV-1a 64 of the bytes of s.
constexpr std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 14695981039346656037ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

/// splitmix64's finaliser: spreads weak low bits (FNV's) and mixes in a seed added beforehand.
constexpr std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace tldr
