// brain_loss (loss.hpp): the public entry point, against hand-computed values and the scalar
// reference, on every backend.

#include "support/properties.hpp"
#include "support/reference.hpp"

#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace {

using namespace brain_test;
using brain::index;

template <class T>
class LossTest : public ::testing::Test {};
TYPED_TEST_SUITE(LossTest, double_backends, backend_names);

// Two samples, q = p = q_theta uniform, rewards (0, log 3): alpha-bar = (1/4, 3/4) (eq. 21),
// beta-bar = (1/2, 1/2) (eq. 11), KL = 1/4 log(1/2) + 3/4 log(3/2).
TYPED_TEST(LossTest, HandComputedTwoSamples) {
  using T = TypeParam;
  host zero = host::Zero(1, 2), r(1, 2);
  r << 0.0, std::log(3.0);
  const auto out = brain::brain_loss(make_samples<T>(zero, zero, zero, r));
  const double kl = 0.25 * std::log(0.5) + 0.75 * std::log(1.5);
  EXPECT_NEAR(io<T>::to_double(out.loss), kl, 1e-15);
  EXPECT_NEAR(io<T>::to_host_vector(out.per_prompt)(0), kl, 1e-15);
  const host target = io<T>::to_host(out.target_weights), baseline = io<T>::to_host(out.baseline_weights);
  const host grad = io<T>::to_host(out.grad_log_policy);
  EXPECT_NEAR(target(0, 0), 0.25, 1e-15);
  EXPECT_NEAR(target(0, 1), 0.75, 1e-15);
  EXPECT_NEAR(baseline(0, 0), 0.5, 1e-15);
  EXPECT_NEAR(grad(0, 0), 0.25, 1e-15);
  EXPECT_NEAR(grad(0, 1), -0.25, 1e-15);
}

// Two prompts of three samples with a non-trivial proposal, prior and policy; every number
// worked out by hand (see the comments), so a sign or normalisation error shows here.
TYPED_TEST(LossTest, HandComputedTwoPromptsWithImportanceWeights) {
  using T = TypeParam;
  const double l2 = std::log(2.0);
  host lp(2, 3), lq(2, 3), l0(2, 3), r(2, 3);
  // Prompt 0: log alpha = r + l0 - lq = (0, l2, 0) - (0, 0, l2) ... spelled out below.
  lq << 0, 0, l2, /**/ 0, 0, 0;
  l0 << 0, l2, l2, /**/ -INFINITY, 0, 0;
  r << 0, 0, l2, /**/ 5, l2, 0;
  lp << l2, 0, 0, /**/ 0, 0, 0;
  // Prompt 0: log alpha = (0, l2, l2); alpha = (1, 2, 2) -> alpha-bar = (1/5, 2/5, 2/5).
  //           log beta = lp - lq = (l2, 0, -l2); beta = (2, 1, 1/2) -> beta-bar = (4/7, 2/7, 1/7).
  // Prompt 1: alpha = (0, 2, 1) (the prior cannot produce sample 0) -> (0, 2/3, 1/3); beta-bar uniform.
  const double kl0 =
      0.2 * std::log(0.2 / (4.0 / 7)) + 0.4 * std::log(0.4 / (2.0 / 7)) + 0.4 * std::log(0.4 / (1.0 / 7));
  const double kl1 = (2.0 / 3) * std::log((2.0 / 3) * 3) + (1.0 / 3) * std::log((1.0 / 3) * 3);
  const auto out = brain::brain_loss(make_samples<T>(lp, lq, l0, r));
  EXPECT_NEAR(io<T>::to_double(out.loss), (kl0 + kl1) / 2, 1e-14);
  const host_vector per_prompt = io<T>::to_host_vector(out.per_prompt);
  EXPECT_NEAR(per_prompt(0), kl0, 1e-14);
  EXPECT_NEAR(per_prompt(1), kl1, 1e-14);
  host target(2, 3), baseline(2, 3);
  target << 0.2, 0.4, 0.4, /**/ 0, 2.0 / 3, 1.0 / 3;
  baseline << 4.0 / 7, 2.0 / 7, 1.0 / 7, /**/ 1.0 / 3, 1.0 / 3, 1.0 / 3;
  EXPECT_LT(max_abs_diff(io<T>::to_host(out.target_weights), target), 1e-15);
  EXPECT_EQ(io<T>::to_host(out.target_weights)(1, 0), 0.0);  // exactly zero, not tiny
  EXPECT_LT(max_abs_diff(io<T>::to_host(out.baseline_weights), baseline), 1e-15);
  EXPECT_LT(max_abs_diff(io<T>::to_host(out.grad_log_policy), (baseline - target) / 2), 1e-15);
}

