#pragma once
// Hugging Face's tokenizer.json for byte-level BPE (GPT-2's tokeniser, and most current models'),
// read and used to encode and decode, in plain C++. Not part of the algorithm: brain's loss
// headers do not include it (CMake target brain::io, which needs nlohmann json and ICU's uc).
//
//   const auto tok = brain::io::bpe_tokenizer::from_file("gpt2/tokenizer.json");
//   std::vector<std::int64_t> ids = tok.encode("Hello world<|endoftext|>");  // {15496, 995, 50256}
//   std::string text = tok.decode(ids);                                       // the same bytes back
//
// The pipeline (huggingface/tokenizers: AddedVocabulary, pre_tokenizers::byte_level, models::bpe,
// decoders::byte_level), for a file whose parts are:
// - "added_tokens": [{"id", "content", "special", "normalized", "single_word", "lstrip", "rstrip"}]
//   are matched literally first, special or not: leftmost-longest, those with normalized false
//   over the whole text, then those with normalized true in the gaps (HF's two passes; with no
//   normalizer both see the same text), lstrip / rstrip taking the adjacent Unicode whitespace,
//   single_word refusing a match next to a word character (\w);
// - "normalizer": null only;
// - "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space", "use_regex", "trim_offsets"}, or a
//   "Sequence" of that one. Each piece between added tokens gets a leading " " when
//   add_prefix_space is true and it does not start with one; use_regex splits it with GPT-2's
//   pattern  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   (implemented by hand, categories from ICU: \p{L} = L*, \p{N} = N*, \s = White_Space), and
//   each byte of a pre-token becomes one character of GPT-2's bytes_to_unicode() alphabet;
// - "model": {"type": "BPE", "vocab": {token: id}, "merges": ["a b", ...] or [["a", "b"], ...],
//   "ignore_merges", "unk_token", "dropout": null, "byte_fallback": false, ...}: each pre-token is
//   merged by rank, the leftmost occurrence of the lowest-ranked adjacent pair first, until no
//   pair has a merge (GPT-2's bpe(); with ignore_merges a pre-token in the vocabulary is taken
//   whole first);
// - "decoder": {"type": "ByteLevel"}: tokens back to bytes (a token with a character outside the
//   alphabet, e.g. an added token with a raw space, as its own UTF-8 bytes, as HF's decoder does);
// - "post_processor": null, ByteLevel, TemplateProcessing, RobertaProcessing, BertProcessing or a
//   Sequence of them is accepted and not applied: encode() is HF's encode(text,
//   add_special_tokens=false). "truncation" and "padding" are left to the caller.
//
// Text is bytes, not necessarily UTF-8: an invalid byte is its own unit, neither letter, number
// nor space, so decode(encode(s)) == s for every byte string (HF takes only valid UTF-8, and its
// decode replaces invalid sequences with U+FFFD; this decode returns the bytes).
//
// Everything else is rejected on loading with a std::invalid_argument naming the file (or the
// label given) and the JSON field and value: other model types, pre-tokenisers (Metaspace,
// Split, ...), decoders or normalizers; byte_fallback, dropout, continuing_subword_prefix /
// end_of_word_suffix; a vocabulary that is not an object of ids 0..N-1 each used once, or lacks
// one of the 256 byte characters; merges that are malformed, repeated or name tokens (or merge
// into a token) not in the vocabulary; added tokens whose id disagrees with the vocabulary or
// another added token's; repeated JSON keys.
//
// encode() is thread-safe: words already merged are kept in a cache (at most 65,536 words of at
// most 64 bytes, no eviction) behind a mutex. Copies share the tables and have their own cache.

#include <brain/errors.hpp>

#include <nlohmann/json.hpp>
#include <unicode/uchar.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace brain::inline v0::io {

/// An entry of tokenizer.json's "added_tokens".
struct added_token {
  std::int64_t id = 0;
  std::string content;
  bool special = false;
  bool normalized = true;  ///< matched after the non-normalized ones (HF's second pass)
  bool single_word = false, lstrip = false, rstrip = false;
};

namespace detail {

/// Throws std::invalid_argument "brain::io: <file>: <parts>".
template <class... Parts>
[[noreturn]] void fail_tokenizer(std::string_view file, const Parts&... parts) {
  brain::detail::fail("io", file, ": ", parts...);
}

/// One unit of lenient UTF-8: a valid code point, or one invalid byte (valid false).
struct utf8_unit {
  char32_t code = 0;
  std::uint8_t length = 1;
  bool valid = true;
};

inline utf8_unit decode_utf8(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned b0 = byte(i);
  if (b0 < 0x80) return {b0, 1, true};
  std::size_t length = 0;
  char32_t code = 0, least = 0;
  if ((b0 & 0xe0u) == 0xc0u)
    length = 2, code = b0 & 0x1fu, least = 0x80;
  else if ((b0 & 0xf0u) == 0xe0u)
    length = 3, code = b0 & 0x0fu, least = 0x800;
  else if ((b0 & 0xf8u) == 0xf0u)
    length = 4, code = b0 & 0x07u, least = 0x10000;
  else
    return {b0, 1, false};
  if (s.size() - i < length) return {b0, 1, false};
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xc0u) != 0x80u) return {b0, 1, false};
    code = (code << 6) | (byte(i + k) & 0x3fu);
  }
  if (code < least || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return {b0, 1, false};
  return {code, static_cast<std::uint8_t>(length), true};
}

inline void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xc0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xe0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  }
}

/// The classes GPT-2's pattern tells apart: \p{L}, \p{N}, \s and the rest (invalid bytes included).
enum class char_class : std::uint8_t { letter, number, space, other };

inline char_class classify(char32_t c) {
  if (c < 0x80) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return char_class::letter;
    if (c >= '0' && c <= '9') return char_class::number;
    if (c == ' ' || (c >= 0x09 && c <= 0x0d)) return char_class::space;
    return char_class::other;
  }
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return char_class::letter;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      return char_class::number;
    default:
      return u_isUWhiteSpace(static_cast<UChar32>(c)) ? char_class::space : char_class::other;
  }
}

