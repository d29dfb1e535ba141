// The per-group loss on raw memory (kernels/group_loss.hpp), the arithmetic the CUDA kernels run:
// against the Eigen brain_loss in float and double, for every goodness model, at the edges, and
// the online logsumexp against a double-precision formula in any split.

#include <brain/kernels/group_loss.hpp>
#include <brain/loss.hpp>

#include "support/typed.hpp"  // error_message, and the user backend

#include <Eigen/Core>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace k = brain::kernels;

template <class S>
using rows = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class S>
struct batch {
  rows<S> lp, lq, l0, r;
  batch(int prompts, int n, unsigned seed) : lp(prompts, n), lq(prompts, n), l0(prompts, n), r(prompts, n) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> normal(0.0, 3.0);
    for (auto* m : {&lp, &lq, &l0, &r})
      for (int i = 0; i < prompts; ++i)
        for (int j = 0; j < n; ++j) (*m)(i, j) = static_cast<S>(normal(rng) - 20.0);
    // A few samples the prior cannot produce (zero target weight), never a whole row.
    if (n > 1)
      for (int i = 0; i < prompts; i += 3) l0(i, (i / 3) % n) = -std::numeric_limits<S>::infinity();
  }
  k::group_loss_inputs<S> inputs() const { return {lp.data(), lq.data(), l0.data(), r.data(), lp.rows(), lp.cols()}; }
};

template <class S>
struct results {
  rows<S> target, baseline, grad;
  Eigen::Matrix<S, Eigen::Dynamic, 1> per_prompt;
  S loss = 0;
  results(int prompts, int n) : target(prompts, n), baseline(prompts, n), grad(prompts, n), per_prompt(prompts) {}
  k::group_loss_outputs<S> outputs() { return {target.data(), baseline.data(), grad.data(), per_prompt.data(), &loss}; }
};

template <class S>
user::matrix to_user(const rows<S>& m) {
  user::matrix out{m.rows(), m.cols(), {}};
  for (int i = 0; i < m.rows(); ++i)
    for (int j = 0; j < m.cols(); ++j) out.data.push_back(static_cast<double>(m(i, j)));
  return out;
}

// Raw kernel vs brain_loss composed from backend operations (the user backend of
// tests/support/vector_backend.hpp, which has no fused path), in double, elementwise within `tol`
// relative to max(1, |expected|) (the weights are in [0, 1]); both memory layouts.
template <class S, class G>
void expect_matches_brain_loss(int prompts, int n, const G& goodness, double tol, unsigned seed) {
  const batch<S> b(prompts, n, seed);
  const auto want = brain::brain_loss(
      brain::samples<user::matrix>{to_user(b.lp), to_user(b.lq), to_user(b.l0), to_user(b.r)}, goodness);
  const auto close = [&](double a, double e) { return std::abs(a - e) <= tol * std::max(1.0, std::abs(e)); };
  for (const bool column_major : {false, true}) {
    using cols = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
    const cols lp = b.lp, lq = b.lq, l0 = b.l0, r = b.r;
    cols target(prompts, n), baseline(prompts, n), grad(prompts, n);
    results<S> got(prompts, n);
    if (column_major) {
      k::cpu_group_loss(
          k::group_loss_inputs<S>{lp.data(), lq.data(), l0.data(), r.data(), prompts, n, true},
          k::group_loss_outputs<S>{target.data(), baseline.data(), grad.data(), got.per_prompt.data(), &got.loss},
          goodness);
      got.target = target, got.baseline = baseline, got.grad = grad;
    } else {
      k::cpu_group_loss(b.inputs(), got.outputs(), goodness);
    }
    for (int i = 0; i < prompts; ++i) {
      ASSERT_TRUE(close(got.per_prompt(i), want.per_prompt[i]))
          << "row " << i << " seed " << seed << " " << column_major;
      for (int j = 0; j < n; ++j) {
        ASSERT_TRUE(close(got.target(i, j), want.target_weights(i, j))) << i << ", " << j << " seed " << seed;
        ASSERT_TRUE(close(got.baseline(i, j), want.baseline_weights(i, j))) << i << ", " << j << " seed " << seed;
        ASSERT_NEAR(got.grad(i, j), want.grad_log_policy(i, j), tol / prompts) << i << ", " << j << " seed " << seed;
      }
    }
    EXPECT_TRUE(close(got.loss, want.loss)) << got.loss << " vs " << want.loss;
  }
}

