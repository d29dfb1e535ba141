// Statistics of the evaluation (src/stats.hpp): outcomes, tallies, bootstrap intervals, spreads.
#include "stats.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace {

TEST(stats, outcomes_and_tallies_count_ties_half) {
  const std::vector<double> ours{3, 2, 1, 1}, theirs{1, 2, 2, 3};
  EXPECT_EQ(tldr::outcomes(ours, theirs), (std::vector<double>{1.0, 0.5, 0.0, 0.0}));
  const auto t = tldr::tally(ours, theirs);
  EXPECT_DOUBLE_EQ(t.win, 0.25);
  EXPECT_DOUBLE_EQ(t.tie, 0.25);
  EXPECT_DOUBLE_EQ(t.loss, 0.5);
  EXPECT_DOUBLE_EQ(tldr::bootstrap_win_rate(ours, theirs, 100, 1).value, 0.375);
}

TEST(stats, certain_outcomes_have_degenerate_intervals) {
  const std::vector<double> hi(50, 2.0), lo(50, 1.0);
  const auto w = tldr::bootstrap_win_rate(hi, lo, 200, 1);
  EXPECT_EQ(w.value, 1.0);
  EXPECT_EQ(w.low, 1.0);
  EXPECT_EQ(w.high, 1.0);
  const auto l = tldr::bootstrap_win_rate(lo, hi, 200, 1);
  EXPECT_EQ(l.value, 0.0);
  EXPECT_EQ(l.high, 0.0);
}

TEST(stats, the_interval_matches_the_binomial_width_and_is_deterministic) {
  // 400 prompts, half won: the 95% interval is about ±1.96·sqrt(0.25/400) = ±0.049.
  std::vector<double> ours, theirs;
  for (int i = 0; i < 400; ++i) {
    ours.push_back(i % 2);
    theirs.push_back(0.5);
  }
  const auto w = tldr::bootstrap_win_rate(ours, theirs, 4000, 3);
  EXPECT_DOUBLE_EQ(w.value, 0.5);
  EXPECT_NEAR(w.high - w.low, 2 * 0.049, 0.012);
  const auto again = tldr::bootstrap_win_rate(ours, theirs, 4000, 3);
  EXPECT_EQ(w.low, again.low);
  EXPECT_EQ(w.high, again.high);
}

TEST(stats, the_pooled_bootstrap_resamples_prompts_with_all_their_seeds) {
  // Two seeds that disagree on every prompt average to 0.5 everywhere: no prompt-level
  // variation is left, so the interval is a point. Resampling (seed, prompt) cells
  // independently would give a width of about ±1.96·sqrt(0.25/200) instead.
  std::vector<double> a(100), b(100);
  for (int i = 0; i < 100; ++i) {
    a[i] = i % 2;
    b[i] = 1 - a[i];
  }
  const auto p = tldr::pooled_bootstrap({a, b}, 2000, 5);
  EXPECT_DOUBLE_EQ(p.value, 0.5);
  EXPECT_DOUBLE_EQ(p.low, 0.5);
  EXPECT_DOUBLE_EQ(p.high, 0.5);
  // Identical seeds: the same interval as one seed.
  const auto one = tldr::pooled_bootstrap({a}, 2000, 5), two = tldr::pooled_bootstrap({a, a}, 2000, 5);
  EXPECT_DOUBLE_EQ(one.low, two.low);
  EXPECT_DOUBLE_EQ(one.high, two.high);
}

TEST(stats, spread_by_hand) {
  const auto s = tldr::spread_of({1.0, 2.0, 4.0});
  EXPECT_DOUBLE_EQ(s.mean, 7.0 / 3.0);
  EXPECT_DOUBLE_EQ(s.sd, std::sqrt(((1 - 7.0 / 3) * (1 - 7.0 / 3) + (2 - 7.0 / 3) * (2 - 7.0 / 3) +
                                    (4 - 7.0 / 3) * (4 - 7.0 / 3)) / 2.0));
  EXPECT_EQ(s.min, 1.0);
  EXPECT_EQ(s.max, 4.0);
  EXPECT_EQ(s.count, 3u);
  EXPECT_EQ(tldr::spread_of({5.0}).sd, 0.0);
}

TEST(stats, bad_input_is_named) {
  const auto message = [](auto&& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  EXPECT_NE(message([] { (void)tldr::outcomes({1, 2}, {1}); }).find("2 scores against 1"), std::string::npos);
  EXPECT_NE(message([] { (void)tldr::pooled_bootstrap({{1, 2}, {1}}, 10, 1); }).find("seed 1 has 1 values but seed 0 has 2"),
            std::string::npos);
  EXPECT_NE(message([] { (void)tldr::pooled_bootstrap({}, 10, 1); }).find("no values"), std::string::npos);
  EXPECT_NE(message([] { (void)tldr::mean_of({}); }).find("no values"), std::string::npos);
  EXPECT_NE(message([] { (void)tldr::pooled_bootstrap({{1}}, 0, 1); }).find("resamples = 0"), std::string::npos);
}

}  // namespace

TEST(stats, paired_difference_by_hand) {
  // Seed 0: differences 1, 0, 2 (mean 1); seed 1: 0, -1, 0 (mean -1/3).
  const auto d = tldr::paired_difference_of({{1, 2, 3}, {2, 2, 2}}, {{0, 2, 1}, {2, 3, 2}}, 500, 3);
  ASSERT_EQ(d.per_seed.size(), 2u);
  EXPECT_DOUBLE_EQ(d.per_seed[0], 1.0);
  EXPECT_DOUBLE_EQ(d.per_seed[1], -1.0 / 3.0);
  EXPECT_EQ(d.seeds_ahead, 1u);
  EXPECT_DOUBLE_EQ(d.over_seeds.mean, 1.0 / 3.0);
  EXPECT_NEAR(d.over_seeds.sd, std::sqrt(2.0) * (2.0 / 3.0), 1e-12);  // two values 2/3 either side
  // Pooled per prompt: (1+0)/2, (0-1)/2, (2+0)/2 = 0.5, -0.5, 1; the interval lies within their range.
  EXPECT_DOUBLE_EQ(d.pooled.value, 1.0 / 3.0);
  EXPECT_GE(d.pooled.low, -0.5);
  EXPECT_LE(d.pooled.high, 1.0);
  EXPECT_LT(d.pooled.low, d.pooled.high);
  // Wrong shapes are named.
  EXPECT_THROW(tldr::paired_difference_of({{1, 2}}, {{1, 2}, {3, 4}}, 10, 1), std::invalid_argument);
  EXPECT_THROW(tldr::paired_difference_of({{1, 2}}, {{1}}, 10, 1), std::invalid_argument);
}
