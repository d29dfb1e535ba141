#include "metrics.hpp"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fail.hpp"

namespace tldr {
namespace {

// The length of the well-formed UTF-8 sequence at p (Unicode's table 3-7), or 0 when the byte
// at p does not start one; cp gets the code point.
std::size_t decode_utf8(const unsigned char* p, const unsigned char* end, char32_t& cp) {
  const unsigned char b = p[0];
  const std::size_t left = static_cast<std::size_t>(end - p);
  auto cont = [&](std::size_t i, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return i < left && p[i] >= lo && p[i] <= hi;
  };
  if (b < 0x80) {
    cp = b;
    return 1;
  }
  if (b >= 0xC2 && b <= 0xDF) {
    if (!cont(1)) return 0;
    cp = (char32_t{b} & 0x1F) << 6 | (p[1] & 0x3F);
    return 2;
  }
  if (b >= 0xE0 && b <= 0xEF) {
    const unsigned char lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
    if (!cont(1, lo, hi) || !cont(2)) return 0;
    cp = (char32_t{b} & 0x0F) << 12 | char32_t{p[1] & 0x3Fu} << 6 | (p[2] & 0x3F);
    return 3;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    const unsigned char lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
    if (!cont(1, lo, hi) || !cont(2) || !cont(3)) return 0;
    cp = (char32_t{b} & 0x07) << 18 | char32_t{p[1] & 0x3Fu} << 12 | char32_t{p[2] & 0x3Fu} << 6 | (p[3] & 0x3F);
    return 4;
  }
  return 0;
}

// The characters of text as the header defines them: code points, an invalid byte b as
// U+DC00 + b. f(code point) for each.
template <class F>
void for_each_char(std::string_view text, F&& f) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    char32_t cp;
    const std::size_t len = decode_utf8(p, end, cp);
    if (len == 0) {
      f(char32_t{0xDC00u + *p});
      ++p;
    } else {
      f(cp);
      p += len;
    }
  }
}

// Python's str.isspace(), which is what str.split() splits on.
bool is_python_space(char32_t c) {
  if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
  switch (c) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

// ---- ROUGE-L ----

// Tokens packed in one buffer: token k is chars[ends[k - 1], ends[k]) (ends[-1] = 0).
struct token_list {
  std::string chars;
  std::vector<std::uint32_t> ends;

  std::size_t size() const { return ends.size(); }
  std::string_view operator[](std::size_t k) const {
    const std::uint32_t begin = k == 0 ? 0 : ends[k - 1];
    return std::string_view(chars).substr(begin, ends[k] - begin);
  }
};

void tokenize_into(std::string_view text, token_list& out) {
  out.chars.clear();
  out.ends.clear();
  bool open = false;
  auto add = [&](char c) {
    out.chars += c;
    open = true;
  };
  auto close = [&] {
    if (open) out.ends.push_back(static_cast<std::uint32_t>(out.chars.size()));
    open = false;
  };
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    const unsigned char b = *p;
    if (b < 0x80) {  // the common case, without decoding
      if ((b >= 'a' && b <= 'z') || (b >= '0' && b <= '9')) {
        add(static_cast<char>(b));
      } else if (b >= 'A' && b <= 'Z') {
        add(static_cast<char>(b - 'A' + 'a'));
      } else {
        close();
      }
      ++p;
      continue;
    }
    char32_t cp = 0;
    const std::size_t len = decode_utf8(p, end, cp);
    p += len == 0 ? 1 : len;
    if (len != 0 && cp == 0x212A) {  // KELVIN SIGN lowercases to k
      add('k');
    } else if (len != 0 && cp == 0x130) {  // İ lowercases to i + U+0307, which separates
      add('i');
      close();
    } else {
      close();
    }
  }
  close();
}

std::size_t lcs_length(const token_list& a, const token_list& b) {
  thread_local std::vector<std::uint32_t> row;
  row.assign(b.size() + 1, 0);
  for (std::size_t i = 0; i < a.size(); ++i) {
    const std::string_view ai = a[i];
    std::uint32_t diagonal = 0;  // row[j - 1] of the previous row
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::uint32_t above = row[j];
      row[j] = ai == b[j - 1] ? diagonal + 1 : std::max(above, row[j - 1]);
      diagonal = above;
    }
  }
  return row[b.size()];
}