struct classified {
  char_class kind;
  std::size_t length;
};

inline classified classify_at(std::string_view s, std::size_t i) {
  const utf8_unit u = decode_utf8(s, i);
  return {u.valid ? classify(u.code) : char_class::other, u.length};
}

inline bool is_white_space(const utf8_unit& u) {
  return u.valid && (u.code < 0x80 ? (u.code == ' ' || (u.code >= 0x09 && u.code <= 0x0d))
                                   : u_isUWhiteSpace(static_cast<UChar32>(u.code)) != 0);
}

/// Regex \w (UTS #18, as Rust's regex crate): Alphabetic, marks, decimal digits, connector punctuation, join controls.
inline bool is_word_character(const utf8_unit& u) {
  if (!u.valid) return false;
  const auto c = static_cast<UChar32>(u.code);
  return u_hasBinaryProperty(c, UCHAR_ALPHABETIC) ||
         (U_GET_GC_MASK(c) & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0 ||
         u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL);
}

/// The unit that ends just before `end` (lenient: a lone byte when no valid sequence ends there).
inline utf8_unit unit_before(std::string_view s, std::size_t end) {
  for (std::size_t back = 2; back <= 4 && back <= end; ++back) {
    const utf8_unit u = decode_utf8(s, end - back);
    if (u.valid && u.length == back) return u;
  }
  return decode_utf8(s, end - 1).length == 1 ? decode_utf8(s, end - 1)
                                             : utf8_unit{static_cast<unsigned char>(s[end - 1]), 1, false};
}

/// GPT-2's bytes_to_unicode(): byte b is the character table[b] (printable Latin-1 bytes map to
/// themselves, the other 68 to U+0100 + k in byte order).
inline const std::array<char32_t, 256>& byte_to_char() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 0x100;
    for (unsigned b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      t[b] = printable ? static_cast<char32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

/// The inverse of byte_to_char(), indexed by code point (< 0x144); -1 where no byte maps.
inline const std::array<std::int16_t, 0x144>& char_to_byte() {
  static const std::array<std::int16_t, 0x144> table = [] {
    std::array<std::int16_t, 0x144> t{};
    t.fill(-1);
    for (unsigned b = 0; b < 256; ++b) t[byte_to_char()[b]] = static_cast<std::int16_t>(b);
    return t;
  }();
  return table;
}

/// A token's bytes under the ByteLevel decoder: each character mapped back through
/// char_to_byte(), or, when one is outside the alphabet, the token's own UTF-8 (as HF's).
inline std::string byte_level_bytes(std::string_view token, bool* in_alphabet = nullptr) {
  std::string out;
  for (std::size_t i = 0; i < token.size();) {
    const utf8_unit u = decode_utf8(token, i);
    if (!u.valid || u.code >= char_to_byte().size() || char_to_byte()[u.code] < 0) {
      if (in_alphabet) *in_alphabet = false;
      return std::string(token);
    }
    out += static_cast<char>(static_cast<unsigned char>(char_to_byte()[u.code]));
    i += u.length;
  }
  if (in_alphabet) *in_alphabet = true;
  return out;
}

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class T>
using string_map = std::unordered_map<std::string, T, string_hash, std::equal_to<>>;

inline std::string describe_json(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

}  // namespace detail

/// `bytes` as valid UTF-8: each byte that is not part of a well-formed sequence (a stray
/// continuation byte, a truncated, overlong or surrogate sequence) becomes U+FFFD. What a trainer
/// needs for decoded samples, which may stop inside a character; Hugging Face's decode also
/// replaces, but one U+FFFD per maximal ill-formed subsequence rather than per byte.
inline std::string valid_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (std::size_t i = 0; i < bytes.size();) {
    const detail::utf8_unit u = detail::decode_utf8(bytes, i);
    if (u.valid)
      out.append(bytes.substr(i, u.length));
    else
      detail::append_utf8(out, U'\uFFFD');
    i += u.length;
  }
  return out;
}

/// Splits `text` with GPT-2's pre-tokenisation pattern (see the top of this header), calling
/// emit(std::string_view) for each piece in order; the pieces concatenate to `text`.
template <class Emit>
void byte_level_split(std::string_view text, Emit&& emit) {
  using detail::char_class;
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const std::size_t start = i;
    if (text[i] == '\'' && i + 1 < n) {  // 's|'t|'re|'ve|'m|'ll|'d, case-sensitive as the pattern
      const char c1 = text[i + 1];
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        emit(text.substr(i, 2));
        i += 2;
        continue;
      }
      if (i + 2 < n) {
        const char c2 = text[i + 2];
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
          emit(text.substr(i, 3));
          i += 3;
          continue;
        }
      }
    }
    detail::classified unit = detail::classify_at(text, i);
    std::size_t j = i;
    if (text[i] == ' ' && i + 1 < n) {  // " ?" before a letter, number or other run
      const detail::classified next = detail::classify_at(text, i + 1);
      if (next.kind != char_class::space) unit = next, j = i + 1;
    }
    if (unit.kind != char_class::space) {  // ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+
      j += unit.length;
      while (j < n) {
        const detail::classified more = detail::classify_at(text, j);
        if (more.kind != unit.kind) break;
        j += more.length;
      }
      emit(text.substr(start, j - start));
      i = j;
      continue;
    }
    // \s+(?!\S) | \s+ : a run of whitespace; before a non-space, all of it but its last unit
    // (which then starts the next piece), unless that leaves nothing.
    std::size_t end = i, last = i;
    while (end < n) {
      const detail::classified more = detail::classify_at(text, end);
      if (more.kind != char_class::space) break;
      last = end;
      end += more.length;
    }
    const std::size_t stop = (end == n || last == i) ? end : last;
    emit(text.substr(start, stop - start));
    i = stop;
  }
}

