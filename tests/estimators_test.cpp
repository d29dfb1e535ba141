// The estimator family (estimators.hpp): row sums as documented, BRAIn's coefficients equal to
// minus the loss gradient (under either target rule), DPG / GDC++ unbiased for the distillation
// gradient by exact enumeration when the normaliser is known, the policy-gradient estimators
// (RLOO, GRPO, PPO-clip) by hand and against the long-double reference at extreme magnitudes,
// and no non-finite coefficient ever returned. The theorems about RLOO are in theorems_test.

#include "support/properties.hpp"
#include "support/reference.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>
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
    const auto sums = [&](estimator e) {
      return Eigen::VectorXd(io<T>::to_host(brain::gradient_coefficients(s, e)).rowwise().sum());
    };
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
    const Eigen::VectorXd l0 = normalise(vec(-2, 2)), lq = normalise(vec(-2, 2)), r = vec(-2, 2),
                          lp = normalise(vec(-2, 2));
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
    const auto log_partition = tensor_from_host<T>(host::Constant(rows, 1, log_z));
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
  const auto log_z = tensor_from_host<T>(host::Constant(1, 1, std::log(8.0)));
  const host dpg = io<T>::to_host(brain::gradient_coefficients(make_samples<T>(zero, zero, zero, r), estimator::dpg,
                                                               brain::bradley_terry{}, log_z));
  EXPECT_NEAR(dpg(0, 0), 1.0 / 16, 1e-15);  // alpha / (n Z) = 1 / (2 * 8)
  EXPECT_NEAR(dpg(0, 1), 3.0 / 16, 1e-15);
  const host gdc = io<T>::to_host(brain::gradient_coefficients(make_samples<T>(zero, zero, zero, r), estimator::gdc_pp,
                                                               brain::bradley_terry{}, log_z));
  EXPECT_NEAR(gdc(0, 1), (3.0 / 8 - 1) / 2, 1e-15);  // (alpha / Z - beta) / n with beta = 1
  EXPECT_THROW(brain::gradient_coefficients(make_samples<T>(zero, zero, zero, r), estimator::dpg,
                                            brain::bradley_terry{}, tensor_from_host<T>(host::Zero(2, 1))),
               std::invalid_argument);
}

// Mutant check: the argmax target must reach the coefficients (one-hot, not the softmax).
TYPED_TEST(EstimatorTest, BrainCoefficientsUseTheArgmaxTarget) {
  using T = TypeParam;
  host zero = host::Zero(1, 2), r(1, 2);
  r << 0.0, std::log(3.0);  // softmax target (1/4, 3/4), argmax (0, 1); beta-bar = (1/2, 1/2)
  const auto s = make_samples<T>(zero, zero, zero, r);
  const brain::options argmax{.target = brain::target_rule::argmax};
  const host brain_w =
      io<T>::to_host(brain::gradient_coefficients(s, estimator::brain, brain::bradley_terry{}, argmax));
  EXPECT_NEAR(brain_w(0, 0), -0.5, 1e-15);
  EXPECT_NEAR(brain_w(0, 1), 0.5, 1e-15);
  const host plain =
      io<T>::to_host(brain::gradient_coefficients(s, estimator::no_baseline, brain::bradley_terry{}, argmax));
  EXPECT_EQ(plain(0, 0), 0.0);
  EXPECT_EQ(plain(0, 1), 1.0);
  const host soft = io<T>::to_host(brain::gradient_coefficients(s, estimator::brain));
  EXPECT_NEAR(soft(0, 1), 0.25, 1e-15);
}