// ---- chrF ----

constexpr int chrf_order = 6;
constexpr double chrf_beta_squared = 4.0;  // beta = 2

struct order_counts {
  std::size_t candidate = 0, reference = 0, matches = 0;
};

// The characters of text without its whitespace.
void chrf_chars(std::string_view text, std::vector<char32_t>& chars) {
  chars.clear();
  for_each_char(text, [&](char32_t c) {
    if (!is_python_space(c)) chars.push_back(c);
  });
}

int leading_zeros(std::uint64_t x) { return std::countl_zero(x); }
int leading_zeros(unsigned __int128 x) {
  const auto high = static_cast<std::uint64_t>(x >> 64);
  return high != 0 ? std::countl_zero(high) : 64 + std::countl_zero(static_cast<std::uint64_t>(x));
}
int trailing_zeros(std::uint64_t x) { return std::countr_zero(x); }
int trailing_zeros(unsigned __int128 x) {
  const auto low = static_cast<std::uint64_t>(x);
  return low != 0 ? std::countr_zero(low) : 64 + std::countr_zero(static_cast<std::uint64_t>(x >> 64));
}

// The clipped matches M_n. Every position of either text gets a window: the next 6 characters,
// each + 1 in a slot of `bits` bits, the first in the highest, 0 past the end; shifted left by
// one to hold the side (0 candidate, 1 reference) in bit 0. Sorted, the windows that share their
// first n characters are neighbours, for every n, so one sort and one pass serve all six orders:
// an n-gram's group ends where the next window shares fewer than n characters with it.
template <class Window, int bits>
void count_matches(const std::vector<char32_t>& cand, const std::vector<char32_t>& ref,
                   order_counts (&counts)[chrf_order]) {
  constexpr int unused_bits = static_cast<int>(sizeof(Window)) * 8 - chrf_order * bits;
  static_assert(unused_bits >= 1);
  thread_local std::vector<Window> windows;
  windows.clear();
  auto add = [&](const std::vector<char32_t>& chars, unsigned side) {
    Window w = 0;
    for (std::size_t i = chars.size(); i-- > 0;) {
      w = (Window{chars[i] + 1u} << (bits * (chrf_order - 1))) | (w >> bits);
      windows.push_back(w << 1 | side);
    }
  };
  add(cand, 0);
  add(ref, 1);
  std::sort(windows.begin(), windows.end());

  // in_group[side][n - 1]: the windows of that side in the current group of n-grams.
  std::size_t in_group[2][chrf_order] = {}, matches[chrf_order] = {};
  Window previous = 0;
  for (const Window window : windows) {
    const Window slots = window >> 1;
    const Window difference = slots ^ (previous >> 1);
    const int shared =  // characters in common with the previous window
        difference == 0 ? chrf_order : (leading_zeros(difference) - unused_bits) / bits;
    const int length = chrf_order - trailing_zeros(slots) / bits;  // characters in the window
    const auto side = static_cast<unsigned>(window & 1);
    for (int k = 0; k < chrf_order; ++k) {  // k = n - 1
      if (shared <= k) {                    // a new n-gram: close the last one's group
        matches[k] += std::min(in_group[0][k], in_group[1][k]);
        in_group[0][k] = in_group[1][k] = 0;
      }
      in_group[side][k] += length > k;  // a window shorter than n is no n-gram
    }
    previous = window;
  }
  for (int k = 0; k < chrf_order; ++k) {
    counts[k].matches = matches[k] + std::min(in_group[0][k], in_group[1][k]);
  }
}