/// byte_level_split's pieces as a vector.
inline std::vector<std::string_view> byte_level_split(std::string_view text) {
  std::vector<std::string_view> out;
  byte_level_split(text, [&](std::string_view piece) { out.push_back(piece); });
  return out;
}

/// How merge_word() merges (for tests and benchmarks: both give the same ids).
enum class merge_strategy : std::uint8_t {
  automatic,  ///< scan for short words, heap for long ones
  scan,       ///< rescan the pairs' ranks after each merge: O(n^2), fastest for short words
  heap,       ///< a priority queue of (rank, position), as HF's Word::merge_all: O(n log n)
};

/// A byte-level BPE tokenizer read from a Hugging Face tokenizer.json (see the top of this header).
class bpe_tokenizer {
 public:
  /// Reads and validates `file`; errors name it.
  static bpe_tokenizer from_file(const std::filesystem::path& file) {
    const std::string label = file.string();
    std::ifstream in(file, std::ios::binary);
    if (!in) detail::fail_tokenizer(label, "cannot open");
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) detail::fail_tokenizer(label, "cannot read");
    return from_json(text.str(), label);
  }

  /// Parses and validates tokenizer.json's text; `label` names it in errors.
  static bpe_tokenizer from_json(std::string_view text, std::string_view label) {
    bpe_tokenizer out;
    out.tables_ = std::make_shared<const tables>(parse(text, label));
    return out;
  }

  bpe_tokenizer(const bpe_tokenizer& other) : tables_(other.tables_), cache_(std::make_unique<word_cache>()) {}
  bpe_tokenizer& operator=(const bpe_tokenizer& other) {
    if (this != &other) tables_ = other.tables_, cache_ = std::make_unique<word_cache>();
    return *this;
  }
  bpe_tokenizer(bpe_tokenizer&&) noexcept = default;
  bpe_tokenizer& operator=(bpe_tokenizer&&) noexcept = default;
  ~bpe_tokenizer() = default;

  /// The ids of `text` (any bytes): added tokens first, then ByteLevel pre-tokenisation and BPE.
  std::vector<std::int64_t> encode(std::string_view text) const {
    std::vector<std::int64_t> out;
    out.reserve(text.size() / 3 + 1);
    const tables& t = *tables_;
    split_added(text, t.non_normalized, [&](std::string_view gap, std::int32_t id) {
      if (id >= 0) return out.push_back(id);
      split_added(gap, t.normalized, [&](std::string_view piece, std::int32_t id2) {
        if (id2 >= 0) return out.push_back(id2);
        encode_piece(piece, out);
      });
    });
    return out;
  }

  /// The bytes of `ids` (ByteLevel decoder); special added tokens left out when asked. Throws
  /// naming the position for an id outside [0, vocab_size()).
  std::string decode(std::span<const std::int64_t> ids, bool skip_special_tokens = false) const {
    std::string out;
    const tables& t = *tables_;
    for (std::size_t k = 0; k < ids.size(); ++k) {
      const std::int64_t id = ids[k];
      if (id < 0 || id >= vocab_size())
        brain::detail::fail("io::bpe_tokenizer::decode", "ids[", k, "] = ", id, " is outside [0, ", vocab_size(), ")");
      const auto i = static_cast<std::size_t>(id);
      if (skip_special_tokens && t.special[i]) continue;
      out += t.bytes[i];
    }
    return out;
  }

  /// Number of ids (vocabulary and added tokens): ids are 0..vocab_size()-1.
  std::int64_t vocab_size() const { return static_cast<std::int64_t>(tables_->tokens.size()); }
  /// The id of a token as written in the file (byte-level characters: "Ġthe" for " the"), if any.
  std::optional<std::int64_t> token_id(std::string_view token) const {
    const auto it = tables_->token_ids.find(token);
    if (it == tables_->token_ids.end()) return std::nullopt;
    return it->second;
  }
  /// The token of an id as written in the file; throws for an id outside [0, vocab_size()).
  std::string_view token(std::int64_t id) const {
    if (id < 0 || id >= vocab_size())
      brain::detail::fail("io::bpe_tokenizer::token", "id ", id, " is outside [0, ", vocab_size(), ")");
    return tables_->tokens[static_cast<std::size_t>(id)];
  }
  /// Whether an id is a special added token (skipped by decode(ids, true)).
  bool is_special(std::int64_t id) const {
    return id >= 0 && id < vocab_size() && tables_->special[static_cast<std::size_t>(id)];
  }
  const std::vector<added_token>& added_tokens() const { return tables_->added; }
  /// The pre-tokenizer's options.
  bool add_prefix_space() const { return tables_->add_prefix_space; }
  bool use_regex() const { return tables_->use_regex; }
  /// Number of merges (model.merges' length).
  std::size_t merge_count() const { return tables_->merge_count; }

  /// BPE of one pre-token given as raw bytes (no splitting, no added tokens, no cache).
  std::vector<std::int64_t> merge_word(std::string_view bytes, merge_strategy how = merge_strategy::automatic) const {
    std::vector<std::int64_t> out;
    merge(bytes, how, out);
    return out;
  }

 private:
  struct merge_entry {
    std::int32_t rank;
    std::int32_t id;
  };
  /// Leftmost-longest literal matching: tokens grouped by first byte, longest first.
  struct added_matcher {
    std::array<std::vector<std::size_t>, 256> by_first_byte;  // indices into tables::added
    bool empty = true;
  };
  struct tables {
    std::vector<std::string> tokens;  // id -> token as in the file
    std::vector<std::string> bytes;   // id -> bytes under the ByteLevel decoder
    std::vector<bool> special;
    detail::string_map<std::int32_t> token_ids;    // token as in the file -> id (vocabulary and added)
    detail::string_map<std::int32_t> whole_words;  // ignore_merges: raw bytes -> id of vocabulary tokens
    std::unordered_map<std::uint64_t, merge_entry> merges;
    std::array<std::int32_t, 256> byte_ids{};
    std::vector<added_token> added;
    added_matcher non_normalized, normalized;
    std::size_t merge_count = 0;
    bool add_prefix_space = false, use_regex = true, ignore_merges = false;
  };
  struct word_cache {
    static constexpr std::size_t max_words = 65536, max_word_bytes = 64;
    std::mutex mutex;
    detail::string_map<std::vector<std::int32_t>> words;
  };
  static constexpr std::size_t scan_limit = 128;  // longer words merge with the heap

  bpe_tokenizer() : cache_(std::make_unique<word_cache>()) {}

  static std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
  }
  const merge_entry* find_merge(std::int32_t a, std::int32_t b) const {
    const auto it = tables_->merges.find(pair_key(a, b));
    return it == tables_->merges.end() ? nullptr : &it->second;
  }

  /// HF's AddedVocabulary::find_matches over `text`: emit(piece, id) with id -1 for the text between matches.
  template <class Emit>
  void split_added(std::string_view text, const added_matcher& m, Emit&& emit) const {
    if (m.empty) {
      if (!text.empty()) emit(text, -1);
      return;
    }
    const std::vector<added_token>& added = tables_->added;
    std::size_t done = 0, pos = 0;
    while (pos < text.size()) {
      const added_token* hit = nullptr;
      for (const std::size_t k : m.by_first_byte[static_cast<unsigned char>(text[pos])])
        if (text.substr(pos).starts_with(added[k].content)) {
          hit = &added[k];
          break;
        }
      if (hit == nullptr) {
        ++pos;
        continue;
      }
      std::size_t start = pos, stop = pos + hit->content.size();
      pos = stop;
      if (start < done) continue;  // inside a previous token's rstrip
      if (hit->single_word && ((start > 0 && detail::is_word_character(detail::unit_before(text, start))) ||
                               (stop < text.size() && detail::is_word_character(detail::decode_utf8(text, stop)))))
        continue;
      if (hit->lstrip)
        while (start > done) {
          const detail::utf8_unit u = detail::unit_before(text, start);
          if (!detail::is_white_space(u)) break;
          start -= u.length;
        }
      if (hit->rstrip)
        while (stop < text.size()) {
          const detail::utf8_unit u = detail::decode_utf8(text, stop);
          if (!detail::is_white_space(u)) break;
          stop += u.length;
        }
      if (done < start) emit(text.substr(done, start - done), std::int32_t{-1});
      emit(text.substr(start, stop - start), static_cast<std::int32_t>(hit->id));
      done = pos = stop;
    }
    if (done < text.size()) emit(text.substr(done), std::int32_t{-1});
  }

  void encode_piece(std::string_view piece, std::vector<std::int64_t>& out) const {
    std::string prefixed;
    if (tables_->add_prefix_space && !piece.starts_with(' ')) {
      prefixed.reserve(piece.size() + 1);
      prefixed += ' ';
      prefixed += piece;
      piece = prefixed;
    }
    if (!tables_->use_regex) return encode_word(piece, out);
    byte_level_split(piece, [&](std::string_view word) { encode_word(word, out); });
  }

  void encode_word(std::string_view word, std::vector<std::int64_t>& out) const {
    const tables& t = *tables_;
    if (word.size() == 1) return out.push_back(t.byte_ids[static_cast<unsigned char>(word[0])]);
    if (t.ignore_merges)
      if (const auto it = t.whole_words.find(word); it != t.whole_words.end()) return out.push_back(it->second);
    const bool cacheable = cache_ && word.size() <= word_cache::max_word_bytes;
    if (cacheable) {
      const std::lock_guard lock(cache_->mutex);
      if (const auto it = cache_->words.find(word); it != cache_->words.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    const std::size_t first = out.size();
    merge(word, merge_strategy::automatic, out);
    if (cacheable) {
      const std::lock_guard lock(cache_->mutex);
      if (cache_->words.size() < word_cache::max_words)
        cache_->words.emplace(std::string(word),
                              std::vector<std::int32_t>(out.begin() + static_cast<std::ptrdiff_t>(first), out.end()));
    }
  }

  /// Appends the BPE ids of `word`: the leftmost occurrence of the lowest-ranked pair merged first.
  void merge(std::string_view word, merge_strategy how, std::vector<std::int64_t>& out) const {
    const tables& t = *tables_;
    if (word.empty()) return;
    if (how == merge_strategy::automatic) how = word.size() <= scan_limit ? merge_strategy::scan : merge_strategy::heap;
    constexpr std::int32_t none = std::numeric_limits<std::int32_t>::max();
    if (how == merge_strategy::scan) {
      std::vector<std::int32_t> symbols(word.size());
      for (std::size_t i = 0; i < word.size(); ++i) symbols[i] = t.byte_ids[static_cast<unsigned char>(word[i])];
      std::vector<std::int32_t> ranks(word.size() - 1);  // ranks[i]: the pair (i, i + 1)
      const auto rank_at = [&](std::size_t i) {
        const merge_entry* e = find_merge(symbols[i], symbols[i + 1]);
        return e ? e->rank : none;
      };
      for (std::size_t i = 0; i + 1 < symbols.size(); ++i) ranks[i] = rank_at(i);
      while (symbols.size() > 1) {
        const auto best = std::min_element(ranks.begin(), ranks.end());  // the leftmost of the lowest
        if (*best == none) break;
        const auto i = static_cast<std::size_t>(best - ranks.begin());
        symbols[i] = find_merge(symbols[i], symbols[i + 1])->id;
        symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(i) + 1);
        ranks.erase(ranks.begin() + static_cast<std::ptrdiff_t>(i));
        if (i > 0) ranks[i - 1] = rank_at(i - 1);
        if (i + 1 < symbols.size()) ranks[i] = rank_at(i);
      }
      out.insert(out.end(), symbols.begin(), symbols.end());
      return;
    }
    // The heap: (rank, position of the pair's left symbol); symbols in a linked list, a merged
    // right symbol marked dead; an entry whose pair has changed since it was pushed is skipped.
    struct symbol {
      std::int32_t id;
      std::int32_t prev, next;
    };
    struct candidate {
      std::int32_t rank, pos, id;
      bool operator>(const candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    const auto n = static_cast<std::int32_t>(word.size());
    std::vector<symbol> symbols(word.size());
    for (std::int32_t i = 0; i < n; ++i)
      symbols[static_cast<std::size_t>(i)] = {t.byte_ids[static_cast<unsigned char>(word[static_cast<std::size_t>(i)])],
                                              i - 1, i + 1 < n ? i + 1 : -1};
    std::priority_queue<candidate, std::vector<candidate>, std::greater<>> queue;
    const auto push = [&](std::int32_t left) {
      const symbol& a = symbols[static_cast<std::size_t>(left)];
      if (a.next < 0) return;
      if (const merge_entry* e = find_merge(a.id, symbols[static_cast<std::size_t>(a.next)].id))
        queue.push({e->rank, left, e->id});
    };
    for (std::int32_t i = 0; i + 1 < n; ++i) push(i);
    while (!queue.empty()) {
      const candidate top = queue.top();
      queue.pop();
      symbol& a = symbols[static_cast<std::size_t>(top.pos)];
      if (a.id < 0 || a.next < 0) continue;
      const symbol& b = symbols[static_cast<std::size_t>(a.next)];
      const merge_entry* e = find_merge(a.id, b.id);
      if (e == nullptr || e->rank != top.rank || e->id != top.id) continue;  // stale
      const std::int32_t dead = a.next;
      a.id = e->id;
      a.next = b.next;
      if (a.next >= 0) symbols[static_cast<std::size_t>(a.next)].prev = top.pos;
      symbols[static_cast<std::size_t>(dead)].id = -1;
      if (a.prev >= 0) push(a.prev);
      push(top.pos);
    }
    for (std::int32_t i = 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next)
      out.push_back(symbols[static_cast<std::size_t>(i)].id);
  }

  // --- reading tokenizer.json ---------------------------------------------------------------

  static const nlohmann::json* member(const nlohmann::json& object, const char* key) {
    const auto it = object.find(key);
    return it == object.end() ? nullptr : &*it;
  }

  static void only_keys(std::string_view label, const nlohmann::json& object, std::string_view where,
                        std::initializer_list<std::string_view> known) {
    for (const auto& [key, value] : object.items())
      if (std::find(known.begin(), known.end(), key) == known.end())
        detail::fail_tokenizer(label, where, " has the unknown key \"", key, "\"");
  }

  static bool boolean(std::string_view label, const nlohmann::json& object, const char* key, std::string_view where,
                      bool otherwise) {
    const nlohmann::json* v = member(object, key);
    if (v == nullptr || v->is_null()) return otherwise;
    if (!v->is_boolean())
      detail::fail_tokenizer(label, where, ".", key, " ", detail::describe_json(*v), " is not a boolean");
    return v->get<bool>();
  }

  static std::string type_of(std::string_view label, const nlohmann::json& v, std::string_view where) {
    if (!v.is_object()) detail::fail_tokenizer(label, where, " ", detail::describe_json(v), " is not an object");
    const nlohmann::json* type = member(v, "type");
    if (type == nullptr || !type->is_string()) detail::fail_tokenizer(label, where, ".type is missing or not a string");
    return type->get<std::string>();
  }

  /// A ByteLevel pre-tokenizer (or decoder): its add_prefix_space and use_regex.
  static std::pair<bool, bool> byte_level_options(std::string_view label, const nlohmann::json& v,
                                                  std::string_view where) {
    only_keys(label, v, where, {"type", "add_prefix_space", "trim_offsets", "use_regex"});
    return {boolean(label, v, "add_prefix_space", where, true), boolean(label, v, "use_regex", where, true)};
  }

  static std::int32_t parse_id(std::string_view label, const nlohmann::json& v, std::string_view where) {
    if (v.is_number_unsigned() &&
        v.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max()))
      return static_cast<std::int32_t>(v.get<std::uint64_t>());
    if (v.is_number_integer() && v.get<std::int64_t>() >= 0 &&
        v.get<std::int64_t>() <= std::numeric_limits<std::int32_t>::max())
      return static_cast<std::int32_t>(v.get<std::int64_t>());
    detail::fail_tokenizer(label, where, " ", detail::describe_json(v), " is not an id (an integer in [0, 2^31))");
  }

  /// Ids handed out while reading: each id's token, and whether it is taken. Every id is below the
  /// number of tokens (vocabulary and added), so `capacity` slots hold them all.
  struct id_slots {
    explicit id_slots(std::size_t n) : capacity(n), tokens(n), used(n) {}
    std::size_t capacity;
    std::vector<std::string> tokens;
    std::vector<bool> used;
  };

  /// Reads tokenizer.json into tables, a step per part of the file; the first problem found throws,
  /// naming `label`. The steps run in a fixed order (normalizer, pre-tokenizer, decoder,
  /// post-processor, model, added tokens), so a file with several problems always names the same one.
  static tables parse(std::string_view text, std::string_view label) {
    const nlohmann::json root = read_json(text, label);
    tables t;
    check_normalizer(label, root);
    std::tie(t.add_prefix_space, t.use_regex) = read_pre_tokenizer(label, root);
    check_decoder(label, root);
    check_post_processor(label, root);
    const nlohmann::json& model = read_model_options(label, root, t);
    const nlohmann::json& vocab = vocab_of(label, model);
    const nlohmann::json* added_list = added_tokens_of(label, root);
    id_slots ids(vocab.size() + (added_list != nullptr ? added_list->size() : 0));
    read_vocab(label, vocab, ids, t);
    read_byte_ids(label, t);
    check_unk_token(label, model, t);
    read_merges(label, model, t);
    read_added_tokens(label, added_list, vocab, ids, t);
    take_dense_tokens(label, ids, t);
    decode_tokens(vocab, t);
    index_added_tokens(t);
    return t;
  }

  /// The JSON object of the file. Repeated keys (which a JSON parser would silently collapse) are
  /// found with the parser's callback.
  static nlohmann::json read_json(std::string_view text, std::string_view label) {
    using detail::fail_tokenizer;
    std::vector<std::unordered_set<std::string>> open_objects;
    const auto no_repeated_keys = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& value) {
      using event_t = nlohmann::json::parse_event_t;
      if (event == event_t::object_start)
        open_objects.emplace_back();
      else if (event == event_t::object_end)
        open_objects.pop_back();
      else if (event == event_t::key && !open_objects.back().insert(value.get<std::string>()).second)
        fail_tokenizer(label, "the JSON repeats the key \"", value.get<std::string>(), "\" in one object");
      return true;
    };
    nlohmann::json root;
    try {
      root = nlohmann::json::parse(text.begin(), text.end(), no_repeated_keys);
    } catch (const nlohmann::json::exception& e) {
      fail_tokenizer(label, "not valid JSON: ", e.what());
    }
    if (!root.is_object()) fail_tokenizer(label, "not a JSON object");
    return root;
  }

  static void check_normalizer(std::string_view label, const nlohmann::json& root) {
    if (const nlohmann::json* n = member(root, "normalizer"); n && !n->is_null())
      detail::fail_tokenizer(label, "normalizer ", detail::describe_json(*n), " is not supported (null only)");
  }

  /// pre_tokenizer: a ByteLevel, or a Sequence of one; its (add_prefix_space, use_regex).
  static std::pair<bool, bool> read_pre_tokenizer(std::string_view label, const nlohmann::json& root) {
    using detail::fail_tokenizer;
    const nlohmann::json* pre = member(root, "pre_tokenizer");
    if (pre == nullptr || pre->is_null()) fail_tokenizer(label, "pre_tokenizer is null (ByteLevel is supported)");
    std::string where = "pre_tokenizer";
    const nlohmann::json* level = pre;
    const std::string type = type_of(label, *pre, where);
    if (type == "Sequence") {
      only_keys(label, *pre, where, {"type", "pretokenizers"});
      const nlohmann::json* list = member(*pre, "pretokenizers");
      if (list == nullptr || !list->is_array() || list->size() != 1)
        fail_tokenizer(label, "pre_tokenizer.pretokenizers ", list ? detail::describe_json(*list) : "(missing)",
                       " is not a list of one ByteLevel");
      level = &(*list)[0];
      where = "pre_tokenizer.pretokenizers[0]";
    }
    const std::string inner = type_of(label, *level, where);
    if (inner != "ByteLevel")
      fail_tokenizer(label, where, ".type \"", inner,
                     "\" is not supported (ByteLevel, or a Sequence of one ByteLevel)");
    return byte_level_options(label, *level, where);
  }

  /// decoder: a ByteLevel (its options are checked, though decoding does not depend on them).
  static void check_decoder(std::string_view label, const nlohmann::json& root) {
    const nlohmann::json* decoder = member(root, "decoder");
    if (decoder == nullptr || decoder->is_null())
      detail::fail_tokenizer(label, "decoder is null (ByteLevel is supported)");
    if (const std::string type = type_of(label, *decoder, "decoder"); type != "ByteLevel")
      detail::fail_tokenizer(label, "decoder.type \"", type, "\" is not supported (ByteLevel)");
    (void)byte_level_options(label, *decoder, "decoder");
  }

  /// post_processor: null, or kinds that are accepted but not applied (a Sequence of them too).
  static void check_post_processor(std::string_view label, const nlohmann::json& root) {
    using detail::fail_tokenizer;
    const nlohmann::json* post = member(root, "post_processor");
    if (post == nullptr || post->is_null()) return;
    const auto ignorable = [](const std::string& type) {
      return type == "ByteLevel" || type == "TemplateProcessing" || type == "RobertaProcessing" ||
             type == "BertProcessing";
    };
    const std::string type = type_of(label, *post, "post_processor");
    if (type == "Sequence") {
      const nlohmann::json* list = member(*post, "processors");
      if (list == nullptr || !list->is_array())
        fail_tokenizer(label, "post_processor.processors is missing or not a list");
      for (std::size_t k = 0; k < list->size(); ++k) {
        const std::string where = "post_processor.processors[" + std::to_string(k) + "]";
        if (const std::string inner = type_of(label, (*list)[k], where); !ignorable(inner))
          fail_tokenizer(label, where, ".type \"", inner, "\" is not supported (ByteLevel, TemplateProcessing, ",
                         "RobertaProcessing, BertProcessing; not applied)");
      }
    } else if (!ignorable(type)) {
      fail_tokenizer(label, "post_processor.type \"", type, "\" is not supported (ByteLevel, TemplateProcessing, ",
                     "RobertaProcessing, BertProcessing or a Sequence of them; not applied)");
    }
  }

  /// model: a BPE without dropout, affixes or byte fallback; sets t.ignore_merges.
  static const nlohmann::json& read_model_options(std::string_view label, const nlohmann::json& root, tables& t) {
    using detail::describe_json;
    using detail::fail_tokenizer;
    const nlohmann::json* model = member(root, "model");
    if (model == nullptr) fail_tokenizer(label, "no \"model\"");
    if (const std::string type = type_of(label, *model, "model"); type != "BPE")
      fail_tokenizer(label, "model.type \"", type, "\" is not supported (BPE)");
    only_keys(label, *model, "model",
              {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk",
               "byte_fallback", "ignore_merges", "vocab", "merges"});
    if (const nlohmann::json* d = member(*model, "dropout");
        d && !d->is_null() && !(d->is_number() && d->get<double>() == 0.0))
      fail_tokenizer(label, "model.dropout ", describe_json(*d), " is not supported (null)");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (const nlohmann::json* s = member(*model, key); s && !s->is_null() && *s != "")
        fail_tokenizer(label, "model.", key, " ", describe_json(*s), " is not supported (null or \"\")");
    if (boolean(label, *model, "byte_fallback", "model", false))
      fail_tokenizer(label, "model.byte_fallback true is not supported (a byte-level vocabulary needs no fallback)");
    (void)boolean(label, *model, "fuse_unk", "model", false);
    t.ignore_merges = boolean(label, *model, "ignore_merges", "model", false);
    return *model;
  }

  static const nlohmann::json& vocab_of(std::string_view label, const nlohmann::json& model) {
    const nlohmann::json* vocab = member(model, "vocab");
    if (vocab == nullptr || !vocab->is_object())
      detail::fail_tokenizer(label, "model.vocab ", vocab ? detail::describe_json(*vocab) : "(missing)",
                             " is not an object of token: id");
    return *vocab;
  }

  /// The added_tokens list; nullptr when it is absent or null.
  static const nlohmann::json* added_tokens_of(std::string_view label, const nlohmann::json& root) {
    const nlohmann::json* added_list = member(root, "added_tokens");
    if (added_list != nullptr && !added_list->is_null() && !added_list->is_array())
      detail::fail_tokenizer(label, "added_tokens ", detail::describe_json(*added_list), " is not a list");
    return added_list != nullptr && added_list->is_array() ? added_list : nullptr;
  }

  /// model.vocab: token -> id, each id below the capacity and given once.
  static void read_vocab(std::string_view label, const nlohmann::json& vocab, id_slots& ids, tables& t) {
    using detail::fail_tokenizer;
    t.token_ids.reserve(ids.capacity);
    for (const auto& [token, value] : vocab.items()) {
      const std::int32_t id = parse_id(label, value, "model.vocab[\"" + token + "\"]");
      const auto slot = static_cast<std::size_t>(id);
      if (slot >= ids.capacity)
        fail_tokenizer(label, "model.vocab[\"", token, "\"] = ", id, " is outside [0, ", ids.capacity, ") for ",
                       ids.capacity, " tokens (ids must be 0..N-1)");
      if (ids.used[slot])
        fail_tokenizer(label, "model.vocab gives id ", id, " to both \"", ids.tokens[slot], "\" and \"", token, "\"");
      ids.used[slot] = true;
      ids.tokens[slot] = token;
      t.token_ids.emplace(token, id);
    }
  }

  /// The ids of the 256 single-byte tokens: a byte-level vocabulary has them all.
  static void read_byte_ids(std::string_view label, tables& t) {
    for (unsigned b = 0; b < 256; ++b) {
      std::string c;
      detail::append_utf8(c, detail::byte_to_char()[b]);
      const auto it = t.token_ids.find(c);
      if (it == t.token_ids.end())
        detail::fail_tokenizer(label, "model.vocab has no token for byte ", b, " (\"", c,
                               "\"): a byte-level vocabulary has all 256");
      t.byte_ids[b] = it->second;
    }
  }

  static void check_unk_token(std::string_view label, const nlohmann::json& model, const tables& t) {
    if (const nlohmann::json* unk = member(model, "unk_token"); unk && !unk->is_null())
      if (!unk->is_string() || !t.token_ids.contains(unk->get<std::string>()))
        detail::fail_tokenizer(label, "model.unk_token ", detail::describe_json(*unk),
                               " is not a token of model.vocab");
  }

  /// One merge's two tokens: "a b" (exactly one space, as HF's reader) or ["a", "b"].
  static std::pair<std::string, std::string> merge_pair(std::string_view label, const nlohmann::json& m,
                                                        const std::string& where) {
    using detail::fail_tokenizer;
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const std::size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos || space == 0 ||
          space + 1 == s.size())
        fail_tokenizer(label, where, " ", detail::describe_json(m), " is not \"left right\" (two tokens, one space)");
      return {s.substr(0, space), s.substr(space + 1)};
    }
    if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string() &&
        !m[0].get_ref<const std::string&>().empty() && !m[1].get_ref<const std::string&>().empty())
      return {m[0].get<std::string>(), m[1].get<std::string>()};
    fail_tokenizer(label, where, " ", detail::describe_json(m), " is neither \"left right\" nor [\"left\", \"right\"]");
  }

  /// model.merges, rank by rank: the ids of each pair and of the token it merges into, each pair once.
  static void read_merges(std::string_view label, const nlohmann::json& model, tables& t) {
    using detail::describe_json;
    using detail::fail_tokenizer;
    const nlohmann::json* merges = member(model, "merges");
    if (merges == nullptr || !merges->is_array())
      fail_tokenizer(label, "model.merges ", merges ? describe_json(*merges) : "(missing)", " is not a list");
    t.merges.reserve(merges->size());
    for (std::size_t rank = 0; rank < merges->size(); ++rank) {
      const nlohmann::json& m = (*merges)[rank];
      const std::string where = "model.merges[" + std::to_string(rank) + "]";
      const auto [a, b] = merge_pair(label, m, where);
      const auto left = t.token_ids.find(a), right = t.token_ids.find(b), merged = t.token_ids.find(a + b);
      if (left == t.token_ids.end())
        fail_tokenizer(label, where, " ", describe_json(m), ": \"", a, "\" is not in model.vocab");
      if (right == t.token_ids.end())
        fail_tokenizer(label, where, " ", describe_json(m), ": \"", b, "\" is not in model.vocab");
      if (merged == t.token_ids.end())
        fail_tokenizer(label, where, " ", describe_json(m), ": the merged token \"", a + b, "\" is not in model.vocab");
      const auto [it, fresh] = t.merges.emplace(pair_key(left->second, right->second),
                                                merge_entry{static_cast<std::int32_t>(rank), merged->second});
      if (!fresh) fail_tokenizer(label, where, " ", describe_json(m), " repeats model.merges[", it->second.rank, "]");
    }
    t.merge_count = merges->size();
  }

  /// One entry of added_tokens, its keys and values checked (not yet its id against the others).
  static added_token read_added_token(std::string_view label, const nlohmann::json& e, const std::string& where) {
    using detail::fail_tokenizer;
    if (!e.is_object()) fail_tokenizer(label, where, " ", detail::describe_json(e), " is not an object");
    only_keys(label, e, where, {"id", "content", "special", "normalized", "single_word", "lstrip", "rstrip"});
    const nlohmann::json* id_json = member(e, "id");
    const nlohmann::json* content = member(e, "content");
    if (id_json == nullptr) fail_tokenizer(label, where, " has no \"id\"");
    if (content == nullptr || !content->is_string() || content->get_ref<const std::string&>().empty())
      fail_tokenizer(label, where, ".content is missing, empty or not a string");
    added_token a;
    a.id = parse_id(label, *id_json, where + ".id");
    a.content = content->get<std::string>();
    a.special = boolean(label, e, "special", where, false);
    a.normalized = boolean(label, e, "normalized", where, !a.special);
    a.single_word = boolean(label, e, "single_word", where, false);
    a.lstrip = boolean(label, e, "lstrip", where, false);
    a.rstrip = boolean(label, e, "rstrip", where, false);
    return a;
  }

  /// added_tokens: a vocabulary token keeps its id; a new one takes a free id.
  static void read_added_tokens(std::string_view label, const nlohmann::json* added_list, const nlohmann::json& vocab,
                                id_slots& ids, tables& t) {
    using detail::fail_tokenizer;
    std::unordered_map<std::int32_t, std::size_t> added_ids;
    const std::size_t count = added_list != nullptr ? added_list->size() : 0;
    for (std::size_t k = 0; k < count; ++k) {
      const std::string where = "added_tokens[" + std::to_string(k) + "]";
      added_token a = read_added_token(label, (*added_list)[k], where);
      const auto id = static_cast<std::int32_t>(a.id);
      const auto slot = static_cast<std::size_t>(id);
      if (const auto [it, fresh] = added_ids.emplace(id, k); !fresh)
        fail_tokenizer(label, where, " \"", a.content, "\": id ", id, " is also added_tokens[", it->second, "]'s");
      if (const auto it = t.token_ids.find(a.content); it != t.token_ids.end()) {
        if (!vocab.contains(a.content))
          fail_tokenizer(label, where, " \"", a.content, "\" repeats an earlier added token");
        if (it->second != id)
          fail_tokenizer(label, where, " \"", a.content, "\" has id ", id, " but model.vocab gives it ", it->second);
      } else {
        if (slot >= ids.capacity)
          fail_tokenizer(label, where, ".id ", id, " is outside [0, ", ids.capacity, ") for ", ids.capacity,
                         " tokens (ids must be 0..N-1)");
        if (ids.used[slot])
          fail_tokenizer(label, where, " \"", a.content, "\": id ", id, " is already \"", ids.tokens[slot], "\"'s");
        ids.used[slot] = true;
        ids.tokens[slot] = a.content;
        t.token_ids.emplace(a.content, id);
      }
      t.added.push_back(std::move(a));
    }
  }

  /// The tokens by id, once the used ids are known to be exactly 0..N-1 (dense).
  static void take_dense_tokens(std::string_view label, id_slots& ids, tables& t) {
    const auto total = static_cast<std::size_t>(std::find(ids.used.begin(), ids.used.end(), false) - ids.used.begin());
    if (const auto beyond = std::find(ids.used.begin() + static_cast<std::ptrdiff_t>(total), ids.used.end(), true);
        beyond != ids.used.end())
      detail::fail_tokenizer(label, "id ", total, " belongs to no token but id ", beyond - ids.used.begin(), " (\"",
                             ids.tokens[static_cast<std::size_t>(beyond - ids.used.begin())],
                             "\") does (ids must be 0..N-1)");
    ids.tokens.resize(total);
    t.tokens = std::move(ids.tokens);
  }

  /// Each id's bytes under the ByteLevel decoder; with ignore_merges, the vocabulary tokens that
  /// stand for a whole word's bytes.
  static void decode_tokens(const nlohmann::json& vocab, tables& t) {
    const std::size_t total = t.tokens.size();
    t.bytes.resize(total);
    for (std::size_t id = 0; id < total; ++id) {
      bool in_alphabet = false;
      t.bytes[id] = detail::byte_level_bytes(t.tokens[id], &in_alphabet);
      if (t.ignore_merges && in_alphabet && vocab.contains(t.tokens[id]))
        t.whole_words.emplace(t.bytes[id], static_cast<std::int32_t>(id));
    }
  }

  /// The special flags, and the added tokens' matchers: by first byte, longest first (leftmost-longest).
  static void index_added_tokens(tables& t) {
    t.special.assign(t.tokens.size(), false);
    for (std::size_t k = 0; k < t.added.size(); ++k) {
      const added_token& a = t.added[k];
      if (a.special) t.special[static_cast<std::size_t>(a.id)] = true;
      added_matcher& m = a.normalized ? t.normalized : t.non_normalized;
      m.by_first_byte[static_cast<unsigned char>(a.content[0])].push_back(k);
      m.empty = false;
    }
    const auto longer = [&](std::size_t x, std::size_t y) {
      return t.added[x].content.size() > t.added[y].content.size();
    };
    for (added_matcher* m : {&t.normalized, &t.non_normalized})
      for (auto& bucket : m->by_first_byte) std::stable_sort(bucket.begin(), bucket.end(), longer);
  }

  std::shared_ptr<const tables> tables_;
  std::unique_ptr<word_cache> cache_;
};

}  // namespace brain::inline v0::io