TEST(GroupKernel, MatchesBrainLossInDouble) {
  for (int n : {1, 2, 7, 8, 9, 32, 33, 1025}) {
    expect_matches_brain_loss<double>(9, n, brain::bradley_terry{}, 1e-13, 100 + n);
    expect_matches_brain_loss<double>(9, n, brain::bradley_terry{.beta = 0.3}, 1e-13, 200 + n);
    expect_matches_brain_loss<double>(9, n, brain::logistic{}, 1e-13, 300 + n);
    expect_matches_brain_loss<double>(9, n, brain::log_goodness{}, 1e-13, 400 + n);
  }
}

TEST(GroupKernel, MatchesBrainLossInFloatWithin1e5) {
  for (int n : {2, 32, 100, 1024})
    for (int prompts : {17, 256, 300})  // column-major tiles are 256 rows: one partial, one whole, one and a bit
      for (unsigned seed : {1u, 2u, 3u}) {
        expect_matches_brain_loss<float>(prompts, n, brain::bradley_terry{}, 1e-5, seed * 1000 + n);
        expect_matches_brain_loss<float>(prompts, n, brain::logistic{}, 1e-5, seed * 2000 + n);
      }
}

// The column-major traversal (tiles of rows, packs of rows, remainder rows one by one) gives the
// row-major traversal's results, at tile boundaries and past them, and with n that is not a
// multiple of the pack width (the row-major loop's scalar tail).
template <class S>
void expect_layouts_agree(double tol) {
  constexpr brain::index W = brain::kernels::simd::width<S>;
  for (int n : {3, 32, 100}) {
    const brain::index tile = k::detail::column_major_tile_rows<S>(n);
    ASSERT_EQ(tile % W, 0);
    for (brain::index prompts : {tile - 1, tile, tile + 1, 2 * tile + W + 1}) {
      const batch<S> b(int(prompts), n, unsigned(prompts + n));
      results<S> row(int(prompts), n);
      k::cpu_group_loss(b.inputs(), row.outputs(), brain::bradley_terry{.beta = 0.5});
      using cols = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
      const cols lp = b.lp, lq = b.lq, l0 = b.l0, r = b.r;
      cols target(prompts, n), baseline(prompts, n), grad(prompts, n);
      Eigen::Matrix<S, Eigen::Dynamic, 1> per_prompt(prompts);
      S loss = 0;
      k::cpu_group_loss(k::group_loss_inputs<S>{lp.data(), lq.data(), l0.data(), r.data(), prompts, n, true},
                        k::group_loss_outputs<S>{target.data(), baseline.data(), grad.data(), per_prompt.data(), &loss},
                        brain::bradley_terry{.beta = 0.5});
      const auto diff = [](const auto& a, const auto& b) {
        return (a.template cast<double>() - b.template cast<double>()).cwiseAbs().maxCoeff();
      };
      EXPECT_LE(diff(target, cols(row.target)), tol) << "n " << n << " prompts " << prompts;
      EXPECT_LE(diff(baseline, cols(row.baseline)), tol) << "n " << n << " prompts " << prompts;
      EXPECT_LE(diff(grad, cols(row.grad)), tol) << "n " << n << " prompts " << prompts;
      const double kl_scale = std::max(1.0, double(row.per_prompt.cwiseAbs().maxCoeff()));  // KLs reach ~20 here
      EXPECT_LE(diff(per_prompt, row.per_prompt), tol * kl_scale) << "n " << n << " prompts " << prompts;
    }
  }
}

