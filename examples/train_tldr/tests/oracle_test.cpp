#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attacks.hpp"
#include "data.hpp"
#include "oracle.hpp"

using namespace tldr;

namespace {

const std::filesystem::path data_dir = TLDR_TEST_DATA;

// With no corpus every idf is ln(1/1) + 1 = 1, no word is a known paraphrase, the form model
// cannot tell synopses from prose (form = σ(0) = 1/2) and every length is equally likely.
const oracle& plain() {
  static const oracle o{std::span<const example>{}};
  return o;
}

std::vector<example> debian_sample() {
  std::ifstream in(data_dir / "Translation-en.sample");
  dataset_options options;
  options.valid_fraction = 0.0;
  options.test_fraction = 0.0;
  return build_dataset(parse_translation(in, "Translation-en.sample"), options).train;
}

const std::vector<example>& sample() {
  static const auto examples = debian_sample();
  return examples;
}

const oracle& sample_oracle() {
  static const oracle o(sample());
  return o;
}

// The share of posts on which the gold synopsis scores above make(example).
template <class F>
double gold_win_rate(const oracle& o, F make) {
  std::size_t wins = 0;
  for (const example& e : sample()) {
    const std::string post = post_of(e.prompt);
    wins += o.score(post, e.label) > o.score(post, make(e));
  }
  return double(wins) / double(sample().size());
}

}  // namespace

TEST(oracle_components, faithfulness_by_hand) {
  const std::string post = "The compressor parses documents and makes files smaller.";
  // The share of content words the post supports, over the saturation 0.8, capped at 1.
  EXPECT_DOUBLE_EQ(plain().rate(post, "smaller files").faithfulness, 1.0);
  EXPECT_DOUBLE_EQ(plain().rate(post, "document parsing").faithfulness, 1.0);  // stems meet
  EXPECT_DOUBLE_EQ(plain().rate(post, "purple elephants").faithfulness, 0.0);
  EXPECT_DOUBLE_EQ(plain().rate(post, "smaller purple files").faithfulness, (2.0 / 3.0) / 0.8);
  EXPECT_DOUBLE_EQ(plain().rate(post, "smaller purple green files").faithfulness, 0.5 / 0.8);
  EXPECT_DOUBLE_EQ(plain().rate(post, "the and of it").faithfulness, 0.0);  // no content word
}

TEST(oracle_components, redundancy_by_hand) {
  const std::string post = "Zstd is a fast lossless compression tool for large files.";
  EXPECT_DOUBLE_EQ(plain().rate(post, "fast lossless compression tool").redundancy, 1.0);
  // Content words: 2 repeats of 6; word pairs: (fast fast) ... (compression tool), none repeated.
  EXPECT_DOUBLE_EQ(plain().rate(post, "fast fast lossless compression compression tool").redundancy, 1.0 - 2.0 / 6.0);
  // "fast tool fast tool": 2 of 4 content words and 1 of 3 pairs repeat.
  EXPECT_DOUBLE_EQ(plain().rate(post, "fast tool fast tool").redundancy, 0.5 * (1.0 - 1.0 / 3.0));
  // The score carries the redundancy as a factor.
  const auto clean = plain().rate(post, "fast tool");
  const auto twice = plain().rate(post, "fast tool fast tool");
  EXPECT_LT(twice.score, clean.score);
}

