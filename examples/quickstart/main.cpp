// Quickstart: align a tiny policy to a reward with brain::brain_loss, and watch it reach the exact
// posterior p(y|x, G=1) ∝ p(y|x) exp(r(x,y) / beta) (eq. 23).
//
// Each prompt has K possible outputs, so the policy is a table of logits and the posterior can be
// computed exactly. Each step samples n outputs per prompt from the proposal, asks brain_loss for
// d loss / d log q_theta(y_i), and chains it through log q_theta(y) = theta_y - logsumexp(theta).
// The proposal is refreshed from the policy every `refresh` steps (Algorithm 1).
//
//   quickstart [steps] [seed]

#include <brain/loss.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

namespace {

using Eigen::MatrixXd;

MatrixXd log_softmax_rows(const MatrixXd& logits) { return brain::row_log_softmax(logits); }

// Draws n outputs per prompt from exp(log_probs), one row per prompt.
std::vector<std::vector<int>> sample(const MatrixXd& log_probs, int n, std::mt19937_64& rng) {
  std::vector<std::vector<int>> out(log_probs.rows());
  for (Eigen::Index x = 0; x < log_probs.rows(); ++x) {
    const Eigen::VectorXd p = log_probs.row(x).array().exp();
    std::discrete_distribution<int> pick(p.data(), p.data() + p.size());
    for (int i = 0; i < n; ++i) out[x].push_back(pick(rng));
  }
  return out;
}

// Gathers table[x, y_i] into a [prompts, n] matrix.
MatrixXd gather(const MatrixXd& table, const std::vector<std::vector<int>>& ys) {
  MatrixXd out(table.rows(), Eigen::Index(ys[0].size()));
  for (Eigen::Index x = 0; x < out.rows(); ++x)
    for (Eigen::Index i = 0; i < out.cols(); ++i) out(x, i) = table(x, ys[x][i]);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 400;
  const unsigned seed = argc > 2 ? unsigned(std::atoi(argv[2])) : 1;
  const int prompts = 8, outputs = 64, n = 16, refresh = 10;
  const double beta = 0.5, learning_rate = 4.0;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;

  // A random prior (the "SFT model") and reward, and the exact posterior they define.
  MatrixXd prior_logits(prompts, outputs), reward(prompts, outputs);
  for (auto* m : {&prior_logits, &reward})
    for (double& v : m->reshaped()) v = normal(rng);
  const MatrixXd log_prior = log_softmax_rows(prior_logits);
  const MatrixXd log_posterior = brain::exact_log_posterior(log_prior, reward, brain::bradley_terry{.beta = beta});

  MatrixXd theta = log_prior;         // q_theta <- p
  MatrixXd log_proposal = log_prior;  // q <- p
  std::printf("step  KL(posterior||policy)  E_policy[r]  loss      ESS(target)\n");
  for (int step = 0; step <= steps; ++step) {
    const MatrixXd log_policy = log_softmax_rows(theta);
    if (step % refresh == 0) log_proposal = log_policy;  // proposal update (Algorithm 1)
    const auto ys = sample(log_proposal, n, rng);

    brain::samples<MatrixXd> s{.log_policy = gather(log_policy, ys),
                               .log_proposal = gather(log_proposal, ys),
                               .log_prior = gather(log_prior, ys),
                               .reward = gather(reward, ys)};
    const auto out = brain::brain_loss(s, brain::bradley_terry{.beta = beta});

    // Chain rule: d log q_theta(y) / d theta_x,k = [y == k] - q_theta(k | x).
    const MatrixXd policy = log_policy.array().exp();
    MatrixXd grad_theta = MatrixXd::Zero(prompts, outputs);
    for (int x = 0; x < prompts; ++x)
      for (int i = 0; i < n; ++i) {
        grad_theta(x, ys[x][i]) += out.grad_log_policy(x, i);
        grad_theta.row(x) -= out.grad_log_policy(x, i) * policy.row(x);
      }
    theta -= learning_rate * grad_theta;

    if (step % 50 == 0) {
      const double kl = brain::exact_kl(log_posterior, log_policy).mean();
      const double expected_reward = brain::exact_expectation(log_policy, reward).mean();
      const double ess = brain::effective_sample_size(out.target_weights).mean();
      std::printf("%4d  %21.5f  %11.4f  %.5f  %6.2f\n", step, kl, expected_reward, out.loss, ess);
    }
  }
  const double final_kl = brain::exact_kl(log_posterior, log_softmax_rows(theta)).mean();
  const double start_kl = brain::exact_kl(log_posterior, log_prior).mean();
  std::printf("KL(posterior || policy): %.4f at the prior -> %.4f after %d steps; E_posterior[r] = %.4f\n", start_kl,
              final_kl, steps, brain::exact_expectation(log_posterior, reward).mean());
  return final_kl < start_kl ? 0 : 1;
}