TEST(GroupKernel, ColumnMajorTilesMatchRowMajor) {
  expect_layouts_agree<double>(1e-13);
  expect_layouts_agree<float>(1e-5);
}

// Two samples, q = p = q_theta, rewards (0, log 3): alpha-bar = (1/4, 3/4), beta-bar = (1/2, 1/2)
// (eqs. 11, 21), KL = 1/4 log(1/2) + 3/4 log(3/2) (eq. 14), grad = beta-bar - alpha-bar (eq. 12).
TEST(GroupKernel, HandComputedTwoSamples) {
  const double zero[2] = {0, 0}, r[2] = {0, std::log(3.0)};
  double target[2], baseline[2], grad[2], per_prompt[1], loss = -1;
  k::cpu_group_loss(k::group_loss_inputs<double>{zero, zero, zero, r, 1, 2},
                    k::group_loss_outputs<double>{target, baseline, grad, per_prompt, &loss}, brain::bradley_terry{});
  EXPECT_NEAR(target[0], 0.25, 1e-15);
  EXPECT_NEAR(target[1], 0.75, 1e-15);
  EXPECT_NEAR(baseline[1], 0.5, 1e-15);
  EXPECT_NEAR(grad[0], 0.25, 1e-15);
  EXPECT_NEAR(grad[1], -0.25, 1e-15);
  EXPECT_NEAR(loss, 0.25 * std::log(0.5) + 0.75 * std::log(1.5), 1e-15);
}

