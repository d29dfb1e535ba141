// surrogate_loss (surrogate.hpp): for every estimator, the gradient is -w / prompts, the value
// is the estimator's documented objective (against the long-double reference), and the value's
// derivative is that gradient wherever the estimator's inputs do not depend on theta.

#include "support/properties.hpp"
#include "support/reference.hpp"

#include <cmath>
#include <string>

namespace {

using namespace brain_test;
using brain::estimator;
using brain::index;

template <class T>
class SurrogateTest : public ::testing::Test {};
TYPED_TEST_SUITE(SurrogateTest, double_backends, backend_names);

constexpr estimator all_estimators[] = {estimator::brain, estimator::no_baseline, estimator::gdc_pp,  estimator::dpg,
                                        estimator::rloo,  estimator::grpo,        estimator::ppo_clip};

TYPED_TEST(SurrogateTest, GradientIsMinusTheCoefficientsOverPrompts) {
  using T = TypeParam;
  check_property("grad_log_policy = -gradient_coefficients / prompts for every estimator", [] {
    const index prompts = *rc::gen::inRange<index>(1, 5), n = *rc::gen::inRange<index>(2, 9);
    host_samples h = random_samples(prompts, n);
    h.log_policy = h.log_proposal + random_matrix(prompts, n, -1, 1);
    const brain::bradley_terry bt{.beta = *real_in(0.1, 3)};
    const brain::policy_gradient_options pg{.kl_coef = *real_in(0, 1)};
    for (const auto e : all_estimators) {
      const auto out = brain::surrogate_loss(h.as<T>(), e, bt, pg);
      const host w = io<T>::to_host(brain::gradient_coefficients(h.as<T>(), e, bt, pg));
      RC_ASSERT(max_abs_diff(io<T>::to_host(out.coefficients), w) == 0.0);
      RC_ASSERT(max_abs_diff(io<T>::to_host(out.grad_log_policy), -w / double(prompts)) <=
                2.3e-16 * w.cwiseAbs().maxCoeff());
      const host_vector per_prompt = io<T>::to_host_vector(out.per_prompt);
      RC_ASSERT(std::abs(io<T>::to_double(out.loss) - per_prompt.mean()) <
                1e-14 * (1 + per_prompt.cwiseAbs().maxCoeff()));
    }
  });
}

// The values, written from their definitions: the BRAIn loss's KL, the cross-entropy estimates
// of eqs. 4-5 (plus eq. 9's baseline for GDC++), and the policy-gradient losses of the reference.
TYPED_TEST(SurrogateTest, ValuesAreTheDocumentedObjectives) {
  using T = TypeParam;
  check_property("surrogate values = long-double reference", [] {
    const index prompts = *rc::gen::inRange<index>(1, 5), n = *rc::gen::inRange<index>(2, 9);
    host_samples h = random_samples(prompts, n);
    h.log_policy = h.log_proposal + random_matrix(prompts, n, -1, 1);
    const double beta = *real_in(0.1, 3), kl = *real_in(0, 1);
    const brain::bradley_terry bt{.beta = beta};
    const auto value = [&](estimator e) {
      return io<T>::to_host_vector(
          brain::surrogate_loss(h.as<T>(), e, bt, brain::policy_gradient_options{.kl_coef = kl}).per_prompt);
    };
    const auto expect = ref::brain_loss_bt(h.log_policy, h.log_proposal, h.log_prior, h.reward, beta);
    RC_ASSERT((value(estimator::brain) - expect.per_prompt).cwiseAbs().maxCoeff() < 1e-12);
    // eq. 5: -sum alpha-bar log q_theta. With Z estimated from the samples (Z = sum alpha / n),
    // DPG's alpha / (n Z) is alpha-bar, so its value is the same; GDC++ adds sum beta / n.
    const host_vector ce = -(expect.target.array() * h.log_policy.array()).rowwise().sum();
    RC_ASSERT((value(estimator::no_baseline) - ce).cwiseAbs().maxCoeff() < 1e-12);
    RC_ASSERT((value(estimator::dpg) - ce).cwiseAbs().maxCoeff() < 1e-12);
    const host_vector baseline = (h.log_policy - h.log_proposal).array().exp().rowwise().sum() / double(n);
    RC_ASSERT((value(estimator::gdc_pp) - (ce + baseline)).cwiseAbs().maxCoeff() < 1e-12);
    const host log_g = ref::log_goodness_bt(h.reward, beta);
    RC_ASSERT((value(estimator::rloo) -
               ref::policy_gradient(ref::pg::rloo, h.log_policy, h.log_proposal, h.log_prior, log_g).value)
                  .cwiseAbs()
                  .maxCoeff() < 1e-12);
    // GRPO divides by the group's standard deviation: rounding grows with max |R| / std.
    double condition = 1;
    for (index i = 0; i < prompts; ++i)
      condition = std::max(condition, ref::advantage_condition(ref::pg::grpo_group, h.log_policy, h.log_proposal,
                                                               h.log_prior, log_g, i));
    const host_vector grpo =
        ref::policy_gradient(ref::pg::grpo_group, h.log_policy, h.log_proposal, h.log_prior, log_g, 0.2, 0.2, kl).value;
    RC_ASSERT((value(estimator::grpo) - grpo).cwiseAbs().maxCoeff() <
              1e-12 * (1 + grpo.cwiseAbs().maxCoeff()) + 64 * 2.2e-16 * condition * 3);
    RC_ASSERT((value(estimator::ppo_clip) -
               ref::policy_gradient(ref::pg::ppo_clip, h.log_policy, h.log_proposal, h.log_prior, log_g).value)
                  .cwiseAbs()
                  .maxCoeff() < 1e-12);
  });
}

// Where w's inputs do not depend on log_policy (all but RLOO, whose advantage contains
// -log q_theta by definition), the value's finite-difference derivative is grad_log_policy.
TYPED_TEST(SurrogateTest, ValueDerivativeIsTheGradient) {
  using T = TypeParam;
  check_property("d value / d log_policy (finite differences) = grad_log_policy", [] {
    const index prompts = *rc::gen::inRange<index>(1, 3), n = *rc::gen::inRange<index>(2, 6);
    host_samples h = random_samples(prompts, n);
    h.log_policy = h.log_proposal + random_matrix(prompts, n, -0.6, 0.6);
    const host rho = (h.log_policy - h.log_proposal).array().exp();
    RC_PRE(((rho.array() - 0.8).abs().minCoeff() > 1e-3) && ((rho.array() - 1.2).abs().minCoeff() > 1e-3));
    const brain::bradley_terry bt{.beta = *real_in(0.3, 3)};
    const brain::policy_gradient_options pg{.kl_coef = *real_in(0, 1)};
    for (const auto e : all_estimators) {
      if (e == estimator::rloo) continue;
      const auto at = brain::surrogate_loss(h.as<T>(), e, bt, pg);
      const host grad = io<T>::to_host(at.grad_log_policy);
      const double value = io<T>::to_double(at.loss);
      const double step = 1e-5;
      for (index i = 0; i < prompts; ++i)
        for (index j = 0; j < n; ++j) {
          host_samples plus = h, minus = h;
          plus.log_policy(i, j) += step;
          minus.log_policy(i, j) -= step;
          // The estimated normaliser and the advantages come from the unperturbed samples.
          const double fd = (io<T>::to_double(brain::surrogate_loss(plus.as<T>(), e, bt, pg).loss) -
                             io<T>::to_double(brain::surrogate_loss(minus.as<T>(), e, bt, pg).loss)) /
                            (2 * step);
          // Rounding of the values (up to 1e5 with GRPO's k3 term) over the step, plus truncation.
          RC_ASSERT(std::abs(grad(i, j) - fd) <
                    1e-6 * (1 + std::abs(grad(i, j))) + 8 * 2.2e-16 * std::abs(value) / step);
        }
    }
  });
}

// Swapping the estimator is one argument; the BRAIn surrogate is brain_loss.
TYPED_TEST(SurrogateTest, BrainSurrogateIsBrainLoss) {
  using T = TypeParam;
  const host_samples h = random_samples_host(3, 4);
  for (const auto rule : {brain::target_rule::softmax, brain::target_rule::argmax}) {
    const auto a =
        brain::surrogate_loss(h.as<T>(), estimator::brain, brain::logistic{}, brain::options{.target = rule});
    const auto b = brain::brain_loss(h.as<T>(), brain::logistic{}, {.target = rule});
    EXPECT_NEAR(io<T>::to_double(a.loss), io<T>::to_double(b.loss), 1e-15);
    EXPECT_LT(max_abs_diff(io<T>::to_host(a.grad_log_policy), io<T>::to_host(b.grad_log_policy)), 1e-15);
  }
}

}  // namespace