// One prompt, three samples, every number by hand (beta = 1):
//   L = r + log p - log q_theta = (0.5 - 1.5 + 1, -1 - 1.5 + 2, 2 - 2 + 3) = (0, -0.5, 3)
//   A_i = L_i - mean of the others = (0 - 1.25, -0.5 - 1.5, 3 + 0.25) = (-1.25, -2, 3.25)
//   rho = exp(log q_theta - log q) = (e^0.1, e^0.2, e^-0.1);  w = rho A / 3.
TYPED_TEST(EstimatorTest, RlooByHand) {
  using T = TypeParam;
  host lp(1, 3), lq(1, 3), l0(1, 3), r(1, 3);
  lp << -1, -2, -3;
  lq << -1.1, -2.2, -2.9;
  l0 << -1.5, -1.5, -2;
  r << 0.5, -1, 2;
  const host w = io<T>::to_host(brain::gradient_coefficients(make_samples<T>(lp, lq, l0, r), estimator::rloo));
  const double expect[] = {std::exp(0.1) * -1.25 / 3, std::exp(0.2) * -2 / 3, std::exp(-0.1) * 3.25 / 3};
  for (index j = 0; j < 3; ++j) EXPECT_NEAR(w(0, j), expect[j], 1e-15) << j;
  // On-policy (rho = 1) the advantages sum to zero; beta scales L by 1 / beta.
  const host on = io<T>::to_host(
      brain::gradient_coefficients(make_samples<T>(lp, lp, l0, r), estimator::rloo, brain::bradley_terry{.beta = 0.5}));
  EXPECT_NEAR(on.sum(), 0.0, 1e-15);
  EXPECT_NEAR(on(0, 0), (2 * 0.5 - 1.5 + 1 - ((2 * -1.0 - 1.5 + 2) + (2 * 2.0 - 2 + 3)) / 2) / 3, 1e-15);
}

// GRPO, on-policy (rho = 1, nothing clipped): rewards (0, 1, 2) have mean 1 and unbiased std 1,
// so A = (-1, 0, 1) / (1 + 1e-4) and w = A / 3; the k3 term adds kl_coef (p / q_theta - 1) / 3.
TYPED_TEST(EstimatorTest, GrpoByHand) {
  using T = TypeParam;
  const double l2 = std::log(2.0), a = 1 / (1 + 1e-4);
  host zero = host::Zero(1, 3), r(1, 3), l0(1, 3);
  r << 0, 1, 2;
  l0 << l2, 0, -l2;  // p / q_theta = (2, 1, 1/2)
  const auto s = make_samples<T>(zero, zero, l0, r);
  const host w = io<T>::to_host(
      brain::gradient_coefficients(s, estimator::grpo, brain::bradley_terry{}, brain::policy_gradient_options{}));
  EXPECT_NEAR(w(0, 0), -a / 3, 1e-15);
  EXPECT_NEAR(w(0, 1), 0.0, 1e-15);
  EXPECT_NEAR(w(0, 2), a / 3, 1e-15);
  const host kl = io<T>::to_host(brain::gradient_coefficients(s, estimator::grpo, brain::bradley_terry{},
                                                              brain::policy_gradient_options{.kl_coef = 0.5}));
  EXPECT_NEAR(kl(0, 0), (-a + 0.5 * (2 - 1)) / 3, 1e-15);
  EXPECT_NEAR(kl(0, 2), (a + 0.5 * (0.5 - 1)) / 3, 1e-15);
  // scale_rewards = none: A = r - mean; batch: one prompt, so the batch std is the group's.
  const host none = io<T>::to_host(
      brain::gradient_coefficients(s, estimator::grpo, brain::bradley_terry{},
                                   brain::policy_gradient_options{.scale_rewards = brain::advantage_scaling::none}));
  EXPECT_NEAR(none(0, 2), 1.0 / 3, 1e-15);
  const host batch = io<T>::to_host(
      brain::gradient_coefficients(s, estimator::grpo, brain::bradley_terry{},
                                   brain::policy_gradient_options{.scale_rewards = brain::advantage_scaling::batch}));
  EXPECT_NEAR(batch(0, 2), a / 3, 1e-15);
}