TYPED_TEST(LossTest, GoodnessModelsChangeTheTarget) {
  using T = TypeParam;
  host zero = host::Zero(1, 2), r(1, 2);
  r << 0.0, std::log(3.0);
  const auto s = make_samples<T>(zero, zero, zero, r);
  // beta = 1/2: alpha-bar proportional to (1, 9).
  const host bt = io<T>::to_host(brain::brain_loss(s, brain::bradley_terry{.beta = 0.5}).target_weights);
  EXPECT_NEAR(bt(0, 1), 0.9, 1e-15);
  // Logistic (eq. 15): proportional to sigmoid(r) = (1/2, 3/4).
  const host lg = io<T>::to_host(brain::brain_loss(s, brain::logistic{}).target_weights);
  EXPECT_NEAR(lg(0, 1), 0.6, 1e-15);
  // Rewards that are log-goodness already: as Bradley–Terry with beta = 1.
  const host direct = io<T>::to_host(brain::brain_loss(s, brain::log_goodness{}).target_weights);
  EXPECT_NEAR(direct(0, 1), 0.75, 1e-15);
}

// Mutant check: under the argmax target the gradient is beta-bar minus the one-hot target, not
// beta-bar minus the softmax (which leaves the loss unchanged: KL(one-hot || beta-bar) =
// -log beta-bar_best either way). Rewards (0, log 3), uniform beta-bar: gradient (1/2, -1/2).
TYPED_TEST(LossTest, ArgmaxTargetGradientUsesTheOneHot) {
  using T = TypeParam;
  host zero = host::Zero(1, 2), r(1, 2);
  r << 0.0, std::log(3.0);
  const auto out = brain::brain_loss(make_samples<T>(zero, zero, zero, r), brain::bradley_terry{},
                                     {.target = brain::target_rule::argmax});
  EXPECT_NEAR(io<T>::to_double(out.loss), std::log(2.0), 1e-15);
  const host grad = io<T>::to_host(out.grad_log_policy), target = io<T>::to_host(out.target_weights);
  EXPECT_NEAR(grad(0, 0), 0.5, 1e-15);
  EXPECT_NEAR(grad(0, 1), -0.5, 1e-15);
  EXPECT_EQ(target(0, 1), 1.0);
  // Three samples, two prompts, the best sample first in one row and second in the other.
  host lp(2, 3), r3(2, 3);
  lp << 0, -1, -2, /**/ -2, -1, 0;
  r3 << 2, 0, 0, /**/ 0, 1, 0;
  const host z3 = host::Zero(2, 3);
  const auto three = brain::brain_loss(make_samples<T>(lp, z3, z3, r3), brain::bradley_terry{},
                                       {.target = brain::target_rule::argmax});
  const host g3 = io<T>::to_host(three.grad_log_policy);
  const double b0 = 1 / (1 + std::exp(-1.0) + std::exp(-2.0));  // beta-bar of the best sample, row 0
  EXPECT_NEAR(g3(0, 0), (b0 - 1) / 2, 1e-15);
  EXPECT_NEAR(g3(1, 1), (std::exp(-1.0) * b0 - 1) / 2, 1e-15);
}

TYPED_TEST(LossTest, MatchesScalarReferenceOnRandomBatches) {
  using T = TypeParam;
  check_property("brain_loss equals the scalar reference", [] {
    const auto prompts = *rc::gen::inRange<brain::index>(1, 6);
    const auto n = *rc::gen::inRange<brain::index>(1, 9);
    const double beta = *real_in(0.05, 4.0);
    const host_samples h = random_samples(prompts, n);
    const auto out = brain::brain_loss(h.as<T>(), brain::bradley_terry{.beta = beta});
    const auto expect = ref::brain_loss_bt(h.log_policy, h.log_proposal, h.log_prior, h.reward, beta);
    RC_ASSERT(std::abs(io<T>::to_double(out.loss) - expect.loss) < 1e-12);
    RC_ASSERT((io<T>::to_host_vector(out.per_prompt) - expect.per_prompt).cwiseAbs().maxCoeff() < 1e-12);
    RC_ASSERT(max_abs_diff(io<T>::to_host(out.target_weights), expect.target) < 1e-12);
    RC_ASSERT(max_abs_diff(io<T>::to_host(out.baseline_weights), expect.baseline) < 1e-12);
    RC_ASSERT(max_abs_diff(io<T>::to_host(out.grad_log_policy), expect.grad) < 1e-12);
  });
}

