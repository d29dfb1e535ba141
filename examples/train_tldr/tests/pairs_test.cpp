// The simulated labellers (stages/pairs.cpp): Plackett–Luce rankings and their comparisons.
#include "checkpoint.hpp"
#include "stages.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

namespace {
namespace fs = std::filesystem;

TEST(pairs, noisy_rankings_are_permutations_and_follow_bradley_terry_pair_by_pair) {
  const std::vector<double> scores{0.50, 0.53, 0.40, 0.56};
  const double temperature = 0.03;
  // P(i above j) = σ((s_i − s_j) / τ) for every pair, whatever the other responses (Luce's axiom).
  std::vector<std::vector<double>> above(4, std::vector<double>(4, 0.0));
  const int draws = 20000;
  for (int d = 0; d < draws; ++d) {
    const auto order = tldr::noisy_ranking(scores, temperature, std::uint64_t(d));
    ASSERT_EQ(std::set<std::size_t>(order.begin(), order.end()).size(), 4u);
    for (std::size_t a = 0; a < 4; ++a)
      for (std::size_t b = a + 1; b < 4; ++b) above[order[a]][order[b]] += 1.0 / draws;
  }
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < 4; ++j) {
      if (i == j) continue;
      const double expected = 1.0 / (1.0 + std::exp(-(scores[i] - scores[j]) / temperature));
      EXPECT_NEAR(above[i][j], expected, 0.012) << i << " above " << j;  // ~4 standard errors
    }
  // Noise-free in the limit: a tiny temperature sorts by score.
  EXPECT_EQ(tldr::noisy_ranking(scores, 1e-9, 3), (std::vector<std::size_t>{3, 1, 0, 2}));
  EXPECT_EQ(tldr::noisy_ranking(scores, 0.5, 3), tldr::noisy_ranking(scores, 0.5, 3));
  EXPECT_THROW((void)tldr::noisy_ranking(scores, 0.0, 1), std::invalid_argument);
}

TEST(pairs, a_ranking_gives_every_comparison_once_chosen_above_rejected) {
  const tldr::ranking_record r{7, {{10}, {11}, {12}}, {0.1, 0.9, 0.5}, {1, 2, 0}, 2};
  const auto pairs = tldr::pairs_of(r);
  ASSERT_EQ(pairs.size(), 3u);
  EXPECT_EQ(pairs[0].chosen, (tldr::tokens{11}));
  EXPECT_EQ(pairs[0].rejected, (tldr::tokens{12}));
  EXPECT_EQ(pairs[1].chosen, (tldr::tokens{11}));
  EXPECT_EQ(pairs[1].rejected, (tldr::tokens{10}));
  EXPECT_EQ(pairs[2].chosen, (tldr::tokens{12}));
  EXPECT_EQ(pairs[2].rejected, (tldr::tokens{10}));
  EXPECT_DOUBLE_EQ(pairs[2].oracle_chosen, 0.5);
  EXPECT_TRUE(pairs[0].against_gold);  // response 2 is the gold summary
  EXPECT_FALSE(pairs[1].against_gold);
  EXPECT_EQ(pairs[1].index, 7u);
}

TEST(pairs, malformed_rankings_are_named_with_file_and_line) {
  const auto dir = fs::temp_directory_path() / ("tldr-pairs-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string good = R"({"index":1,"responses":[[1],[2]],"oracle":[0.1,0.2],"order":[1,0],"gold":-1})";
  tldr::atomic_write_text(dir / "ok.jsonl", good + "\n" + good + "\n");
  EXPECT_EQ(tldr::read_rankings(dir / "ok.jsonl").size(), 2u);
  for (const std::string bad : {R"({"index":1,"responses":[[1],[2]],"oracle":[0.1,0.2],"order":[1,1],"gold":-1})",
                                R"({"index":1,"responses":[[1],[2]],"oracle":[0.1],"order":[1,0],"gold":-1})",
                                R"({"index":1,"responses":[[1],[2]],"oracle":[0.1,0.2],"order":[1,0],"gold":2})",
                                R"({"index":1,"responses":[[1],[2]],"oracle":[0.1,0.2],"order":[1,0]})", "not json"}) {
    tldr::atomic_write_text(dir / "bad.jsonl", good + "\n" + bad + "\n");
    try {
      (void)tldr::read_rankings(dir / "bad.jsonl");
      FAIL() << "accepted " << bad;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("bad.jsonl:2:"), std::string::npos) << e.what();
    }
  }
  fs::remove_all(dir);
}

}  // namespace
