#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data.hpp"
#include "oracle.hpp"

using namespace tldr;

namespace {

const std::filesystem::path data_dir = TLDR_TEST_DATA;

// With no corpus every idf is ln(1/1) + 1 = 1, which makes the components easy to compute by hand.
const oracle& plain() {
  static const oracle j{std::span<const example>{}};
  return j;
}

example post_example(const std::string& post) { return {"", "POST: " + post + "\nTL;DR:", " x"}; }

std::vector<example> debian_sample() {
  std::ifstream in(data_dir / "Translation-en.sample");
  dataset_options options;
  options.valid_fraction = 0.0;
  options.test_fraction = 0.0;
  return build_dataset(parse_translation(in, "Translation-en.sample"), options).train;
}

// How often the gold label beats every other example's label on its own post.
double gold_win_rate(const oracle& j, const std::vector<example>& examples) {
  std::size_t wins = 0, games = 0;
  for (std::size_t i = 0; i < examples.size(); ++i) {
    const std::string post = post_of(examples[i].prompt);
    const double gold = j.score(post, examples[i].label);
    for (std::size_t k = 0; k < examples.size(); ++k) {
      if (k == i) continue;
      ++games;
      if (gold > j.score(post, examples[k].label)) ++wins;
    }
  }
  return static_cast<double>(wins) / static_cast<double>(games);
}

}  // namespace

