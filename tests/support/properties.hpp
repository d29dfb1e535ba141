#pragma once
// RapidCheck helpers: random matrices for properties, and a runner usable inside typed tests.
// RapidCheck prints its configuration (the seed) on the first check and a reproduction string on
// failure; set RC_PARAMS="seed=..." to replay a run.

#include "typed.hpp"

#include <rapidcheck.h>

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

}  // namespace brain_test