// The same comparison at extreme magnitudes: log-probs down to -1e12, rewards up to ±1e12,
// beta from 1e-3 to 1e3, spreads inside a group from 1 to 1e12, some log p = -inf. Values, not
// finiteness, are compared, within the conditioning of the problem: the log weights carry a
// rounding of eps times their magnitude m, so weights are right to ~eps m, and the KL, whose
// terms multiply alpha-bar by log-ratios, to ~eps m (KL + 2 log n).
TYPED_TEST(LossTest, MatchesScalarReferenceAtExtremeMagnitudes) {
  using T = TypeParam;
  check_property("brain_loss = long-double reference at magnitudes up to 1e12", [] {
    const index prompts = *rc::gen::inRange<index>(1, 5), n = *rc::gen::inRange<index>(1, 9);
    const double beta = std::pow(10.0, *real_in(-3, 3));
    const host_samples h = random_extreme_samples(prompts, n, random_magnitude());
    const auto out = brain::brain_loss(h.as<T>(), brain::bradley_terry{.beta = beta});
    const auto expect = ref::brain_loss_bt(h.log_policy, h.log_proposal, h.log_prior, h.reward, beta);
    const double m =
        largest_magnitude({&h.log_policy, &h.log_proposal, &h.log_prior}) * 2 + largest_magnitude({&h.reward}) / beta;
    const double eps = 64 * 2.2e-16, weights_tol = 1e-13 + eps * m;
    const host_vector per_prompt = io<T>::to_host_vector(out.per_prompt);
    for (index i = 0; i < prompts; ++i)
      RC_ASSERT(std::abs(per_prompt(i) - expect.per_prompt(i)) <=
                1e-13 + eps * m * (std::abs(expect.per_prompt(i)) + 2 * std::log(double(n)) + 1));
    RC_ASSERT(std::abs(io<T>::to_double(out.loss) - expect.loss) <=
              1e-13 + eps * m * (std::abs(expect.loss) + 2 * std::log(double(n)) + 1));
    RC_ASSERT(max_abs_diff(io<T>::to_host(out.target_weights), expect.target) <= weights_tol);
    RC_ASSERT(max_abs_diff(io<T>::to_host(out.baseline_weights), expect.baseline) <= weights_tol);
    RC_ASSERT(max_abs_diff(io<T>::to_host(out.grad_log_policy), expect.grad) <= weights_tol);
    // The self-normalised KL of the public weight functions is the same number (eq. 14).
    const T l0 = io<T>::from_host(h.log_prior), lq = io<T>::from_host(h.log_proposal);
    const auto snkl = brain::self_normalized_kl(
        brain::log_target_weights(l0, lq, io<T>::from_host(h.reward), brain::bradley_terry{.beta = beta}),
        brain::log_baseline_weights(io<T>::from_host(h.log_policy), lq));
    const host_vector kl = io<T>::to_host_vector(snkl);
    for (index i = 0; i < prompts; ++i)
      RC_ASSERT(std::abs(kl(i) - expect.per_prompt(i)) <=
                1e-13 + eps * m * (std::abs(expect.per_prompt(i)) + 2 * std::log(double(n)) + 1));
  });
}

// The baseline side overflows only when finite log-probs are more than the largest double apart:
// an error naming the row and column, never a NaN loss.
TYPED_TEST(LossTest, BaselineOverflowIsReportedNotReturned) {
  using T = TypeParam;
  host lp = host::Zero(2, 2), lq = host::Zero(2, 2);
  lp(1, 0) = 1e308;
  lq(1, 0) = -1e308;
  try {
    brain::brain_loss(make_samples<T>(lp, lq, host::Zero(2, 2), host::Zero(2, 2)));
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("brain::brain_loss: row 1, column 0: log_policy - log_proposal"), std::string::npos) << m;
    EXPECT_NE(m.find("+inf"), std::string::npos) << m;
  }
  lp(1, 0) = -1e308;
  lq(1, 0) = 1e308;  // -inf: the sample's baseline weight would be 0 and the KL infinite
  EXPECT_THROW(brain::brain_loss(make_samples<T>(lp, lq, host::Zero(2, 2), host::Zero(2, 2))), std::invalid_argument);
}

TYPED_TEST(LossTest, WeightsAreDistributionsAndGradientRowsSumToZero) {
  using T = TypeParam;
  check_property("rows of alpha-bar and beta-bar sum to 1, gradient rows to 0", [] {
    const host_samples h =
        random_samples(*rc::gen::inRange<brain::index>(1, 5), *rc::gen::inRange<brain::index>(1, 17));
    const auto out = brain::brain_loss(h.as<T>());
    const host target = io<T>::to_host(out.target_weights), baseline = io<T>::to_host(out.baseline_weights);
    RC_ASSERT((target.rowwise().sum().array() - 1).abs().maxCoeff() < 1e-12);
    RC_ASSERT((baseline.rowwise().sum().array() - 1).abs().maxCoeff() < 1e-12);
    RC_ASSERT(target.minCoeff() >= 0.0);
    RC_ASSERT(io<T>::to_host(out.grad_log_policy).rowwise().sum().cwiseAbs().maxCoeff() < 1e-14);
  });
}

