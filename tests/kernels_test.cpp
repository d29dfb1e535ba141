// The per-row log-prob kernels (kernels/token_log_probs.hpp) on raw memory, without LibTorch:
// against double-precision formulas, at the edges (-inf, NaN, +inf), and as an Eigen trainer
// would call them.

#include <brain/kernels/token_log_probs.hpp>

#include <Eigen/Core>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace {

namespace k = brain::kernels;

double reference_logsumexp(const std::vector<float>& x) {
  double m = -INFINITY;
  for (float v : x) m = std::max(m, double(v));
  double s = 0;
  for (float v : x) s += std::exp(double(v) - m);
  return m + std::log(s);
}

TEST(Kernels, ExpApproxIsAccurateAndExactAtTheEdges) {
  double worst = 0;
  for (float x = -87.0f; x < 88.0f; x += 0.0137f) worst = std::max(worst, std::abs(k::exp_approx(x) / std::exp(double(x)) - 1));
  EXPECT_LT(worst, 2e-7);
  EXPECT_EQ(k::exp_approx(-INFINITY), 0.0f);
  EXPECT_EQ(k::exp_approx(-100.0f), 0.0f);
  EXPECT_EQ(k::exp_approx(0.0f), 1.0f);
  EXPECT_EQ(k::exp_approx(INFINITY), INFINITY);
  EXPECT_TRUE(std::isnan(k::exp_approx(NAN)));
}

TEST(Kernels, RowLogSumExpMatchesDoubleAcrossBlockBoundaries) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  for (int n : {1, 15, 16, 17, 511, 512, 513, 1000, 50257}) {
    std::vector<float> x(n);
    for (float& v : x) v = normal(rng);
    x[n / 2] += 30.0f;  // a late maximum forces the running rescale
    EXPECT_NEAR(k::row_logsumexp(x.data(), n), reference_logsumexp(x), 1e-6 * std::max(1.0, std::abs(reference_logsumexp(x))))
        << "n = " << n;
  }
}

TEST(Kernels, RowLogSumExpEdgeValues) {
  std::vector<float> x(600, -INFINITY);
  EXPECT_EQ(k::row_logsumexp(x.data(), 600), -INFINITY);
  x[599] = 2.0f;  // only the last block has a finite value
  EXPECT_FLOAT_EQ(k::row_logsumexp(x.data(), 600), 2.0f);
  x[3] = NAN;
  EXPECT_TRUE(std::isnan(k::row_logsumexp(x.data(), 600)));
  x[3] = INFINITY;
  EXPECT_TRUE(std::isnan(k::row_logsumexp(x.data(), 600)));
  const std::vector<double> d{std::log(1.0), std::log(3.0)};
  EXPECT_DOUBLE_EQ(k::row_logsumexp(d.data(), 2), std::log(4.0));  // double stays double
}

// The backward row is d [upstream * log p(label)] / d logits: checked against finite differences
// of the forward, in double.
TEST(Kernels, BackwardIsTheDerivativeOfTheForward) {
  std::mt19937 rng(3);
  std::normal_distribution<double> normal(0.0, 2.0);
  const int n = 37, label = 11;
  const double upstream = -0.7;
  std::vector<double> x(n), grad(n);
  for (double& v : x) v = normal(rng);
  k::token_log_prob_backward(x.data(), n, label, k::row_logsumexp(x.data(), n), upstream, grad.data());
  for (int j = 0; j < n; ++j) {
    std::vector<double> plus = x, minus = x;
    plus[j] += 1e-6, minus[j] -= 1e-6;
    const double fd = upstream * (k::token_log_prob(plus.data(), n, label) - k::token_log_prob(minus.data(), n, label)) / 2e-6;
    EXPECT_NEAR(grad[j], fd, 1e-8) << j;
  }
  // In place (grad aliasing the logits) gives the same.
  std::vector<double> in_place = x;
  k::token_log_prob_backward(in_place.data(), n, label, k::row_logsumexp(x.data(), n), upstream, in_place.data());
  for (int j = 0; j < n; ++j) EXPECT_DOUBLE_EQ(in_place[j], grad[j]);
}

// An Eigen trainer: logits of 5 tokens as a row-major float matrix, log-probs of their labels.
TEST(Kernels, UsableFromAnEigenTrainer) {
  using rows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const rows logits = rows::Random(5, 1000) * 8;
  const std::vector<int64_t> labels{0, 999, 500, 3, 77};
  for (int t = 0; t < 5; ++t) {
    const Eigen::VectorXd row = logits.row(t).cast<double>();
    const double expect = row(labels[t]) - (row.maxCoeff() + std::log((row.array() - row.maxCoeff()).exp().sum()));
    EXPECT_NEAR(k::token_log_prob(logits.row(t).data(), 1000, labels[t]), expect, 1e-5);
  }
}

}  // namespace
