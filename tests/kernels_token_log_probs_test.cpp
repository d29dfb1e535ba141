// The per-row log-prob kernels (kernels/token_log_probs.hpp) on raw memory, without LibTorch:
// against double-precision formulas, at the edges (-inf, NaN, +inf), as an Eigen trainer would
// call them, and under a sampler's temperature / top-k / top-p against a plain sort-and-walk.

#include <brain/kernels/token_log_probs.hpp>

#include <Eigen/Core>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
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
  for (float x = -87.0f; x < 88.0f; x += 0.0137f)
    worst = std::max(worst, std::abs(k::exp_branchless(x) / std::exp(double(x)) - 1));
  EXPECT_LT(worst, 2e-7);
  EXPECT_EQ(k::exp_branchless(-INFINITY), 0.0f);
  EXPECT_EQ(k::exp_branchless(-100.0f), 0.0f);
  EXPECT_EQ(k::exp_branchless(0.0f), 1.0f);
  EXPECT_EQ(k::exp_branchless(INFINITY), INFINITY);
  EXPECT_TRUE(std::isnan(k::exp_branchless(NAN)));
}

TEST(Kernels, RowLogSumExpMatchesDoubleAcrossBlockBoundaries) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  for (int n : {1, 15, 16, 17, 511, 512, 513, 1000, 50257}) {
    std::vector<float> x(n);
    for (float& v : x) v = normal(rng);
    x[n / 2] += 30.0f;  // a late maximum forces the running rescale
    EXPECT_NEAR(k::row_logsumexp(x.data(), n), reference_logsumexp(x),
                1e-6 * std::max(1.0, std::abs(reference_logsumexp(x))))
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
// The vocabulary-tiled path: a row added tile by tile (tiles of 1, 5, 16, 100 and the whole
// row, a late maximum so the running maximum moves) gives the row's logsumexp; the written
// numerators, once brought to the final maximum by the returned factors, are exp(v - max); and
// the tiles' backward pieces, the label in one of them, put together are the whole row's.
TEST(Kernels, TilesAddUpToTheWholeRow) {
  std::mt19937 rng(21);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  const int n = 237, label = 150;
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  x[n - 3] += 25.0f;  // the maximum arrives in the last tiles
  const double want = reference_logsumexp(x);
  const k::detail::plain_load<float> load;
  for (const int tile : {1, 5, 16, 100, n}) {
    k::online_logsumexp<float> state;
    std::vector<float> numerators(x);    // written in place, as the fused path does
    std::vector<float> factor(n, 1.0f);  // what each entry must still be multiplied by
    for (int start = 0; start < n; start += tile) {
      const int columns = std::min(tile, n - start);
      const float scale = k::add_tile<true>(state, numerators.data() + start, columns, load, numerators.data() + start);
      for (int j = 0; j < start; ++j) factor[j] *= scale;
    }
    EXPECT_NEAR(state.value(), want, 2e-6 * std::abs(want)) << "tile " << tile;
    double worst = 0;
    for (int j = 0; j < n; ++j)
      worst = std::max(worst, std::abs(double(numerators[j]) * factor[j] - std::exp(double(x[j]) - state.max)));
    EXPECT_LT(worst, 1e-6) << "tile " << tile;
    // Without writing, the same state.
    k::online_logsumexp<float> read_only;
    for (int start = 0; start < n; start += tile)
      k::add_tile<false>(read_only, x.data() + start, std::min(tile, n - start), load);
    EXPECT_EQ(read_only.value(), state.value());
    // Backward by tiles equals the whole row's.
    const float lse = state.value();
    std::vector<float> whole(n), pieces(x);
    k::token_log_prob_backward(x.data(), n, label, lse, 0.75f, whole.data());
    for (int start = 0; start < n; start += tile) {
      const int columns = std::min(tile, n - start);
      const int in_tile = label >= start && label < start + columns ? label - start : -1;
      k::tile_log_prob_backward(pieces.data() + start, columns, in_tile, load, lse, 0.75f, pieces.data() + start);
    }
    EXPECT_EQ(pieces, whole) << "tile " << tile;
  }
}

// Tiles at the edges: a first tile of -inf adds nothing (factor 1, numerators 0), NaN in an
// otherwise -inf tile and +inf anywhere poison the row, exactly as row_logsumexp.
TEST(Kernels, TilesHandleMinusInfNanAndPlusInf) {
  const float inf = std::numeric_limits<float>::infinity();
  const k::detail::plain_load<float> load;
  std::vector<float> row = {-inf, -inf, -inf, 1.0f, 2.0f, 0.5f};
  k::online_logsumexp<float> state;
  EXPECT_EQ(k::add_tile<true>(state, row.data(), 3, load, row.data()), 1.0f);
  EXPECT_EQ(row[0], 0.0f);
  EXPECT_EQ(k::add_tile<true>(state, row.data() + 3, 3, load, row.data() + 3),
            0.0f);  // from "nothing yet" to a maximum
  EXPECT_NEAR(state.value(), std::log(std::exp(1.0) + std::exp(2.0) + std::exp(0.5)), 1e-6);
  for (const std::vector<float>& bad :
       {std::vector<float>{-inf, NAN}, std::vector<float>{1.0f, inf}, std::vector<float>{NAN, 3.0f}}) {
    k::online_logsumexp<float> s;
    std::vector<float> first = {0.0f, -1.0f};
    k::add_tile<false>(s, first.data(), 2, load);
    k::add_tile<false>(s, bad.data(), 2, load);
    EXPECT_TRUE(std::isnan(s.value())) << bad[0] << " " << bad[1];
    EXPECT_TRUE(std::isnan(k::row_logsumexp(bad.data(), 2))) << "row_logsumexp agrees";
  }
}

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
    const double fd =
        upstream * (k::token_log_prob(plus.data(), n, label) - k::token_log_prob(minus.data(), n, label)) / 2e-6;
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

/// log p'(label) under the sampler's settings, written plainly in long double: divide, sort
/// descending, keep >= the k-th largest, walk distinct values keeping each while the mass above
/// it is below top_p, renormalise.
long double plain_sampled(const std::vector<double>& x, int64_t label, const k::sampling& s) {
  using real = long double;
  std::vector<real> v(x.begin(), x.end());
  for (real& e : v) e /= s.temperature;
  std::vector<real> sorted = v;
  std::sort(sorted.begin(), sorted.end(), std::greater<real>());
  real threshold = -INFINITY;
  if (s.top_k > 0 && std::size_t(s.top_k) < sorted.size()) threshold = sorted[std::size_t(s.top_k) - 1];
  const auto lse_above = [&](real t) {
    real z = 0;
    for (real e : sorted)
      if (e >= t) z += std::exp(e - sorted[0]);
    return sorted[0] + std::log(z);
  };
  if (s.top_p < 1) {
    const real top_k_threshold = threshold, z = lse_above(top_k_threshold);
    real above = 0;
    for (std::size_t i = 0; i < sorted.size() && sorted[i] >= top_k_threshold && above < s.top_p;) {
      const real value = sorted[i];
      for (; i < sorted.size() && sorted[i] == value; ++i) above += std::exp(value - z);
      threshold = value;
    }
  }
  return v[std::size_t(label)] < threshold ? -INFINITY : v[std::size_t(label)] - lse_above(threshold);
}

// The kernels' log-prob of the sampled distribution, in double and float, with ties at the
// boundaries (every value appears twice), for every label (-inf where the sampler drops it), and
// its backward against finite differences (the kept set held fixed).
TEST(Kernels, SampledLogProbsAreThoseOfThePlainDefinition) {
  std::mt19937 rng(5);
  std::normal_distribution<double> normal(0.0, 2.0);
  const int n = 64;
  std::vector<double> x(n);
  for (int j = 0; j < n / 2; ++j) x[j] = x[j + n / 2] = normal(rng);
  for (const k::sampling s : {k::sampling{0.6, 0, 1.0}, k::sampling{1.0, 5, 1.0}, k::sampling{1.0, 0, 0.7},
                              k::sampling{1.4, 20, 0.9}, k::sampling{0.8, 1, 0.5}, k::sampling{2.0, 64, 0.2}}) {
    std::vector<double> scratch;
    const double threshold = k::truncation_threshold(x.data(), n, s, scratch);
    const auto row = k::sampled_row_logsumexp(x.data(), n, s, threshold);
    std::vector<float> xf(x.begin(), x.end());
    std::vector<float> scratch_f;
    const auto row_f = k::sampled_row_logsumexp(xf.data(), n, s, k::truncation_threshold(xf.data(), n, s, scratch_f));
    int kept = 0;
    for (int label = 0; label < n; ++label) {
      const long double expect = plain_sampled(x, label, s);
      const double got = k::sampled_token_log_prob(x.data(), label, s, row);
      if (std::isinf(double(expect))) {
        EXPECT_EQ(got, -INFINITY) << label;
        EXPECT_EQ(k::sampled_token_log_prob(xf.data(), label, s, row_f), -INFINITY) << label;
        continue;
      }
      ++kept;
      EXPECT_NEAR(got, double(expect), 1e-13) << "label " << label << " T " << s.temperature;
      EXPECT_NEAR(k::sampled_token_log_prob(xf.data(), label, s, row_f), double(expect), 2e-5) << label;
    }
    EXPECT_GE(kept, 2);  // ties: at least the pair of the largest value
    // Backward: finite differences of the forward with the threshold fixed (a dropped logit has
    // no influence), away from the threshold itself, where a step would move a value across it.
    const int label = int(std::max_element(x.begin(), x.end()) - x.begin());
    std::vector<double> grad(n);
    k::sampled_token_log_prob_backward(x.data(), n, label, s, row, 0.9, grad.data());
    for (int j = 0; j < n; ++j) {
      std::vector<double> plus = x, minus = x;
      plus[j] += 1e-7, minus[j] -= 1e-7;
      const auto at = [&](const std::vector<double>& y) {
        return k::sampled_token_log_prob(y.data(), label, s, k::sampled_row_logsumexp(y.data(), n, s, threshold));
      };
      const double fd = 0.9 * (at(plus) - at(minus)) / 2e-7;
      if (x[j] / s.temperature < threshold) {
        EXPECT_EQ(grad[j], 0.0) << j;
      } else if (x[j] / s.temperature - threshold > 1e-6) {
        EXPECT_NEAR(grad[j], fd, 1e-6) << j;
      }
    }
  }
}

TEST(Kernels, PlainSettingsAreTheUnsampledKernels) {
  const std::vector<float> x{0.5f, -1.0f, 3.0f, 2.0f};
  std::vector<float> scratch;
  const k::sampling plain{};
  EXPECT_TRUE(plain.is_plain());
  EXPECT_EQ(k::truncation_threshold(x.data(), 4, plain, scratch), -INFINITY);
  const auto row = k::sampled_row_logsumexp(x.data(), 4, plain, -INFINITY);
  EXPECT_EQ(k::sampled_token_log_prob(x.data(), 2, plain, row), k::token_log_prob(x.data(), 4, 2));  // bit for bit
  // NaN is never hidden by truncation: the threshold is NaN, and so is every log-prob.
  const std::vector<float> bad{0.5f, NAN, 3.0f};
  EXPECT_TRUE(std::isnan(k::truncation_threshold(bad.data(), 3, k::sampling{1.0, 2, 1.0}, scratch)));
}

}  // namespace
