// Attacks on the oracle (oracle.hpp): summaries that game a naive scorer without summarising.
// Each is a deterministic function of the example, its split and a seed. They test the oracle:
// the gold synopsis must beat every designed attack on at least 90% of the test posts
// (tests/oracle_test.cpp); the held-out ones were not used to design the oracle and are only
// measured (docs/oracle.md).
//
// "Words" here are whitespace-separated pieces, so that an attack keeps the post's punctuation
// and case as a copy would. The attacker ranks a post's words by its own tf·idf (lowercase
// letter/digit runs; idf over the corpus posts), independent of the oracle's internals.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "data.hpp"

namespace tldr {

struct attack {
  std::string name;
  std::string summary;
};

// The first n words of text, joined by single spaces.
std::string first_words(std::string_view text, std::size_t n);
// The last n words of text.
std::string last_words(std::string_view text, std::size_t n);
// The words of text in a seeded random order that differs from theirs whenever any two words
// differ; text with fewer than two distinct words (a one-word synopsis) comes back unchanged.
std::string shuffled_words(std::string_view text, std::uint64_t seed);
// word, times times, separated by spaces.
std::string repeated(std::string_view word, std::size_t times);
// The package name after "TITLE: " on the prompt's first line, "" without one.
std::string title_of(std::string_view prompt);

class attacker {
 public:
  // Document frequencies over the corpus posts (usually the train split).
  explicit attacker(std::span<const example> corpus, std::uint64_t seed = 1);

  // The post's k words of highest tf·idf, most salient first, lowercase, without repeats; words
  // of one character or only digits are skipped.
  std::vector<std::string> salient_words(std::string_view post, std::size_t k) const;

  // (a) the post's first 10 words; (b) its 5 and 10 most salient words as a list; (c) the gold's
  // words shuffled; (d) the most salient word, and the gold's first word, repeated 5 times;
  // (e) the gold of another example of pool from another package family; (f) nothing; (g) the
  // most salient word alone, the title alone. target need not be in pool.
  std::vector<attack> designed(const example& target, std::span<const example> pool) const;

  // Attacks not used to design the oracle, measured only: other extracts (first 6 words, first
  // sentence, last 10 words, a random 8-word span, the first sentence's predicate after "is a"),
  // edits of the gold (junk appended, truncated to half, salient words appended), the gold of
  // the pool's post most similar to this one (another package), and templates filled with
  // salient words ("library for X Y", "X Y tool", title + salient words).
  std::vector<attack> held_out(const example& target, std::span<const example> pool) const;

 private:
  std::uint64_t seed_for(const example& target, std::uint64_t stream) const;

  std::uint64_t seed_;
  double documents_ = 0;
  std::unordered_map<std::string, std::uint32_t> document_frequency_;
};

}  // namespace tldr