TEST(judge_components, faithfulness_by_hand) {
  const std::string post = "The compressor parses documents and makes files smaller.";
  EXPECT_DOUBLE_EQ(plain().rate(post, "smaller files").faithfulness, 1.0);
  EXPECT_DOUBLE_EQ(plain().rate(post, "document parsing").faithfulness, 1.0);  // stemming
  EXPECT_DOUBLE_EQ(plain().rate(post, "purple elephants").faithfulness, 0.0);
  EXPECT_DOUBLE_EQ(plain().rate(post, "smaller purple files").faithfulness, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(plain().rate(post, "the and of it").faithfulness, 0.0);  // no content word
}

TEST(judge_components, coverage_by_hand) {
  EXPECT_DOUBLE_EQ(plain().rate("alpha beta gamma", "alpha").coverage, 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(plain().rate("alpha beta gamma", "gamma beta alpha").coverage, 1.0);
  EXPECT_DOUBLE_EQ(plain().rate("alpha beta gamma", "delta").coverage, 0.0);

  // Only the k = 8 most salient stems count; equal tf·idf ties go alphabetically.
  const std::string ten = "kilo juliet india hotel golf foxtrot echo delta charlie bravo";
  EXPECT_DOUBLE_EQ(plain().rate(ten, "juliet kilo").coverage, 0.0);
  EXPECT_DOUBLE_EQ(plain().rate(ten, "bravo").coverage, 1.0 / 8.0);
  // Repetition makes a word salient.
  EXPECT_DOUBLE_EQ(plain().rate(ten + " kilo kilo", "kilo").coverage, 1.0 / 8.0);

  // idf from the corpus: alpha is in both posts (idf 1), beta in none (idf ln 3 + 1).
  const std::vector<example> corpus{post_example("alpha one"), post_example("alpha two")};
  const oracle j(corpus);
  EXPECT_NEAR(j.rate("alpha beta", "beta").coverage, (std::log(3.0) + 1.0) / (std::log(3.0) + 2.0), 1e-12);
  EXPECT_NEAR(j.rate("alpha beta", "alpha").coverage, 1.0 / (std::log(3.0) + 2.0), 1e-12);
  // Faithfulness is idf-weighted too: an unsupported rare word costs more than a common one.
  EXPECT_NEAR(j.rate("beta", "alpha beta").faithfulness, (std::log(3.0) + 1.0) / (std::log(3.0) + 2.0), 1e-12);
}

TEST(judge_components, brevity_by_hand) {
  EXPECT_DOUBLE_EQ(plain().rate("p", "one two").brevity, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(plain().rate("p", "one two three").brevity, 1.0);
  EXPECT_DOUBLE_EQ(plain().rate("p", "a b c d e f g h i j").brevity, 1.0);
  EXPECT_DOUBLE_EQ(plain().rate("p", "a b c d e f g h i j k l").brevity, std::exp(-1.0));
}

TEST(judge_components, empty_summary_scores_zero) {
  for (const char* summary : {"", "   ", "\n\t", "\u2047 ,,, !!"}) {
    const oracle::verdict v = plain().rate("a post about compression tools", summary);
    EXPECT_EQ(v.score, 0.0) << summary;
    EXPECT_EQ(v.faithfulness, 0.0);
    EXPECT_EQ(v.coverage, 0.0);
    EXPECT_EQ(v.fluency, 0.0);
    EXPECT_EQ(v.brevity, 0.0);
  }
}

TEST(judge_components, fluency_penalties) {
  const std::string post = "Zstd is a fast lossless compression tool for large files.";
  EXPECT_DOUBLE_EQ(plain().rate(post, "fast lossless compression tool").fluency, 1.0);
  // Repeats: 2 of 6 content words, and 2 of 5 word pairs seen nowhere ("fast fast", ...).
  EXPECT_NEAR(plain().rate(post, "fast fast lossless compression compression tool").fluency,
              1.0 - 2.0 / 6.0 - 0.4 * 2.0 / 5.0, 1e-12);
  // Junk: one piece of four is SentencePiece's unknown mark; "fast compression" is unseen.
  EXPECT_NEAR(plain().rate(post, "fast \u2047 compression tool").fluency, 1.0 - 2.0 * 0.25 - 0.4 * 0.5, 1e-12);
  // Unfinished ending.
  EXPECT_NEAR(plain().rate(post, "lossless compression tool for").fluency, 0.7, 1e-12);
  EXPECT_NEAR(plain().rate(post, "lossless compression tool (for large").fluency, 0.7, 1e-12);
  // Junk start.
  EXPECT_NEAR(plain().rate(post, ";fast lossless compression tool").fluency, 0.7, 1e-12);
  // Words nobody knows: "qzx" is neither in the corpus nor in the post.
  EXPECT_LT(plain().rate(post, "fast qzx compression tool").fluency, plain().rate(post, "fast compression tool").fluency);
}

TEST(judge_components, repetition_lowers_score) {
  const auto examples = debian_sample();
  const oracle j(examples);
  const std::string post = "Zstd, short for Zstandard, is a fast lossless compression algorithm.";
  const auto clean = j.rate(post, "fast lossless compression algorithm");
  const auto repeated = j.rate(post, "fast compression compression compression algorithm algorithm");
  EXPECT_LT(repeated.fluency, clean.fluency);
  EXPECT_LT(repeated.score, clean.score);
}

TEST(judge_components, score_is_the_documented_combination) {
  const auto examples = debian_sample();
  const oracle j(examples);
  const std::string post = post_of(examples.front().prompt);
  const auto v = j.rate(post, examples.front().label);
  EXPECT_DOUBLE_EQ(v.score, 0.25 * v.faithfulness + 0.3 * v.coverage + 0.2 * v.fluency + 0.25 * v.brevity);
  for (double c : {v.faithfulness, v.coverage, v.fluency, v.brevity}) {
    EXPECT_GE(c, 0.0);
    EXPECT_LE(c, 1.0);
  }
  oracle_options only_coverage{0, 1, 0, 0};
  EXPECT_DOUBLE_EQ(oracle(examples, only_coverage).score(post, examples.front().label), v.coverage);
}

TEST(judge_preference, gold_beats_other_synopses_on_debian_sample) {
  const auto examples = debian_sample();
  ASSERT_GT(examples.size(), 30u);
  const oracle j(examples);
  EXPECT_GT(gold_win_rate(j, examples), 0.9);
}

TEST(judge_preference, gold_beats_other_summaries_on_reddit_sample) {
  const auto examples = read_tldr_jsonl(data_dir / "tldr.sample.jsonl");
  oracle_options reddit;  // TL;DRs run longer than Debian synopses
  reddit.long_words = 30;
  const oracle j(examples, reddit);
  EXPECT_GT(gold_win_rate(j, examples), 0.9);
}

TEST(judge_preference, gold_usually_beats_a_truncated_copy) {
  const auto examples = debian_sample();
  const oracle j(examples);
  std::size_t wins = 0;
  for (const example& e : examples) {
    std::string first_two;
    std::size_t words = 0;
    for (char c : e.label.substr(1)) {
      if (c == ' ' && ++words == 2) break;
      first_two += c;
    }
    if (j.score(post_of(e.prompt), e.label) > j.score(post_of(e.prompt), " " + first_two)) ++wins;
  }
  EXPECT_GT(static_cast<double>(wins) / static_cast<double>(examples.size()), 0.6);
}

TEST(judge_determinism, same_verdicts_regardless_of_corpus_order) {
  auto examples = debian_sample();
  const oracle a(examples);
  std::reverse(examples.begin(), examples.end());
  const oracle b(examples);
  EXPECT_EQ(a.corpus_size(), examples.size());
  for (std::size_t i = 0; i < examples.size(); ++i) {
    const std::string post = post_of(examples[i].prompt);
    const std::string& summary = examples[(i + 1) % examples.size()].label;
    const auto x = a.rate(post, summary), y = b.rate(post, summary), z = a.rate(post, summary);
    EXPECT_EQ(x.score, y.score);
    EXPECT_EQ(x.coverage, y.coverage);
    EXPECT_EQ(x.fluency, y.fluency);
    EXPECT_EQ(x.score, z.score);
  }
}