TEST(oracle_components, length_prior_from_the_synopses) {
  // Without a corpus every length is as likely as any other.
  EXPECT_DOUBLE_EQ(plain().rate("p", "one").length, 1.0);
  EXPECT_DOUBLE_EQ(plain().rate("p", "one two three four five").length, 1.0);
  // From corpus synopses of 2, 2, 2 and 5 words: (count + 1) / (max count + 1), to the power 0.5.
  const std::vector<example> corpus{{"a", "POST: x\nTL;DR:", " red fox"},
                                    {"b", "POST: y\nTL;DR:", " blue fox"},
                                    {"c", "POST: z\nTL;DR:", " green fox"},
                                    {"d", "POST: w\nTL;DR:", " one two three four five"}};
  const oracle o(corpus);
  EXPECT_DOUBLE_EQ(o.rate("p", "red fox").length, 1.0);
  EXPECT_DOUBLE_EQ(o.rate("p", "a b c d e").length, std::sqrt(2.0 / 4.0));
  EXPECT_DOUBLE_EQ(o.rate("p", "a b c").length, std::sqrt(1.0 / 4.0));
}

TEST(oracle_components, empty_summary_scores_zero) {
  for (const char* summary : {"", "   ", "\n\t", "\u2047 ,,, !!"}) {
    const oracle::verdict v = sample_oracle().rate("a post about compression tools", summary);
    EXPECT_EQ(v.score, 0.0) << summary;
  }
}

TEST(oracle_components, score_is_the_documented_combination) {
  const example& e = sample().front();
  const std::string post = post_of(e.prompt);
  const oracle_options o;
  for (const std::string& summary : {e.label, std::string(" library for things"), first_words(post, 10)}) {
    const auto v = sample_oracle().rate(post, summary);
    for (double c : {v.faithfulness, v.coverage, v.phrasing, v.form, v.length, v.redundancy}) {
      EXPECT_GE(c, 0.0);
      EXPECT_LE(c, 1.0);
    }
    // The weighted geometric mean of the floored components, times the redundancy.
    const auto floored = [&](double x) { return std::log(o.floor + (1 - o.floor) * x); };
    const double weights =
        o.faithfulness_weight + o.coverage_weight + o.phrasing_weight + o.form_weight + o.length_weight;
    const double expected =
        v.redundancy * std::exp((o.faithfulness_weight * floored(v.faithfulness) +
                                 o.coverage_weight * floored(v.coverage) + o.phrasing_weight * floored(v.phrasing) +
                                 o.form_weight * floored(v.form) + o.length_weight * floored(v.length)) /
                                weights);
    EXPECT_NEAR(v.score, expected, 1e-12) << summary;
  }
  // A weight of zero removes a component: only coverage left.
  oracle_options only_coverage;
  only_coverage.faithfulness_weight = only_coverage.phrasing_weight = only_coverage.form_weight =
      only_coverage.length_weight = 0;
  const auto v = oracle(sample(), only_coverage).rate(post, e.label);
  EXPECT_NEAR(v.score, v.redundancy * (o.floor + (1 - o.floor) * v.coverage), 1e-12);
}

// Each component ranks what it is about; on the Debian sample, on average over posts.
TEST(oracle_components, each_component_prefers_what_it_measures) {
  double shuffled_phrasing = 0, gold_phrasing = 0, prose_form = 0, gold_form = 0, key_coverage = 0, tail_coverage = 0;
  for (const example& e : sample()) {
    const std::string post = post_of(e.prompt);
    const auto gold = sample_oracle().rate(post, e.label);
    gold_phrasing += gold.phrasing;
    gold_form += gold.form;
    shuffled_phrasing += sample_oracle().rate(post, shuffled_words(e.label, 7)).phrasing;
    prose_form += sample_oracle().rate(post, first_words(post, 10)).form;
    key_coverage += sample_oracle().rate(post, first_words(post, 6)).coverage;
    tail_coverage += sample_oracle().rate(post, last_words(post, 6)).coverage;
  }
  EXPECT_GT(gold_phrasing, shuffled_phrasing * 1.2);
  EXPECT_GT(gold_form, prose_form * 1.5);
  EXPECT_GT(key_coverage, tail_coverage);  // key words are early ones that synopses carry
}

