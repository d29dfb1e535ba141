// The lab's own checks: the enumerated space and the hand-written gradient are right, and a small
// training run shows what the paper claims — BRAIn converges to the exact posterior, and faster
// than the same estimator without its baseline. Fails if the estimator or the lab is broken.

#include "lab.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace {

lab::space small_space() { return lab::make_space({.prompts = 2, .vocab = 3, .length = 3, .seed = 11}); }

TEST(Lab, SpaceEnumeratesNormalisedDistributions) {
  const lab::space s = small_space();
  EXPECT_EQ(s.outputs, 27);
  EXPECT_EQ(s.nodes, 13);
  for (const Eigen::MatrixXd* m : {&s.log_prior, &s.log_posterior})
    for (Eigen::Index x = 0; x < s.prompts; ++x) EXPECT_NEAR(m->row(x).array().exp().sum(), 1.0, 1e-12);
  // log Z from its definition, and the posterior from eq. 1 written out.
  for (Eigen::Index x = 0; x < s.prompts; ++x) {
    double z = 0;
    for (Eigen::Index y = 0; y < s.outputs; ++y) z += std::exp(s.log_prior(x, y) + s.reward(x, y) / s.beta);
    EXPECT_NEAR(s.log_partition(x, 0), std::log(z), 1e-12);
    EXPECT_NEAR(s.log_posterior(x, 5), s.log_prior(x, 5) + s.reward(x, 5) / s.beta - std::log(z), 1e-12);
  }
}

// direction() is sum_i w_i grad_theta log q_theta(y_i) / prompts: compare with finite differences
// of sum_i w_i log q_theta(y_i) / prompts.
TEST(Lab, DirectionIsTheGradientOfTheWeightedLogLikelihood) {
  const lab::space s = small_space();
  std::vector<double> theta = s.prior_logits;
  std::mt19937_64 rng(2);
  const auto ys = lab::draw(s.log_prior, 4, rng);
  Eigen::MatrixXd w(2, 4);
  w << 0.3, -0.2, 1.1, -0.5, /**/ 0.0, 0.7, -0.9, 0.4;
  const auto objective = [&](const std::vector<double>& t) { return (w.array() * lab::gather(lab::sequence_log_probs(s, t), ys).array()).sum() / s.prompts; };
  const auto g = lab::direction(s, lab::node_log_probs(s, theta), w, ys);
  for (std::size_t k = 0; k < theta.size(); k += 5) {
    auto plus = theta, minus = theta;
    plus[k] += 1e-6, minus[k] -= 1e-6;
    EXPECT_NEAR(g[k], (objective(plus) - objective(minus)) / 2e-6, 1e-8) << k;
  }
}

double final_kl(const lab::space& s, const std::string& id, int n, unsigned seed) {
  for (const auto& a : lab::all_arms())
    if (a.id == id) return lab::train(s, a, n, {.steps = 300, .seed = seed}).back().kl_posterior_policy;
  ADD_FAILURE() << "no arm " << id;
  return NAN;
}

TEST(Lab, BrainConvergesToThePosteriorAndBeatsNoBaseline) {
  const lab::space s = small_space();
  const double start = brain::exact_kl(s.log_posterior, s.log_prior).mean();
  double brain_kl = 0, no_baseline_kl = 0;
  for (unsigned seed : {1u, 2u, 3u}) {
    brain_kl += final_kl(s, "brain", 8, seed) / 3;
    no_baseline_kl += final_kl(s, "no-baseline", 8, seed) / 3;
  }
  std::printf("KL(posterior || policy): prior %.4f, BRAIn %.4f, no baseline %.4f\n", start, brain_kl, no_baseline_kl);
  EXPECT_LT(brain_kl, 0.02);
  EXPECT_LT(brain_kl, 0.05 * start);
  EXPECT_LT(brain_kl, no_baseline_kl);
}

TEST(Lab, VarianceGrowsWithTheProposalsDistanceForDpg) {
  const lab::space s = small_space();
  const auto v = lab::gradient_variance(s, 8, 200, {0.0, 2.0}, 5);
  ASSERT_EQ(v.size(), 8u);  // 2 distances x 4 estimators, BRAIn first
  EXPECT_NEAR(v[0].kl_proposal_posterior, 0.0, 1e-12);
  EXPECT_GT(v[4].kl_proposal_posterior, 0.5);
  EXPECT_GT(v[7].variance, v[3].variance);  // DPG far vs DPG at the posterior
  EXPECT_GT(v[7].variance, v[4].variance);  // DPG vs BRAIn far from the posterior
}

}  // namespace