// The clipped estimators' trust region: with ratios rho = (1.5, 1, 0.5) and clip 0.2, a positive
// advantage above 1.2 and a negative one below 0.8 get coefficient 0 (clipped); a negative
// advantage above 1.2 and a positive one below 0.8 keep rho A / n (PPO clips one side only).
TYPED_TEST(EstimatorTest, ClippedEstimatorsZeroOnlyTheClippedSide) {
  using T = TypeParam;
  const double a = 1 / (1 + 1e-4);
  host lp(1, 3), zero = host::Zero(1, 3), up(1, 3), down(1, 3);
  lp << std::log(1.5), 0, std::log(0.5);
  up << 2, 1, 0;    // A = (1, 0, -1) a: both moves already past the clip
  down << 0, 1, 2;  // A = (-1, 0, 1) a: both moves undone are never clipped
  const auto w = [&](const host& r) {
    return io<T>::to_host(brain::gradient_coefficients(make_samples<T>(lp, zero, zero, r), estimator::grpo,
                                                       brain::bradley_terry{}, brain::policy_gradient_options{}));
  };
  const host clipped = w(up), kept = w(down);
  EXPECT_EQ(clipped(0, 0), 0.0);
  EXPECT_EQ(clipped(0, 2), 0.0);
  EXPECT_NEAR(kept(0, 0), -1.5 * a / 3, 1e-15);
  EXPECT_NEAR(kept(0, 2), 0.5 * a / 3, 1e-15);
  // clip_high widens only the upper side (DAPO's clip-higher).
  const host wide = io<T>::to_host(brain::gradient_coefficients(make_samples<T>(lp, zero, zero, up), estimator::grpo,
                                                                brain::bradley_terry{},
                                                                brain::policy_gradient_options{.clip_high = 0.6}));
  EXPECT_NEAR(wide(0, 0), 1.5 * a / 3, 1e-15);
  EXPECT_EQ(wide(0, 2), 0.0);
}

// PPO-clip: A = whiten(log g + log p - log q) over the batch. Rewards (0, 2), log-probs 0: mean 1,
// unbiased variance 2, so A = (-1, 1) / sqrt(2 + 1e-8) and w = A / 2 on-policy.
TYPED_TEST(EstimatorTest, PpoClipByHand) {
  using T = TypeParam;
  host zero = host::Zero(1, 2), r(1, 2);
  r << 0, 2;
  const host w = io<T>::to_host(brain::gradient_coefficients(make_samples<T>(zero, zero, zero, r), estimator::ppo_clip,
                                                             brain::bradley_terry{}, brain::policy_gradient_options{}));
  EXPECT_NEAR(w(0, 0), -0.5 / std::sqrt(2 + 1e-8), 1e-15);
  EXPECT_NEAR(w(0, 1), 0.5 / std::sqrt(2 + 1e-8), 1e-15);
}

TYPED_TEST(EstimatorTest, PolicyGradientEstimatorsMatchTheReferenceAtAnyMagnitude) {
  using T = TypeParam;
  check_property("rloo, grpo (3 scalings, with KL), ppo_clip = long-double reference, magnitudes up to 1e12", [] {
    const index prompts = *rc::gen::inRange<index>(1, 5), n = *rc::gen::inRange<index>(2, 9);
    const double beta = std::pow(10.0, *real_in(-2, 2));
    const double clip_low = *real_in(0, 0.5), clip_high = *real_in(0, 0.5);
    const bool extreme = *rc::gen::arbitrary<bool>();
    host_samples h = extreme ? random_extreme_samples(prompts, n, 3) : random_samples(prompts, n);
    if (!extreme) h.log_policy = h.log_proposal + random_matrix(prompts, n, -1, 1);
    h.log_prior = h.log_prior.unaryExpr([&](double v) { return std::isfinite(v) ? v : h.log_proposal.minCoeff(); });
    // The k3 term's exp(log p - log q_theta) must stay finite: only with nearby prior and policy.
    const double kl_coef = extreme ? 0.0 : *real_in(0, 1);
    const host log_g = ref::log_goodness_bt(h.reward, beta);
    const std::pair<ref::pg, estimator> kinds[] = {{ref::pg::rloo, estimator::rloo},
                                                   {ref::pg::grpo_group, estimator::grpo},
                                                   {ref::pg::grpo_batch, estimator::grpo},
                                                   {ref::pg::grpo_none, estimator::grpo},
                                                   {ref::pg::ppo_clip, estimator::ppo_clip}};
    const brain::advantage_scaling scaling[] = {brain::advantage_scaling::group, brain::advantage_scaling::group,
                                                brain::advantage_scaling::batch, brain::advantage_scaling::none,
                                                brain::advantage_scaling::group};
    for (int k = 0; k < 5; ++k) {
      const auto [reference_kind, kind] = kinds[k];
      const brain::policy_gradient_options pg{
          .clip_low = clip_low, .clip_high = clip_high, .kl_coef = kl_coef, .scale_rewards = scaling[k]};
      const host w =
          io<T>::to_host(brain::gradient_coefficients(h.as<T>(), kind, brain::bradley_terry{.beta = beta}, pg));
      const ref::estimate expect =
          ref::policy_gradient(reference_kind, h.log_policy, h.log_proposal, h.log_prior, log_g, clip_low, clip_high,
                               kind == estimator::grpo ? kl_coef : 0.0);
      for (index i = 0; i < prompts; ++i)
        for (index j = 0; j < n; ++j) {
          const double rho = std::exp(h.log_policy(i, j) - h.log_proposal(i, j));
          const double tol =
              64 * 2.2e-16 *
                  ((1 + rho) *
                       ref::advantage_condition(reference_kind, h.log_policy, h.log_proposal, h.log_prior, log_g, i) /
                       double(n) +
                   std::abs(expect.w(i, j)) * 40) +
              1e-15;
          RC_ASSERT(std::abs(w(i, j) - expect.w(i, j)) <= tol);
        }
    }
  });
}