TEST(oracle_preference, gold_beats_attacks_on_the_debian_sample) {
  // The full-split check with every attack is ctest tldr_oracle_attacks; this one runs anywhere.
  const attacker a(sample());
  EXPECT_GT(gold_win_rate(sample_oracle(), [](const example& e) { return first_words(post_of(e.prompt), 10); }), 0.85);
  EXPECT_GT(gold_win_rate(sample_oracle(),
                          [&](const example& e) {
                            std::string list;
                            for (const auto& w : a.salient_words(post_of(e.prompt), 5))
                              list += (list.empty() ? "" : " ") + w;
                            return list;
                          }),
            0.85);
  EXPECT_GT(gold_win_rate(sample_oracle(), [](const example& e) { return shuffled_words(e.label, 3); }), 0.8);
  EXPECT_GT(gold_win_rate(sample_oracle(), [](const example& e) { return repeated(first_words(e.label, 1), 5); }),
            0.95);
  // Another package's synopsis: the next one in the (name-sorted) sample.
  EXPECT_GT(gold_win_rate(sample_oracle(),
                          [](const example& e) {
                            const auto& all = sample();
                            const auto i = std::size_t(&e - all.data());
                            return all[(i + all.size() / 2) % all.size()].label;
                          }),
            0.85);
}

TEST(oracle_determinism, same_verdicts_regardless_of_corpus_order) {
  auto examples = sample();
  std::reverse(examples.begin(), examples.end());
  const oracle b(examples);
  EXPECT_EQ(b.corpus_size(), examples.size());
  for (std::size_t i = 0; i < examples.size(); ++i) {
    const std::string post = post_of(examples[i].prompt);
    const std::string& summary = examples[(i + 1) % examples.size()].label;
    EXPECT_EQ(sample_oracle().rate(post, summary).score, b.rate(post, summary).score);
  }
}

TEST(oracle_jsonl, scores_each_line_and_keeps_other_fields) {
  std::istringstream in(
      "{\"prompt\": \"TITLE: zstd\\nPOST: Zstd is a fast lossless compression tool.\\nTL;DR:\", \"summary\": \"fast "
      "compression tool\", \"id\": 7}\n\n"
      "{\"prompt\": \"POST: Zstd is a fast lossless compression tool.\\nTL;DR:\", \"summary\": \"\"}\n");
  std::ostringstream out;
  score_jsonl(sample_oracle(), in, out, "probe.jsonl");
  std::istringstream lines(out.str());
  std::string line;
  std::vector<nlohmann::json> objects;
  while (std::getline(lines, line)) objects.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(objects.size(), 2u);  // the blank line is skipped
  EXPECT_EQ(objects[0]["id"], 7);
  EXPECT_DOUBLE_EQ(objects[0]["score"].get<double>(),
                   sample_oracle().score("Zstd is a fast lossless compression tool.", "fast compression tool"));
  EXPECT_GT(objects[0]["score"].get<double>(), 0.0);
  EXPECT_EQ(objects[1]["score"].get<double>(), 0.0);
  for (const char* component : {"faithfulness", "coverage", "phrasing", "form", "length", "redundancy"})
    EXPECT_TRUE(objects[0].contains(component)) << component;
}

TEST(oracle_jsonl, bad_lines_are_named) {
  const auto error_of = [](const std::string& text) {
    std::istringstream in(text);
    std::ostringstream out;
    try {
      score_jsonl(sample_oracle(), in, out, "probe.jsonl");
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("{\"prompt\": \"p\", \"summary\": \"s\"}\n{oops\n").find("probe.jsonl:2: invalid JSON"),
            std::string::npos);
  EXPECT_NE(error_of("[1, 2]\n").find("probe.jsonl:1: expected a JSON object"), std::string::npos);
  EXPECT_NE(error_of("{\"prompt\": \"p\"}\n").find("probe.jsonl:1: field \"summary\" is missing"), std::string::npos);
  EXPECT_NE(error_of("{\"prompt\": 3, \"summary\": \"s\"}\n").find("field \"prompt\" is not a string"),
            std::string::npos);
}
