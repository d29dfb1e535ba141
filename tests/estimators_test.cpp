// The estimator family of brain-math.md §7 (estimators.hpp): row sums as documented, BRAIn's
// coefficients equal to minus the loss gradient, and DPG / GDC++ unbiased for the distillation
// gradient by exact enumeration when the normaliser is known.

#include "support/properties.hpp"
#include "support/reference.hpp"

#include <cmath>
#include <vector>

namespace {

using namespace brain_test;
using brain::estimator;
using brain::index;

template <class T>
class EstimatorTest : public ::testing::Test {};
TYPED_TEST_SUITE(EstimatorTest, double_backends, backend_names);

TYPED_TEST(EstimatorTest, RowSumsAreAsDocumented) {
  using T = TypeParam;
  check_property("row sums: brain 0, no_baseline 1, DPG 1, GDC++ 1 - sum(beta)/n (estimated Z)", [] {
    const index prompts = *rc::gen::inRange<index>(1, 5), n = *rc::gen::inRange<index>(1, 12);
    host_samples h = random_samples(prompts, n);
    h.log_policy = h.log_proposal + random_matrix(prompts, n, -1, 1);  // keep beta = q_theta / q moderate
    const auto s = h.as<T>();
    const auto sums = [&](estimator e) { return Eigen::VectorXd(io<T>::to_host(brain::gradient_coefficients(s, e)).rowwise().sum()); };
    RC_ASSERT(sums(estimator::brain).cwiseAbs().maxCoeff() < 1e-14);
    RC_ASSERT((sums(estimator::no_baseline).array() - 1).abs().maxCoeff() < 1e-14);
    RC_ASSERT((sums(estimator::dpg).array() - 1).abs().maxCoeff() < 1e-13);
    const Eigen::VectorXd beta_sum = (h.log_policy - h.log_proposal).array().exp().rowwise().sum();
    RC_ASSERT((sums(estimator::gdc_pp).array() - (1 - beta_sum.array() / double(n))).abs().maxCoeff() < 1e-12);
  });
}

TYPED_TEST(EstimatorTest, BrainCoefficientsAreMinusTheScaledLossGradient) {
  using T = TypeParam;
  check_property("alpha-bar - beta-bar = -prompts * grad_log_policy", [] {
    const index prompts = *rc::gen::inRange<index>(1, 5), n = *rc::gen::inRange<index>(1, 12);
    const host_samples h = random_samples(prompts, n);
    const host c = io<T>::to_host(brain::gradient_coefficients(h.as<T>(), estimator::brain));
    const host g = io<T>::to_host(brain::brain_loss(h.as<T>()).grad_log_policy);
    RC_ASSERT(max_abs_diff(c, -double(prompts) * g) < 1e-14);
  });
}

// With the exact normaliser Z = sum_y p(y) exp(r(y)), DPG's and GDC++'s expected direction over
// tuples from q equals the distillation gradient grad_theta L = posterior - softmax(theta) (eq. 3)
// for a softmax policy; BRAIn's is only consistent (biased for finite n), as the paper says.
TYPED_TEST(EstimatorTest, DpgAndGdcAreUnbiasedWithTheExactNormaliser) {
  using T = TypeParam;
  check_property("E[DPG] = E[GDC++] = posterior - policy", [] {
    const index k = *rc::gen::inRange<index>(2, 5), n = *rc::gen::inRange<index>(1, 4);
    const auto vec = [&](double lo, double hi) { return Eigen::VectorXd(random_matrix(k, 1, lo, hi)); };
    const auto normalise = [](Eigen::VectorXd x) {
      const double m = x.maxCoeff();
      return Eigen::VectorXd(x.array() - (m + std::log((x.array() - m).exp().sum())));
    };
    const Eigen::VectorXd l0 = normalise(vec(-2, 2)), lq = normalise(vec(-2, 2)), r = vec(-2, 2), lp = normalise(vec(-2, 2));
    const double log_z = std::log((l0 + r).array().exp().sum());
    const Eigen::VectorXd posterior = (l0 + r).array() - log_z, policy = lp.array().exp();
    // All k^n tuples, one per row.
    const index rows = index(std::pow(k, n));
    host_samples h{host(rows, n), host(rows, n), host(rows, n), host(rows, n)};
    Eigen::VectorXd prob = Eigen::VectorXd::Ones(rows);
    std::vector<std::vector<index>> tuple(rows, std::vector<index>(n));
    for (index t = 0; t < rows; ++t)
      for (index i = 0, code = t; i < n; ++i, code /= k) {
        const index y = code % k;
        tuple[t][i] = y;
        h.log_policy(t, i) = lp(y), h.log_proposal(t, i) = lq(y), h.log_prior(t, i) = l0(y), h.reward(t, i) = r(y);
        prob(t) *= std::exp(lq(y));
      }
    const T log_partition = io<T>::from_host(host::Constant(rows, 1, log_z));
    for (estimator e : {estimator::dpg, estimator::gdc_pp}) {
      const host w = io<T>::to_host(brain::gradient_coefficients(h.as<T>(), e, brain::bradley_terry{}, log_partition));
      Eigen::VectorXd expected = Eigen::VectorXd::Zero(k);
      for (index t = 0; t < rows; ++t)
        for (index i = 0; i < n; ++i) {
          Eigen::VectorXd score = -policy;
          score(tuple[t][i]) += 1;
          expected += prob(t) * w(t, i) * score;
        }
      const Eigen::VectorXd truth = posterior.array().exp().matrix() - policy;
      RC_ASSERT((expected - truth).cwiseAbs().maxCoeff() < 1e-12);
    }
  });
}

TYPED_TEST(EstimatorTest, KnownNormaliserEntersDpgAsDocumented) {
  using T = TypeParam;
  host zero = host::Zero(1, 2), r(1, 2);
  r << 0.0, std::log(3.0);  // alpha = (1, 3)
  const T log_z = io<T>::from_host(host::Constant(1, 1, std::log(8.0)));
  const host dpg = io<T>::to_host(brain::gradient_coefficients(make_samples<T>(zero, zero, zero, r), estimator::dpg,
                                                                brain::bradley_terry{}, log_z));
  EXPECT_NEAR(dpg(0, 0), 1.0 / 16, 1e-15);  // alpha / (n Z) = 1 / (2 * 8)
  EXPECT_NEAR(dpg(0, 1), 3.0 / 16, 1e-15);
  const host gdc = io<T>::to_host(brain::gradient_coefficients(make_samples<T>(zero, zero, zero, r), estimator::gdc_pp,
                                                                brain::bradley_terry{}, log_z));
  EXPECT_NEAR(gdc(0, 1), (3.0 / 8 - 1) / 2, 1e-15);  // (alpha / Z - beta) / n with beta = 1
  EXPECT_THROW(brain::gradient_coefficients(make_samples<T>(zero, zero, zero, r), estimator::dpg, brain::bradley_terry{},
                                            io<T>::from_host(host::Zero(2, 1))),
               std::invalid_argument);
}

}  // namespace
