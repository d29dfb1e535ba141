#pragma once
// RapidCheck helpers: random matrices for properties, and a runner usable inside typed tests.
// RapidCheck prints its configuration (the seed) on the first check and a reproduction string on
// failure; set RC_PARAMS="seed=..." to replay a run.

#include "typed.hpp"

#include <rapidcheck.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <random>
#include <string>
#include <utility>

namespace brain_test {

/// A real in [lo, hi] on a grid of 2^24 points (RapidCheck shrinks it towards lo).
inline rc::Gen<double> real_in(double lo, double hi) {
  return rc::gen::map(rc::gen::inRange(0, 1 << 24), [=](int k) { return lo + (hi - lo) * (k / double(1 << 24)); });
}

/// A rows x cols host matrix of reals in [lo, hi]; call inside a property.
inline host random_matrix(brain::index rows, brain::index cols, double lo, double hi) {
  const auto values = *rc::gen::container<std::vector<double>>(std::size_t(rows * cols), real_in(lo, hi));
  return Eigen::Map<const host>(values.data(), rows, cols);
}

/// Random samples for a [prompts, n] batch: log-probs in [-30, 0], rewards in [-5, 5].
inline host_samples random_samples(brain::index prompts, brain::index n) {
  return {random_matrix(prompts, n, -30, 0), random_matrix(prompts, n, -30, 0), random_matrix(prompts, n, -30, 0),
          random_matrix(prompts, n, -5, 5)};
}

/// A magnitude 10^k with k in {0, 1, 2, 4, 6, 9, 12}: for inputs far from the usual ranges.
inline double random_magnitude() {
  static constexpr double scales[] = {1, 10, 100, 1e4, 1e6, 1e9, 1e12};
  return scales[*rc::gen::inRange<int>(0, 7)];
}

/// rows x cols values offset + noise, offset in [-level, level], noise in [-spread, spread]
/// (per row offsets: extremes in absolute value with modest differences inside a group, or
/// huge differences when spread is large).
inline host random_levels(brain::index rows, brain::index cols, double level, double spread) {
  host m = random_matrix(rows, cols, -spread, spread);
  const host offsets = random_matrix(rows, 1, -level, level);
  for (brain::index i = 0; i < rows; ++i) m.row(i).array() += offsets(i, 0);
  return m;
}

/// Samples at extreme magnitudes: log-probs down to -1e12, rewards up to ±1e12, spreads inside
/// a group from 1 to 1e12, and a few log_prior = -inf (never a whole row). log_policy is
/// log_proposal plus at most `ratio_spread`, so importance ratios stay representable.
inline host_samples random_extreme_samples(brain::index prompts, brain::index n, double ratio_spread = 30) {
  const auto log_probs = [&] {
    const double level = random_magnitude();
    host m = random_levels(prompts, n, level, std::min(level, random_magnitude()));
    return host(m.array() - m.maxCoeff() - 1);  // log-probabilities are <= 0
  };
  host_samples h{host(), log_probs(), log_probs(), random_levels(prompts, n, random_magnitude(), random_magnitude())};
  h.log_policy = h.log_proposal + random_matrix(prompts, n, -ratio_spread, ratio_spread);
  if (n > 1 && *rc::gen::arbitrary<bool>())
    for (brain::index i = 0; i < prompts; ++i) h.log_prior(i, *rc::gen::inRange<brain::index>(0, n)) = -INFINITY;
  return h;
}

/// The largest |value| of the finite entries of the given matrices: the scale of the rounding.
inline double largest_magnitude(std::initializer_list<const host*> ms) {
  double m = 0;
  for (const host* x : ms)
    for (double v : x->reshaped())
      if (std::isfinite(v)) m = std::max(m, std::abs(v));
  return m;
}

/// Runs a RapidCheck property inside a (typed) GoogleTest and fails the test if it fails.
template <class Property>
void check_property(const std::string& name, Property&& property) {
  EXPECT_TRUE(rc::check(name, std::forward<Property>(property))) << "property failed: " << name;
}

}  // namespace brain_test

namespace brain_test {

/// A rows x cols matrix of uniform reals in [0, 1) from a fixed seed, for non-property tests.
inline host random_matrix_host(brain::index rows, brain::index cols, unsigned seed = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  host h(rows, cols);
  for (double& v : h.reshaped()) v = uniform(rng);
  return h;
}

/// Samples from a fixed seed (log-probs in [-30, 0], rewards in [-5, 5]), for non-property tests.
inline host_samples random_samples_host(brain::index prompts, brain::index n, unsigned seed = 1) {
  const auto scaled = [&](unsigned k, double lo, double hi) {
    return host((random_matrix_host(prompts, n, seed * 4 + k).array() * (hi - lo) + lo).matrix());
  };
  return {scaled(0, -30, 0), scaled(1, -30, 0), scaled(2, -30, 0), scaled(3, -5, 5)};
}

}  // namespace brain_test