TEST(GroupKernel, BadInputThrowsNamingRowAndArgument) {
  batch<double> b(4, 3, 5);
  results<double> out(4, 3);
  const auto message = [&] {
    try {
      k::cpu_group_loss(b.inputs(), out.outputs(), brain::bradley_terry{});
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  b.lp(2, 1) = NAN;
  EXPECT_NE(message().find("kernels::cpu_group_loss: log_policy[2, 1] is NaN (must be finite)"), std::string::npos)
      << message();
  b.lp(2, 1) = 0;
  b.lq(1, 0) = INFINITY;
  EXPECT_NE(message().find("log_proposal[1, 0] is +inf (must be finite)"), std::string::npos) << message();
  b.lq(1, 0) = 0;
  b.l0(3, 2) = INFINITY;
  EXPECT_NE(message().find("log_prior[3, 2] is +inf (must be a number below +inf)"), std::string::npos) << message();
  b.l0(3, 2) = 0;
  b.r(0, 0) = NAN;
  EXPECT_NE(message().find("reward[0, 0] is NaN (must be finite)"), std::string::npos) << message();
  b.r(0, 0) = 0;
  b.l0.row(1).setConstant(-INFINITY);
  EXPECT_NE(message().find("row 1: every target weight is zero"), std::string::npos) << message();
  b.l0.row(1).setZero();
  EXPECT_EQ(message(), "no exception");
  // Without validation bad rows give NaN, and the others stay right.
  b.lp(2, 1) = NAN;
  k::cpu_group_loss(b.inputs(), out.outputs(), brain::bradley_terry{}, false);
  EXPECT_TRUE(std::isnan(out.baseline(2, 0)));
  EXPECT_FALSE(std::isnan(out.baseline(1, 0)));
  results<double> empty(1, 1);
  EXPECT_THROW(k::cpu_group_loss(k::group_loss_inputs<double>{b.lp.data(), b.lq.data(), b.l0.data(), b.r.data(), 0, 3},
                                 empty.outputs(), brain::bradley_terry{}),
               std::invalid_argument);
  EXPECT_THROW(k::cpu_group_loss(k::group_loss_inputs<double>{nullptr, b.lq.data(), b.l0.data(), b.r.data(), 4, 3},
                                 out.outputs(), brain::bradley_terry{}),
               std::invalid_argument);
  EXPECT_THROW(k::cpu_group_loss(b.inputs(), out.outputs(), brain::bradley_terry{.beta = -1}), std::invalid_argument);
}

// The raw kernel rejects what brain_loss rejects: a reward of +inf is an error even where its log
// goodness is finite (logistic: log sigmoid(+inf) = 0), and so is an overflowing log beta.
TEST(GroupKernel, RejectsWhatBrainLossRejects) {
  batch<double> b(2, 3, 9);
  results<double> out(2, 3);
  b.r(1, 2) = INFINITY;
  try {
    k::cpu_group_loss(b.inputs(), out.outputs(), brain::logistic{});
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("reward[1, 2] is +inf (must be finite)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(brain::brain_loss(brain::samples<rows<double>>{b.lp, b.lq, b.l0, b.r}, brain::logistic{}),
               std::invalid_argument);
  b.r(1, 2) = 0;
  b.lp(0, 1) = 1e308;
  b.lq(0, 1) = -1e308;
  try {
    k::cpu_group_loss(b.inputs(), out.outputs(), brain::logistic{});
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(
        std::string(e.what()).find("row 0, column 1: log_policy - log_proposal = 1e+308 - -1e+308 overflowed to +inf"),
        std::string::npos)
        << e.what();
  }
}

// The online logsumexp in any split and merge order equals the double formula: the kernels merge
// per-thread partial states in a tree.
TEST(GroupKernel, OnlineLogSumExpAnySplit) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 10.0f);
  for (int n : {1, 2, 31, 32, 33, 1000}) {
    std::vector<float> x(n);
    for (float& v : x) v = normal(rng);
    x[n - 1] += 40.0f;  // a late maximum forces the rescale
    double m = -INFINITY, s = 0;
    for (float v : x) m = std::max(m, double(v));
    for (float v : x) s += std::exp(double(v) - m);
    const double want = m + std::log(s);
    for (int parts : {1, 2, 7, 32}) {
      std::vector<k::online_logsumexp<float>> part(parts);
      for (int i = 0; i < n; ++i) part[i % parts].add(x[i]);
      for (int stride = 1; stride < parts; stride *= 2)  // a tree, as a warp reduces
        for (int p = 0; p + stride < parts; p += 2 * stride) part[p].merge(part[p + stride]);
      EXPECT_NEAR(part[0].value(), want, 2e-6 * std::max(1.0, std::abs(want))) << "n " << n << " parts " << parts;
    }
  }
  k::online_logsumexp<double> e;
  EXPECT_EQ(e.value(), -INFINITY);
  e.add(-INFINITY);
  EXPECT_EQ(e.value(), -INFINITY);
  e.add(std::log(3.0));
  k::online_logsumexp<double> other;
  other.add(0.0);
  e.merge(other);
  EXPECT_DOUBLE_EQ(e.value(), std::log(4.0));
  e.add(INFINITY);
  EXPECT_TRUE(std::isnan(e.value()));
  k::online_logsumexp<double> nan;
  nan.add(NAN);
  other.merge(nan);
  EXPECT_TRUE(std::isnan(other.value()));
}

TEST(GroupKernel, LogitGradientIsTheBackwardElement) {
  const float x[5] = {0.5f, -1.0f, 3.0f, -INFINITY, 2.0f};
  const float lse = k::row_logsumexp(x, 5);
  float grad[5];
  k::token_log_prob_backward(x, 5, 2, lse, 0.7f, grad);
  for (int j = 0; j < 5; ++j) {
    EXPECT_EQ(grad[j], k::logit_gradient(x[j], lse, 0.7f, j == 2)) << j;
    EXPECT_NEAR(grad[j], 0.7 * ((j == 2) - std::exp(double(x[j]) - lse)), 1e-7) << j;
  }
}

}  // namespace

