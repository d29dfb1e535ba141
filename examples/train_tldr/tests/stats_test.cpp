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
  EXPECT_DOUBLE_EQ(
      s.sd,
      std::sqrt(((1 - 7.0 / 3) * (1 - 7.0 / 3) + (2 - 7.0 / 3) * (2 - 7.0 / 3) + (4 - 7.0 / 3) * (4 - 7.0 / 3)) / 2.0));
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
  EXPECT_NE(
      message([] { (void)tldr::pooled_bootstrap({{1, 2}, {1}}, 10, 1); }).find("seed 1 has 1 values but seed 0 has 2"),
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
  // The interval is hierarchical (seeds, then prompts): within the extremes of a resample, -1 (seed
  // 1 drawn twice, its -1 prompt every time) and 2, and wider than any prompt-only interval can be
  // (pooled per prompt the differences are 0.5, -0.5, 1, so such an interval lies in [-0.5, 1]).
  EXPECT_DOUBLE_EQ(d.both.value, 1.0 / 3.0);
  EXPECT_GE(d.both.low, -1.0);
  EXPECT_LE(d.both.high, 2.0);
  EXPECT_LT(d.both.low, -0.5);
  EXPECT_GT(d.both.high, 1.0);
  EXPECT_LT(d.both.low, d.both.high);
  // Wrong shapes are named.
  EXPECT_THROW(tldr::paired_difference_of({{1, 2}}, {{1, 2}, {3, 4}}, 10, 1), std::invalid_argument);
  EXPECT_THROW(tldr::paired_difference_of({{1, 2}}, {{1}}, 10, 1), std::invalid_argument);
}

namespace {

// Two seeds whose prompts agree within each seed: d[0] = {1, 1}, d[1] = {3, 3}. A hierarchical
// resample draws two seeds with replacement, so its mean is 1, 2 or 3 with probabilities 1/4,
// 1/2, 1/4 (prompts within a seed change nothing): the 95% interval is [1, 3] exactly, and the
// share of resamples at each value is binomial. A prompt-only bootstrap (pooled_bootstrap) would
// give [2, 2]: it ignores the seeds' spread.
TEST(stats, hierarchical_bootstrap_by_hand) {
  const std::vector<std::vector<double>> d{{1.0, 1.0}, {3.0, 3.0}};
  const auto h = tldr::hierarchical_bootstrap(d, 4000, 7);
  EXPECT_DOUBLE_EQ(h.value, 2.0);
  EXPECT_DOUBLE_EQ(h.low, 1.0);
  EXPECT_DOUBLE_EQ(h.high, 3.0);
  const auto narrow = tldr::hierarchical_bootstrap(d, 4000, 7, 0.4);  // the 30% and 70% quantiles: both 2
  EXPECT_DOUBLE_EQ(narrow.low, 2.0);
  EXPECT_DOUBLE_EQ(narrow.high, 2.0);
  const auto pooled = tldr::pooled_bootstrap(d, 4000, 7);
  EXPECT_DOUBLE_EQ(pooled.low, 2.0);
  EXPECT_DOUBLE_EQ(pooled.high, 2.0);
  // One seed: the prompt bootstrap of its values (0 or 1 with equal weight, 2 prompts: means 0,
  // 1/2, 1 with probabilities 1/4, 1/2, 1/4).
  const auto one = tldr::hierarchical_bootstrap({{0.0, 1.0}}, 4000, 3);
  EXPECT_DOUBLE_EQ(one.value, 0.5);
  EXPECT_DOUBLE_EQ(one.low, 0.0);
  EXPECT_DOUBLE_EQ(one.high, 1.0);
  // Seeds weigh the same whatever their prompt counts; deterministic given the seed.
  EXPECT_DOUBLE_EQ(tldr::hierarchical_bootstrap({{0.0}, {1.0, 1.0, 1.0}}, 10, 1).value, 0.5);
  const auto again = tldr::hierarchical_bootstrap(d, 4000, 7);
  EXPECT_EQ(again.low, h.low);
  EXPECT_THROW(tldr::hierarchical_bootstrap({}, 10, 1), std::invalid_argument);
  EXPECT_THROW(tldr::hierarchical_bootstrap({{1.0}, {}}, 10, 1), std::invalid_argument);
  EXPECT_THROW(tldr::hierarchical_bootstrap(d, 10, 1, 1.0), std::invalid_argument);
}

// With many seeds, the interval's width follows the seed-level standard error: 8 seeds of means
// ±1 alternately (sd 1.07) and no prompt noise give about ±1.96 · 1.07 / √8 · √(7/8) ≈ ±0.69.
TEST(stats, hierarchical_bootstrap_width_follows_the_seed_spread) {
  std::vector<std::vector<double>> d;
  for (int s = 0; s < 8; ++s) d.push_back(std::vector<double>(50, s % 2 ? 1.0 : -1.0));
  const auto h = tldr::hierarchical_bootstrap(d, 20000, 11);
  EXPECT_NEAR(h.value, 0.0, 1e-12);
  EXPECT_NEAR(h.high, 0.69, 0.08);
  EXPECT_NEAR(h.low, -0.69, 0.08);
}

TEST(stats, verdicts_follow_the_interval_and_the_margin) {
  using tldr::verdict;
  EXPECT_EQ(tldr::verdict_of({0.02, 0.001, 0.04}, 0.01), verdict::ahead);
  EXPECT_EQ(tldr::verdict_of({-0.02, -0.04, -0.001}, 0.01), verdict::behind);
  EXPECT_EQ(tldr::verdict_of({0.0, -0.005, 0.008}, 0.01), verdict::level);
  EXPECT_EQ(tldr::verdict_of({0.0, -0.02, 0.008}, 0.01), verdict::undecided);
  EXPECT_STREQ(tldr::name_of(verdict::undecided), "undecided");
}

}  // namespace