TYPED_TEST(LossTest, ExtremeButLegalInputsStayFinite) {
  using T = TypeParam;
  host lp(2, 3), lq(2, 3), l0(2, 3), r(2, 3);
  lp << -1e5, -2, -1e5 + 3, /**/ -1, -1e5, -7;
  lq << -3, -1e5, -4, /**/ -1e5, -2, -1e5;
  l0 << -INFINITY, -1e5, -2, /**/ -1, -INFINITY, -1e5;
  r << 1e6, -1e6, 0, /**/ -1e6, 1e6, 1e6;
  for (const auto& out : {brain::brain_loss(make_samples<T>(lp, lq, l0, r)),
                          brain::brain_loss(make_samples<T>(lp, lq, l0, r), brain::bradley_terry{.beta = 0.01}),
                          brain::brain_loss(make_samples<T>(lp, lq, l0, r), brain::logistic{})}) {
    EXPECT_TRUE(std::isfinite(io<T>::to_double(out.loss)));
    EXPECT_TRUE(io<T>::to_host(out.target_weights).allFinite());
    EXPECT_TRUE(io<T>::to_host(out.baseline_weights).allFinite());
    EXPECT_TRUE(io<T>::to_host(out.grad_log_policy).allFinite());
    EXPECT_EQ(io<T>::to_host(out.target_weights)(0, 0), 0.0);  // -inf prior: zero weight
  }
}

// Large batches (on Eigen, the CPU kernel's column-major tiles of rows, the last one partial, with
// remainder rows past the last whole pack): the result equals the reference, reused output
// tensors are overwritten, and errors name the row in the whole batch.
TYPED_TEST(LossTest, LargeBatchesAreComputedCorrectlyAndReportAbsoluteRows) {
  using T = TypeParam;
  const brain::index prompts = 1999, n = 24;  // 512-row tiles: three, then 463 rows
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> logp(-40, 0), reward(-4, 4);
  host_samples h{host(prompts, n), host(prompts, n), host(prompts, n), host(prompts, n)};
  for (host* m : {&h.log_policy, &h.log_proposal, &h.log_prior})
    for (double& v : m->reshaped()) v = logp(rng);
  for (double& v : h.reward.reshaped()) v = reward(rng);
  h.log_prior(1500, 3) = -INFINITY;
  const auto expect = ref::brain_loss_bt(h.log_policy, h.log_proposal, h.log_prior, h.reward, 0.7);
  brain::loss_result<T> out;
  for (int pass = 0; pass < 2; ++pass) {  // the second pass writes into the first pass's tensors
    brain::brain_loss_into(out, h.as<T>(), brain::bradley_terry{.beta = 0.7});
    EXPECT_NEAR(io<T>::to_double(out.loss), expect.loss, 1e-12);
    EXPECT_LT((io<T>::to_host_vector(out.per_prompt) - expect.per_prompt).cwiseAbs().maxCoeff(), 1e-12);
    EXPECT_LT(max_abs_diff(io<T>::to_host(out.target_weights), expect.target), 1e-12);
    EXPECT_LT(max_abs_diff(io<T>::to_host(out.baseline_weights), expect.baseline), 1e-12);
    EXPECT_LT(max_abs_diff(io<T>::to_host(out.grad_log_policy), expect.grad), 1e-12);
  }
  host_samples bad = h;
  bad.reward(1900, 7) = NAN;
  EXPECT_THROW(
      try { brain::brain_loss(bad.as<T>()); } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("reward[1900, 7]"), std::string::npos) << e.what();
        throw;
      },
      std::invalid_argument);
  bad = h;
  bad.log_prior.row(1800).setConstant(-INFINITY);
  EXPECT_THROW(
      try { brain::brain_loss(bad.as<T>()); } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("row 1800"), std::string::npos) << e.what();
        throw;
      },
      std::invalid_argument);
}

TYPED_TEST(LossTest, ValidationOffGivesTheSameResultOnGoodInput) {
  using T = TypeParam;
  host_samples h{host::Random(3, 4).array() - 2, host::Random(3, 4).array() - 2, host::Random(3, 4).array() - 2,
                 host::Random(3, 4)};
  const auto on = brain::brain_loss(h.as<T>());
  const auto off = brain::brain_loss(h.as<T>(), brain::bradley_terry{}, {.validate = false});
  EXPECT_EQ(io<T>::to_double(on.loss), io<T>::to_double(off.loss));
  EXPECT_EQ(io<T>::to_host(on.grad_log_policy), io<T>::to_host(off.grad_log_policy));
}

}  // namespace