// No coefficient is ever returned non-finite: overflowing exponentials throw, naming the
// estimator, the position and the log-quantities (errors.hpp's promise).
TYPED_TEST(EstimatorTest, OverflowsAndImpossibleInputsThrowNamingThePosition) {
  using T = TypeParam;
  const auto expect_invalid = [](auto&& f, std::initializer_list<std::string> fragments) {
    try {
      f();
      ADD_FAILURE() << "no exception; expected one mentioning " << *fragments.begin();
    } catch (const std::invalid_argument& e) {
      for (const auto& fragment : fragments)
        EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what() << "\nmissing: " << fragment;
    }
  };
  host zero = host::Zero(2, 3), lq = host::Zero(2, 3);
  lq(1, 2) = -800;  // rho = exp(800) = +inf at [1, 2]
  const auto far = make_samples<T>(zero, lq, zero, zero);
  for (const auto e : {estimator::gdc_pp, estimator::rloo, estimator::grpo, estimator::ppo_clip})
    expect_invalid(
        [&] { brain::gradient_coefficients(far, e, brain::bradley_terry{}, brain::policy_gradient_options{}); },
        {"gradient_coefficients", std::string(brain::name_of(e)), "coefficient [1, 2]",
         "log_policy - log_proposal = 800"});
  // A supplied log-partition far below the weights: alpha / Z overflows.
  expect_invalid(
      [&] {
        brain::gradient_coefficients(make_samples<T>(zero, zero, zero, zero), estimator::dpg, brain::bradley_terry{},
                                     tensor_from_host<T>(host::Constant(2, 1, -800.0)));
      },
      {"dpg", "coefficient [0, 0]", "+inf", "log alpha - log Z = 800"});
  // GRPO's k3 term: p / q_theta = exp(800).
  host l0 = host::Zero(2, 3);
  l0(0, 1) = 800 - 1e-9;  // finite log-probs far apart (log p > 0 is not checked here)
  expect_invalid(
      [&] {
        brain::gradient_coefficients(make_samples<T>(zero, zero, l0, zero), estimator::grpo, brain::bradley_terry{},
                                     brain::policy_gradient_options{.kl_coef = 0.1});
      },
      {"grpo", "coefficient [0, 1]", "k3"});
  // The KL-regularised reward needs a finite prior; RLOO and GRPO need two samples per prompt.
  host minus_inf = host::Zero(2, 3);
  minus_inf(1, 0) = -INFINITY;
  expect_invalid([&] { brain::gradient_coefficients(make_samples<T>(zero, zero, minus_inf, zero), estimator::rloo); },
                 {"log_prior[1, 0]", "-inf"});
  EXPECT_NO_THROW(brain::gradient_coefficients(make_samples<T>(zero, zero, minus_inf, zero), estimator::brain));
  const host one = host::Zero(2, 1);
  expect_invalid([&] { brain::gradient_coefficients(make_samples<T>(one, one, one, one), estimator::rloo); },
                 {"n >= 2"});
  expect_invalid(
      [&] {
        brain::gradient_coefficients(far, estimator::grpo, brain::bradley_terry{},
                                     brain::policy_gradient_options{.clip_low = 1.0});
      },
      {"clip_low"});
}

}  // namespace