double chrf_from_counts(const order_counts (&counts)[chrf_order], chrf_smoothing smoothing) {
  constexpr double eps = 1e-16;
  double sum_f = 0.0, sum_p = 0.0, sum_r = 0.0;
  int effective = 0;
  for (const order_counts& c : counts) {
    // An order the reference lacks counts no candidate n-grams (sacreBLEU's convention).
    const std::size_t hyp = c.reference > 0 ? c.candidate : 0;
    const double p = hyp > 0 ? static_cast<double>(c.matches) / static_cast<double>(hyp) : eps;
    const double r = c.reference > 0 ? static_cast<double>(c.matches) / static_cast<double>(c.reference) : eps;
    const double denominator = chrf_beta_squared * p + r;
    sum_f += denominator > 0 ? (1 + chrf_beta_squared) * p * r / denominator : eps;
    if (hyp > 0 && c.reference > 0) {
      sum_p += p;
      sum_r += r;
      ++effective;
    }
  }
  if (smoothing == chrf_smoothing::epsilon) return 100 * sum_f / chrf_order;
  if (effective == 0) return 0.0;
  const double p = sum_p / effective, r = sum_r / effective;
  if (p + r == 0) return 0.0;
  return 100 * ((1 + chrf_beta_squared) * p * r / (chrf_beta_squared * p + r));
}

}  // namespace

std::vector<std::string> rouge_tokens(std::string_view text) {
  token_list tokens;
  tokenize_into(text, tokens);
  std::vector<std::string> out;
  out.reserve(tokens.size());
  for (std::size_t k = 0; k < tokens.size(); ++k) out.emplace_back(tokens[k]);
  return out;
}

double rouge_l_f1(std::string_view candidate, std::string_view reference) {
  thread_local token_list cand, ref;
  tokenize_into(candidate, cand);
  tokenize_into(reference, ref);
  if (cand.size() == 0 || ref.size() == 0) return 0.0;
  const std::size_t lcs = lcs_length(ref, cand);
  if (lcs == 0) return 0.0;
  const double p = static_cast<double>(lcs) / static_cast<double>(cand.size());
  const double r = static_cast<double>(lcs) / static_cast<double>(ref.size());
  return 2 * p * r / (p + r);
}

double chrf(std::string_view candidate, std::string_view reference) {
  return chrf(candidate, reference, chrf_smoothing::effective_order);
}

double chrf(std::string_view candidate, std::string_view reference, chrf_smoothing smoothing) {
  thread_local std::vector<char32_t> cand, ref;
  chrf_chars(candidate, cand);
  chrf_chars(reference, ref);
  order_counts counts[chrf_order];
  for (int n = 1; n <= chrf_order; ++n) {
    counts[n - 1].candidate = cand.size() >= static_cast<std::size_t>(n) ? cand.size() - n + 1 : 0;
    counts[n - 1].reference = ref.size() >= static_cast<std::size_t>(n) ? ref.size() - n + 1 : 0;
  }
  // Characters below U+03FF (ASCII, Latin, Greek...) fit 10-bit slots: 61-bit windows.
  char32_t largest = 0;
  for (char32_t c : cand) largest = std::max(largest, c);
  for (char32_t c : ref) largest = std::max(largest, c);
  if (largest + 1 < (1u << 10)) {
    count_matches<std::uint64_t, 10>(cand, ref, counts);
  } else {  // up to U+DCFF (invalid bytes) and U+10FFFF: 21-bit slots, 127-bit windows
    count_matches<unsigned __int128, 21>(cand, ref, counts);
  }
  return chrf_from_counts(counts, smoothing);
}

double mean_sentence_score(std::span<const std::string> candidates, std::span<const std::string> references,
                           sentence_metric metric) {
  if (candidates.size() != references.size()) {
    fail("mean_sentence_score: ", candidates.size(), " candidates but ", references.size(), " references");
  }
  if (candidates.empty()) fail("mean_sentence_score: no pairs to average");
  double sum = 0.0;
  for (std::size_t i = 0; i < candidates.size(); ++i) sum += metric(candidates[i], references[i]);
  return sum / static_cast<double>(candidates.size());
}

std::size_t word_count(std::string_view text) {
  std::size_t words = 0;
  bool inside = false;
  for (const char c : text) {
    const bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
    words += !space && !inside;
    inside = !space;
  }
  return words;
}

}  // namespace tldr
