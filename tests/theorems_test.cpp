// The paper's results as property tests, on every backend: Theorem 4.2 (per tuple, also under
// the argmax target, and by exact enumeration in expectation), Theorem 4.3, Proposition 5.1,
// Theorem 6.1 with eq. 22, and Theorem 7.1 with the policy-gradient estimators whose objective it
// is about (RLOO: zero at the posterior for every tuple, unbiased for the KL-regularised
// gradient, the same fixed point as BRAIn).

#include "support/properties.hpp"
#include "support/reference.hpp"

#include <cmath>
#include <random>
#include <vector>

namespace {

using namespace brain_test;
using brain::index;

template <class T>
class TheoremTest : public ::testing::Test {};
TYPED_TEST_SUITE(TheoremTest, double_backends, backend_names);

/// A single prompt over an enumerable output space of K outputs.
struct space {
  Eigen::VectorXd log_prior, reward, log_proposal, policy_logits;
};

Eigen::VectorXd log_softmax(const Eigen::VectorXd& x) {
  const double m = x.maxCoeff();
  return x.array() - (m + std::log((x.array() - m).exp().sum()));
}

space random_space(index k) {
  auto vec = [&](double lo, double hi) { return Eigen::VectorXd(random_matrix(k, 1, lo, hi)); };
  return {log_softmax(vec(-3, 3)), vec(-2, 2), log_softmax(vec(-3, 3)), vec(-3, 3)};
}

/// Every tuple (y_1..y_n) in {0..k-1}^n, one per row of the returned index matrix.
std::vector<std::vector<index>> all_tuples(index k, index n) {
  std::vector<std::vector<index>> out{{}};
  for (index i = 0; i < n; ++i) {
    std::vector<std::vector<index>> next;
    for (const auto& t : out)
      for (index y = 0; y < k; ++y) {
        next.push_back(t);
        next.back().push_back(y);
      }
    out = std::move(next);
  }
  return out;
}

/// The samples of every tuple, one tuple per row, with the policy log_softmax(theta).
host_samples tuple_samples(const space& s, const Eigen::VectorXd& theta,
                           const std::vector<std::vector<index>>& tuples) {
  const Eigen::VectorXd log_policy = log_softmax(theta);
  const index rows = index(tuples.size()), n = index(tuples[0].size());
  host_samples h{host(rows, n), host(rows, n), host(rows, n), host(rows, n)};
  for (index t = 0; t < rows; ++t)
    for (index i = 0; i < n; ++i) {
      const index y = tuples[t][i];
      h.log_policy(t, i) = log_policy(y);
      h.log_proposal(t, i) = s.log_proposal(y);
      h.log_prior(t, i) = s.log_prior(y);
      h.reward(t, i) = s.reward(y);
    }
  return h;
}

/// Probability of each tuple under the proposal: prod_i q(y_i).
Eigen::VectorXd tuple_probabilities(const space& s, const std::vector<std::vector<index>>& tuples) {
  Eigen::VectorXd p(index(tuples.size()));
  for (index t = 0; t < p.size(); ++t) {
    double lp = 0;
    for (index y : tuples[t]) lp += s.log_proposal(y);
    p(t) = std::exp(lp);
  }
  return p;
}

/// D_SN(theta) (eq. 13): the expectation over all tuples of KL(alpha-bar || beta-bar).
template <class T>
double d_sn(const space& s, const Eigen::VectorXd& theta, const std::vector<std::vector<index>>& tuples, double beta) {
  const auto out = brain::brain_loss(tuple_samples(s, theta, tuples).as<T>(), brain::bradley_terry{.beta = beta});
  return tuple_probabilities(s, tuples).dot(io<T>::to_host_vector(out.per_prompt));
}

// Theorem 4.2, per tuple: the returned gradient is the derivative of the returned loss (checked by
// central finite differences), so the BRAIn coefficients alpha-bar - beta-bar are minus it.
// Under target_rule::argmax too: the target is then the one-hot of the best sample (Theorem 6.1's
// DPO), and both the gradient and the coefficients must use it, not the softmax.
TYPED_TEST(TheoremTest, Theorem4_2_GradientIsTheDerivativeOfTheLossForEveryTuple) {
  using T = TypeParam;
  check_property("grad_log_policy = d loss / d log_policy (finite differences), softmax and argmax targets", [] {
    const index prompts = *rc::gen::inRange<index>(1, 4), n = *rc::gen::inRange<index>(2, 7);
    const double beta = *real_in(0.2, 3.0);
    const brain::options opt{.target = *rc::gen::element(brain::target_rule::softmax, brain::target_rule::argmax)};
    host_samples h = random_samples(prompts, n);
    h.log_policy = random_matrix(prompts, n, -4, 0);  // keep beta-bar away from saturation
    const brain::bradley_terry bt{.beta = beta};
    const auto out = brain::brain_loss(h.as<T>(), bt, opt);
    const host grad = io<T>::to_host(out.grad_log_policy);
    const host coefficients = io<T>::to_host(brain::gradient_coefficients(h.as<T>(), brain::estimator::brain, bt, opt));
    const double step = 1e-5;
    for (index i = 0; i < prompts; ++i)
      for (index j = 0; j < n; ++j) {
        host_samples plus = h, minus = h;
        plus.log_policy(i, j) += step;
        minus.log_policy(i, j) -= step;
        const double fd = (io<T>::to_double(brain::brain_loss(plus.as<T>(), bt, opt).loss) -
                           io<T>::to_double(brain::brain_loss(minus.as<T>(), bt, opt).loss)) /
                          (2 * step);
        RC_ASSERT(std::abs(grad(i, j) - fd) < 1e-8);
        RC_ASSERT(std::abs(coefficients(i, j) + prompts * fd) < 1e-8 * prompts);
      }
  });
}

// Theorem 4.2, in expectation: E over all n-tuples from q of sum_i (alpha-bar_i - beta-bar_i)
// grad_theta log q_theta(y_i) equals -grad_theta D_SN, for a softmax policy over k outputs.
TYPED_TEST(TheoremTest, Theorem4_2_ExpectedGradientIsMinusGradientOfDsnByEnumeration) {
  using T = TypeParam;
  check_property("E[g-hat] = -grad D_SN over all tuples", [] {
    const index k = *rc::gen::inRange<index>(2, 5), n = *rc::gen::inRange<index>(2, 4);
    const double beta = *real_in(0.3, 2.0);
    const space s = random_space(k);
    const auto tuples = all_tuples(k, n);
    const host_samples h = tuple_samples(s, s.policy_logits, tuples);
    const host grad = io<T>::to_host(brain::brain_loss(h.as<T>(), brain::bradley_terry{.beta = beta}).grad_log_policy);
    const Eigen::VectorXd policy = log_softmax(s.policy_logits).array().exp();
    const Eigen::VectorXd prob = tuple_probabilities(s, tuples);
    // grad_theta log softmax(theta)_y = e_y - policy; coefficients = -rows * grad_log_policy.
    Eigen::VectorXd expected = Eigen::VectorXd::Zero(k);
    for (index t = 0; t < index(tuples.size()); ++t)
      for (index i = 0; i < n; ++i) {
        Eigen::VectorXd score = -policy;
        score(tuples[t][i]) += 1;
        expected += prob(t) * (-double(tuples.size()) * grad(t, i)) * score;
      }
    const double step = 1e-5;
    for (index c = 0; c < k; ++c) {
      Eigen::VectorXd plus = s.policy_logits, minus = s.policy_logits;
      plus(c) += step;
      minus(c) -= step;
      const double dsn_gradient = (d_sn<T>(s, plus, tuples, beta) - d_sn<T>(s, minus, tuples, beta)) / (2 * step);
      RC_ASSERT(std::abs(expected(c) + dsn_gradient) < 1e-8);
    }
  });
}

// Theorem 4.3: when the policy is the posterior, every tuple has alpha-bar = beta-bar, so the loss
// and its gradient vanish; otherwise D_SN > 0 (n >= 2).
TYPED_TEST(TheoremTest, Theorem4_3_LossIsZeroForEveryTupleAtThePosterior) {
  using T = TypeParam;
  check_property("policy = posterior => KL(alpha-bar || beta-bar) = 0 for any tuple", [] {
    const index k = *rc::gen::inRange<index>(2, 9), n = *rc::gen::inRange<index>(1, 9),
                prompts = *rc::gen::inRange<index>(1, 5);
    const double beta = *real_in(0.1, 5.0);
    const space s = random_space(k);
    // The posterior of eq. 1 with log g = r / beta, written directly.
    const Eigen::VectorXd posterior_logits = s.log_prior + s.reward / beta;
    std::vector<std::vector<index>> tuples;
    for (index p = 0; p < prompts; ++p)
      tuples.push_back(*rc::gen::container<std::vector<index>>(std::size_t(n), rc::gen::inRange<index>(0, k)));
    const auto out =
        brain::brain_loss(tuple_samples(s, posterior_logits, tuples).as<T>(), brain::bradley_terry{.beta = beta});
    RC_ASSERT(io<T>::to_host_vector(out.per_prompt).cwiseAbs().maxCoeff() < 1e-13);
    RC_ASSERT(io<T>::to_host(out.grad_log_policy).cwiseAbs().maxCoeff() < 1e-13);
  });
}

TYPED_TEST(TheoremTest, Theorem4_3_DsnIsPositiveAwayFromThePosterior) {
  using T = TypeParam;
  check_property("policy != posterior => D_SN > 0 (n >= 2), = 0 at the posterior", [] {
    const index k = *rc::gen::inRange<index>(2, 5), n = *rc::gen::inRange<index>(2, 4);
    const space s = random_space(k);
    const auto tuples = all_tuples(k, n);
    const Eigen::VectorXd posterior_logits = s.log_prior + s.reward;
    Eigen::VectorXd perturbation(random_matrix(k, 1, -1, 1));
    perturbation.array() -= perturbation.mean();
    RC_PRE(perturbation.norm() > 0.1);  // a constant shift leaves the policy unchanged
    RC_ASSERT(std::abs(d_sn<T>(s, posterior_logits, tuples, 1.0)) < 1e-13);
    RC_ASSERT(d_sn<T>(s, posterior_logits + perturbation, tuples, 1.0) > 1e-11);  // noise at the posterior is < 1e-13
  });
}

// Proposition 5.1: with q = p, alpha-bar = softmax(r / beta) (eq. 21).
TYPED_TEST(TheoremTest, Proposition5_1_ProposalEqualToPriorGivesSoftmaxOfRewards) {
  using T = TypeParam;
  check_property("q = p => alpha-bar = softmax(r / beta)", [] {
    const index prompts = *rc::gen::inRange<index>(1, 5), n = *rc::gen::inRange<index>(1, 12);
    const double beta = *real_in(0.1, 4.0);
    host_samples h = random_samples(prompts, n);
    h.log_proposal = h.log_prior;
    const host target = io<T>::to_host(brain::brain_loss(h.as<T>(), brain::bradley_terry{.beta = beta}).target_weights);
    for (index i = 0; i < prompts; ++i) {
      auto scaled = ref::row(h.reward, i);
      for (auto& v : scaled) v /= beta;
      const auto expect = ref::softmax(scaled);
      for (index j = 0; j < n; ++j) RC_ASSERT(std::abs(target(i, j) - double(expect[j])) < 1e-13);
    }
  });
}

// Invariances of §4: adding a per-prompt constant to the rewards, log_prior, log_proposal or
// log_policy of a group changes nothing (only differences within a group enter the weights).
TYPED_TEST(TheoremTest, Proposition5_1_InvariantToPerGroupConstantShifts) {
  using T = TypeParam;
  check_property("per-group shifts leave loss, weights and gradient unchanged", [] {
    const index prompts = *rc::gen::inRange<index>(1, 5), n = *rc::gen::inRange<index>(1, 9);
    const double beta = *real_in(0.2, 3.0);
    const host_samples h = random_samples(prompts, n);
    host_samples shifted = h;
    for (host* m : {&shifted.log_policy, &shifted.log_proposal, &shifted.log_prior, &shifted.reward})
      m->colwise() += Eigen::VectorXd(random_matrix(prompts, 1, -20, 20));
    const brain::bradley_terry bt{.beta = beta};
    const auto a = brain::brain_loss(h.as<T>(), bt), b = brain::brain_loss(shifted.as<T>(), bt);
    RC_ASSERT(std::abs(io<T>::to_double(a.loss) - io<T>::to_double(b.loss)) < 1e-11);
    RC_ASSERT(max_abs_diff(io<T>::to_host(a.target_weights), io<T>::to_host(b.target_weights)) < 1e-11);
    RC_ASSERT(max_abs_diff(io<T>::to_host(a.grad_log_policy), io<T>::to_host(b.grad_log_policy)) < 1e-11);
  });
}

// The invariance is a property of Bradley–Terry goodness only: under the logistic model a reward
// shift changes the weights (this shows the invariance test above can fail).
TYPED_TEST(TheoremTest, LogisticGoodnessIsNotShiftInvariant) {
  using T = TypeParam;
  host zero = host::Zero(1, 2), r(1, 2);
  r << 0.0, 1.0;
  const host a =
      io<T>::to_host(brain::brain_loss(make_samples<T>(zero, zero, zero, r), brain::logistic{}).target_weights);
  const host b = io<T>::to_host(
      brain::brain_loss(make_samples<T>(zero, zero, zero, (r.array() + 3).matrix()), brain::logistic{}).target_weights);
  EXPECT_GT(std::abs(a(0, 0) - b(0, 0)), 0.05);
}

// Theorem 6.1: n = 2, q = p and argmax weights make BRAIn's loss the DPO loss with beta = 1:
// -log sigmoid([log q_theta(y_w) - log p(y_w)] - [log q_theta(y_l) - log p(y_l)]).
TYPED_TEST(TheoremTest, Theorem6_1_ArgmaxPairsWithProposalPriorIsDpo) {
  using T = TypeParam;
  check_property("argmax, n = 2, q = p => loss = DPO", [] {
    const index prompts = *rc::gen::inRange<index>(1, 6), pairs = *rc::gen::inRange<index>(1, 5);
    host_samples h = random_samples(prompts, 2 * pairs);
    h.log_proposal = h.log_prior;
    const auto grouped = brain::pairwise(h.as<T>());
    const auto out = brain::brain_loss(grouped, brain::bradley_terry{}, {.target = brain::target_rule::argmax});
    const host_vector per_pair = io<brain::tensor_t<T>>::to_host_vector(out.per_prompt);
    RC_ASSERT(per_pair.size() == prompts * pairs);
    host chosen_policy(prompts, pairs), rejected_policy(prompts, pairs), chosen_prior(prompts, pairs),
        rejected_prior(prompts, pairs);
    for (index p = 0; p < prompts; ++p)
      for (index g = 0; g < pairs; ++g) {
        const index a = 2 * g, b = 2 * g + 1;
        const index w = h.reward(p, a) >= h.reward(p, b) ? a : b, l = w == a ? b : a;
        const double margin = (h.log_policy(p, w) - h.log_prior(p, w)) - (h.log_policy(p, l) - h.log_prior(p, l));
        RC_ASSERT(std::abs(per_pair(p * pairs + g) - ref::dpo_pair_loss(margin)) < 1e-12);
        chosen_policy(p, g) = h.log_policy(p, w), rejected_policy(p, g) = h.log_policy(p, l);
        chosen_prior(p, g) = h.log_prior(p, w), rejected_prior(p, g) = h.log_prior(p, l);
      }
    // The library's standalone DPO loss agrees at beta_DPO = 1.
    const auto dpo = brain::dpo_loss(io<T>::from_host(chosen_policy), io<T>::from_host(rejected_policy),
                                     io<T>::from_host(chosen_prior), io<T>::from_host(rejected_prior), {.beta = 1.0});
    RC_ASSERT(std::abs(io<T>::to_double(dpo.loss) - per_pair.mean()) < 1e-12);
  });
}

// Eq. 22: softmax weights on a pair give a DPO loss with soft labels sigma(r_w - r_l), up to the
// entropy of the labels: KL = -a_w log sigma(h) - a_l log sigma(-h) - H(a).
TYPED_TEST(TheoremTest, Eq22_SoftmaxPairsAreSoftLabelDpo) {
  using T = TypeParam;
  check_property("softmax pairs with q = p => soft-label DPO", [] {
    const index prompts = *rc::gen::inRange<index>(1, 6);
    host_samples h = random_samples(prompts, 2);
    h.log_proposal = h.log_prior;
    const host_vector kl = io<T>::to_host_vector(brain::brain_loss(h.as<T>()).per_prompt);
    for (index p = 0; p < prompts; ++p) {
      const double a0 = 1 / (1 + std::exp(-(h.reward(p, 0) - h.reward(p, 1)))), a1 = 1 - a0;
      const double margin = (h.log_policy(p, 0) - h.log_prior(p, 0)) - (h.log_policy(p, 1) - h.log_prior(p, 1));
      const double entropy = -(a0 > 0 ? a0 * std::log(a0) : 0) - (a1 > 0 ? a1 * std::log(a1) : 0);
      const double expect = a0 * ref::dpo_pair_loss(margin) + a1 * ref::dpo_pair_loss(-margin) - entropy;
      RC_ASSERT(std::abs(kl(p) - expect) < 1e-11);
    }
  });
}

// Theorem 7.1 / eq. 23: the exact posterior under bradley_terry{beta} maximises
// E_pi[r] - beta KL(pi || p), with maximum beta log sum_y p(y) exp(r(y) / beta).
TYPED_TEST(TheoremTest, Theorem7_1_PosteriorBeatsEveryPerturbationOnRegularisedReward) {
  using T = TypeParam;
  check_property("posterior maximises E[r] - beta KL(pi || p)", [] {
    const index prompts = *rc::gen::inRange<index>(1, 4), outputs = *rc::gen::inRange<index>(2, 40);
    const double beta = *real_in(0.1, 3.0);
    host log_prior = random_matrix(prompts, outputs, -5, 0);
    for (index i = 0; i < prompts; ++i) log_prior.row(i) = log_softmax(log_prior.row(i).transpose()).transpose();
    const host reward = random_matrix(prompts, outputs, -3, 3);
    const T l0 = io<T>::from_host(log_prior), r = io<T>::from_host(reward);
    const host posterior = io<T>::to_host(brain::exact_log_posterior(l0, r, brain::bradley_terry{.beta = beta}));
    const host_vector best =
        io<T>::to_host_vector(brain::kl_regularized_reward(io<T>::from_host(posterior), l0, r, beta));
    host perturbed = posterior + random_matrix(prompts, outputs, -0.5, 0.5);
    for (index i = 0; i < prompts; ++i) perturbed.row(i) = log_softmax(perturbed.row(i).transpose()).transpose();
    const host_vector other =
        io<T>::to_host_vector(brain::kl_regularized_reward(io<T>::from_host(perturbed), l0, r, beta));
    for (index i = 0; i < prompts; ++i) {
      const double closed_form = beta * std::log((log_prior.row(i).array() + reward.row(i).array() / beta).exp().sum());
      RC_ASSERT(std::abs(best(i) - closed_form) < 1e-10);
      // The gap is exactly beta KL(perturbed || posterior) (Gibbs variational principle), so the
      // posterior wins strictly unless the perturbation was a constant shift of the row.
      const double gap_kl = ((perturbed.row(i).array().exp()) * (perturbed.row(i) - posterior.row(i)).array()).sum();
      RC_ASSERT(std::abs(best(i) - other(i) - beta * gap_kl) < 1e-10);
      RC_ASSERT(other(i) <= best(i) + 1e-12);
      if (gap_kl > 1e-9) RC_ASSERT(other(i) < best(i));
    }
  });
}

// Theorem 7.1: the posterior is the optimum of E_pi[log g] - KL(pi || p) (eq. 23), and at it
// L(y) = log g(y) + log p(y) - log q_theta(y) is the same constant log Z for every output. So every
// RLOO advantage, L_i - mean_{j!=i} L_j, vanishes for every sample tuple, whatever the proposal.
TYPED_TEST(TheoremTest, Theorem7_1_RlooCoefficientsVanishAtThePosteriorForEveryTuple) {
  using T = TypeParam;
  check_property("policy = posterior => every RLOO coefficient is 0, for any tuple and proposal", [] {
    const index k = *rc::gen::inRange<index>(2, 9), n = *rc::gen::inRange<index>(2, 9),
                prompts = *rc::gen::inRange<index>(1, 5);
    const double beta = *real_in(0.1, 5.0);
    const space s = random_space(k);
    const Eigen::VectorXd posterior_logits = s.log_prior + s.reward / beta;
    std::vector<std::vector<index>> tuples;
    for (index p = 0; p < prompts; ++p)
      tuples.push_back(*rc::gen::container<std::vector<index>>(std::size_t(n), rc::gen::inRange<index>(0, k)));
    const host w =
        io<T>::to_host(brain::gradient_coefficients(tuple_samples(s, posterior_logits, tuples).as<T>(),
                                                    brain::estimator::rloo, brain::bradley_terry{.beta = beta}));
    // Zero up to rounding: L's terms reach m = max|r|/β + max|log p| + max|log q_θ| (30 and more at
    // β = 0.1), and each coefficient sums n of them: the bound is 64 ulps of n·m (a wrong coefficient
    // is of order 0.1 and more).
    const double m = s.reward.cwiseAbs().maxCoeff() / beta + s.log_prior.cwiseAbs().maxCoeff() +
                     log_softmax(posterior_logits).cwiseAbs().maxCoeff();
    RC_ASSERT(w.cwiseAbs().maxCoeff() < 1e-13 + 64 * 2.2e-16 * double(n) * m);
    // Away from the posterior some tuple has a non-zero coefficient (the test can fail): moving
    // output 0's logit by 1, on-policy, L_0 - L_1 = -1 and the coefficients are -/+ 1/2.
    space on_policy = s;
    on_policy.log_proposal = log_softmax(posterior_logits + Eigen::VectorXd::Unit(k, 0));
    const host away = io<T>::to_host(brain::gradient_coefficients(
        tuple_samples(on_policy, posterior_logits + Eigen::VectorXd::Unit(k, 0), {{0, 1}}).as<T>(),
        brain::estimator::rloo, brain::bradley_terry{.beta = beta}));
    RC_ASSERT(std::abs(away(0, 0) + 0.5) < 1e-12);
    RC_ASSERT(std::abs(away(0, 1) - 0.5) < 1e-12);
  });
}

/// E over all n-tuples from the proposal of sum_i w_i grad_theta log q_theta(y_i), for a softmax
/// policy over k outputs: one gradient_coefficients call on the tuple matrix.
template <class T>
Eigen::VectorXd expected_ascent(const space& s, const Eigen::VectorXd& theta, index n, brain::estimator e,
                                double beta) {
  const index k = s.log_prior.size();
  const auto tuples = all_tuples(k, n);
  const host w = io<T>::to_host(
      brain::gradient_coefficients(tuple_samples(s, theta, tuples).as<T>(), e, brain::bradley_terry{.beta = beta}));
  const Eigen::VectorXd policy = log_softmax(theta).array().exp();
  const Eigen::VectorXd prob = tuple_probabilities(s, tuples);
  Eigen::VectorXd expected = Eigen::VectorXd::Zero(k);
  for (index t = 0; t < index(tuples.size()); ++t)
    for (index i = 0; i < n; ++i) {
      Eigen::VectorXd score = -policy;  // grad_theta log softmax(theta)_y = e_y - policy
      score(tuples[t][i]) += 1;
      expected += prob(t) * w(t, i) * score;
    }
  return expected;
}

// RLOO is unbiased for the gradient of the KL-regularised objective (eq. 23) divided by beta, for
// any proposal q covering the outputs: E[sum_i w_i grad log q_theta(y_i)] = grad_theta
// (E_pi[r] - beta KL(pi || p)) / beta, checked by enumerating every tuple against both the closed
// form pi_c (f_c - E_pi f) / beta, f = r - beta (log pi - log p), and finite differences of the
// library's kl_regularized_reward.
TYPED_TEST(TheoremTest, Theorem7_1_RlooIsUnbiasedForTheKlRegularisedGradient) {
  using T = TypeParam;
  check_property("E[RLOO] = grad (E[r] - beta KL) / beta by enumeration", [] {
    const index k = *rc::gen::inRange<index>(2, 5), n = *rc::gen::inRange<index>(2, 4);
    const double beta = *real_in(0.2, 3.0);
    const space s = random_space(k);
    const Eigen::VectorXd expected = expected_ascent<T>(s, s.policy_logits, n, brain::estimator::rloo, beta);
    const Eigen::VectorXd log_pi = log_softmax(s.policy_logits), pi = log_pi.array().exp();
    const Eigen::VectorXd f = s.reward - beta * (log_pi - s.log_prior);
    const Eigen::VectorXd closed_form = pi.array() * (f.array() - pi.dot(f)) / beta;
    RC_ASSERT((expected - closed_form).cwiseAbs().maxCoeff() < 1e-12);
    const auto objective = [&](const Eigen::VectorXd& theta) {
      const host row = log_softmax(theta).transpose();
      return io<T>::to_host_vector(brain::kl_regularized_reward(io<T>::from_host(row),
                                                                io<T>::from_host(host(s.log_prior.transpose())),
                                                                io<T>::from_host(host(s.reward.transpose())), beta))(0);
    };
    const double step = 1e-5;
    for (index c = 0; c < k; ++c) {
      const Eigen::VectorXd e = Eigen::VectorXd::Unit(k, c) * step;
      const double fd = (objective(s.policy_logits + e) - objective(s.policy_logits - e)) / (2 * step) / beta;
      RC_ASSERT(std::abs(expected(c) - fd) < 1e-8);
    }
  });
}

// BRAIn and RLOO share their fixed point: following each one's exact expected direction with
// on-policy samples (q = q_theta, n = 2) from a random start reaches the posterior, where both
// expected directions vanish; elsewhere neither does.
TYPED_TEST(TheoremTest, Theorem7_1_BrainAndRlooShareTheirFixedPoint) {
  using T = TypeParam;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> uniform(-2, 2);
  const auto draw = [&](index k) {
    Eigen::VectorXd v(k);
    for (double& x : v) x = uniform(rng);
    return v;
  };
  for (int trial = 0; trial < 4; ++trial) {  // a few fixed draws, each to convergence
    const index k = 3, n = 2;
    const double beta = 1 + trial * 0.5;
    space s{log_softmax(draw(k)), draw(k), Eigen::VectorXd(), 1.5 * draw(k)};
    const Eigen::VectorXd posterior = log_softmax(s.log_prior + s.reward / beta);
    for (const auto e : {brain::estimator::brain, brain::estimator::rloo}) {
      Eigen::VectorXd theta = s.policy_logits;
      s.log_proposal = log_softmax(theta);
      EXPECT_GT(expected_ascent<T>(s, theta, n, e, beta).norm(), 1e-4) << "not at the fixed point yet";
      for (int step = 0; step < 20000; ++step) {
        s.log_proposal = log_softmax(theta);  // on-policy: sample from the current policy
        const Eigen::VectorXd direction = expected_ascent<T>(s, theta, n, e, beta);
        if (direction.cwiseAbs().maxCoeff() < 1e-12) break;
        theta += 2 * direction;
      }
      s.log_proposal = log_softmax(theta);
      EXPECT_LT((log_softmax(theta) - posterior).cwiseAbs().maxCoeff(), 1e-8)
          << brain::name_of(e) << " trial " << trial;
      EXPECT_LT(expected_ascent<T>(s, theta, n, e, beta).cwiseAbs().maxCoeff(), 1e-11) << brain::name_of(e);
    }
  }
}

}  // namespace