// One vocabulary: for each kind of bad input, the raw kernel, brain_loss on Eigen (the fused
// path, both layouts) and brain_loss composed from backend operations (the user backend) throw
// the same message, up to the function's name.
TEST(GroupKernel, ErrorsReadTheSameOnEveryPath) {
  using edit = void (*)(batch<double>&);
  const edit cases[] = {
      [](batch<double>& b) { b.lp(2, 1) = NAN; },
      [](batch<double>& b) { b.lq(1, 0) = -INFINITY; },
      [](batch<double>& b) { b.l0(3, 2) = INFINITY; },
      [](batch<double>& b) { b.l0(0, 1) = NAN; },
      [](batch<double>& b) { b.r(0, 0) = INFINITY; },
      [](batch<double>& b) { b.l0.row(1).setConstant(-INFINITY); },
      [](batch<double>& b) { b.r(2, 2) = 1e308, b.l0(2, 2) = 1e308, b.lq(2, 2) = -1e308; },
      [](batch<double>& b) { b.lp(3, 0) = 1e308, b.lq(3, 0) = -1e308; },
  };
  for (std::size_t c = 0; c < std::size(cases); ++c) {
    batch<double> b(4, 3, 11);
    cases[c](b);
    results<double> out(4, 3);
    std::string kernel =
        brain_test::error_message([&] { k::cpu_group_loss(b.inputs(), out.outputs(), brain::bradley_terry{}); });
    kernel.replace(kernel.find("kernels::cpu_group_loss"), 23, "brain_loss");
    const std::string composed = brain_test::error_message([&] {
      brain::brain_loss(brain::samples<user::matrix>{to_user(b.lp), to_user(b.lq), to_user(b.l0), to_user(b.r)});
    });
    const std::string fused_rows =
        brain_test::error_message([&] { brain::brain_loss(brain::samples<rows<double>>{b.lp, b.lq, b.l0, b.r}); });
    const std::string fused_columns =
        brain_test::error_message([&] { brain::brain_loss(brain::samples<Eigen::MatrixXd>{b.lp, b.lq, b.l0, b.r}); });
    EXPECT_NE(composed, "no exception") << "case " << c;
    EXPECT_EQ(kernel, composed) << "case " << c;
    EXPECT_EQ(fused_rows, composed) << "case " << c;
    EXPECT_EQ(fused_columns, composed) << "case " << c;
  }
}

// cpu_group_loss_unchecked reports the first bad row and what is wrong with it, in either layout (the
// loops' branch-free probe only knows that a sample is bad; the code names which check failed).
TEST(GroupKernel, ReportNamesTheFirstBadRowAndItsCheck) {
  const auto report_of = [](batch<double>& b, bool column_major) {
    const Eigen::MatrixXd lp = b.lp, lq = b.lq, l0 = b.l0, r = b.r;
    results<double> out(4, 3);
    if (!column_major) return k::cpu_group_loss_unchecked(b.inputs(), out.outputs(), brain::logistic{});
    Eigen::MatrixXd t(4, 3), a(4, 3), g(4, 3);
    return k::cpu_group_loss_unchecked(
        k::group_loss_inputs<double>{lp.data(), lq.data(), l0.data(), r.data(), 4, 3, true},
        k::group_loss_outputs<double>{t.data(), a.data(), g.data(), out.per_prompt.data(), nullptr}, brain::logistic{});
  };
  for (const bool column_major : {false, true}) {
    batch<double> b(4, 3, 21);
    EXPECT_EQ(report_of(b, column_major).row, -1);
    EXPECT_EQ(report_of(b, column_major).status, k::group_status::ok);
    b.r(3, 0) = NAN;  // a later row, bad in another way: the first bad row is reported
    b.r(2, 1) = INFINITY;
    k::group_loss_report got = report_of(b, column_major);
    EXPECT_EQ(got.row, 2) << column_major;
    EXPECT_EQ(got.status, k::group_status::bad_reward) << column_major;
    b.r(2, 1) = 0;
    b.lq(1, 2) = NAN;
    got = report_of(b, column_major);
    EXPECT_EQ(got.row, 1) << column_major;
    EXPECT_EQ(got.status, k::group_status::bad_log_proposal) << column_major;
    b.lq(1, 2) = 0;
    b.lp(0, 0) = 1e308, b.lq(0, 0) = -1e308;
    got = report_of(b, column_major);
    EXPECT_EQ(got.row, 0) << column_major;
    EXPECT_EQ(got.status, k::group_status::baseline_overflow) << column_major;
  }
}
