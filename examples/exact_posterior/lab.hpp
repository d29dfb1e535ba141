#pragma once
// The exact-posterior lab: an output space small enough to enumerate (all sequences of `length`
// tokens over `vocab`), so the posterior p(y|x,G=1) ∝ p(y|x) exp(r(x,y)/β) is exact and every
// estimator can be measured against it (brain-math.md §6–7).
//
// Priors, policies and proposals are tabular autoregressive models: a logit per (prompt, prefix,
// next token). Training uses the library's per-sample gradient coefficients times
// ∇ log q_θ(y) = Σ_t (e_{y_t} − softmax(θ[prefix_t])), computed by hand: no autograd framework.

#include <brain/loss.hpp>

#include <Eigen/Core>

#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace lab {

using Eigen::Index;
using Eigen::MatrixXd;
using Eigen::VectorXd;

struct space_config {
  int prompts = 4, vocab = 4, length = 5;
  double beta = 1.0;          ///< KL coefficient of the Bradley–Terry goodness (the paper's is 1)
  double prior_scale = 1.5;   ///< standard deviation of the prior's logits
  double reward_scale = 1.0;  ///< standard deviation of the per-position token rewards
  double reward_noise = 0.3;  ///< per-sequence noise on top of the structured reward
  unsigned seed = 1;
};

/// All sequences y in {0..vocab-1}^length, indexed as base-vocab numbers (first token most
/// significant), and the prefix tree: node(l, p) = (vocab^l - 1) / (vocab - 1) + p for the prefix
/// p of length l < length.
struct space {
  int prompts, vocab, length;
  Index outputs, nodes;
  double beta;
  std::vector<double> prior_logits;  ///< [prompts][nodes][vocab]
  MatrixXd log_prior, reward, log_posterior;  ///< [prompts, outputs]
  MatrixXd log_partition;                     ///< [prompts, 1]: log sum_y p(y|x) exp(r(x,y)/beta)
  std::vector<std::vector<Index>> node_of;    ///< [outputs][length]: the prefix node before token t
  std::vector<std::vector<int>> token_of;     ///< [outputs][length]

  Index parameters() const { return Index(prompts) * nodes * vocab; }
};

/// log-softmax of every (prompt, node) row of a tabular model's logits.
inline std::vector<double> node_log_probs(const space& s, const std::vector<double>& logits) {
  std::vector<double> out(logits.size());
  for (std::size_t row = 0; row < logits.size(); row += std::size_t(s.vocab)) {
    double m = -INFINITY, z = 0;
    for (int k = 0; k < s.vocab; ++k) m = std::max(m, logits[row + k]);
    for (int k = 0; k < s.vocab; ++k) z += std::exp(logits[row + k] - m);
    for (int k = 0; k < s.vocab; ++k) out[row + k] = logits[row + k] - m - std::log(z);
  }
  return out;
}

/// log q(y|x) of every output under a tabular model, [prompts, outputs].
inline MatrixXd sequence_log_probs(const space& s, const std::vector<double>& logits) {
  const std::vector<double> table = node_log_probs(s, logits);
  MatrixXd out(s.prompts, s.outputs);
  for (int x = 0; x < s.prompts; ++x)
    for (Index y = 0; y < s.outputs; ++y) {
      double lp = 0;
      for (int t = 0; t < s.length; ++t)
        lp += table[std::size_t((x * s.nodes + s.node_of[y][t]) * s.vocab + s.token_of[y][t])];
      out(x, y) = lp;
    }
  return out;
}

inline space make_space(const space_config& c) {
  if (c.vocab < 2 || c.length < 1 || c.prompts < 1) throw std::invalid_argument("lab: need vocab >= 2, length >= 1, prompts >= 1");
  space s{c.prompts, c.vocab, c.length, 1, 0, c.beta, {}, {}, {}, {}, {}, {}, {}};
  for (int t = 0; t < c.length; ++t) s.outputs *= c.vocab;
  s.nodes = (s.outputs - 1) / (c.vocab - 1);
  s.node_of.assign(s.outputs, std::vector<Index>(c.length));
  s.token_of.assign(s.outputs, std::vector<int>(c.length));
  for (Index y = 0; y < s.outputs; ++y) {
    Index prefix = 0, level_start = 0, level_size = 1;
    for (int t = 0; t < c.length; ++t) {
      Index power = 1;  // vocab^(length - 1 - t)
      for (int k = t + 1; k < c.length; ++k) power *= c.vocab;
      s.token_of[y][t] = int((y / power) % c.vocab);
      s.node_of[y][t] = level_start + prefix;
      prefix = prefix * c.vocab + s.token_of[y][t];
      level_start += level_size;
      level_size *= c.vocab;
    }
  }
  std::mt19937_64 rng(c.seed);
  std::normal_distribution<double> normal;
  s.prior_logits.resize(std::size_t(s.parameters()));
  for (double& v : s.prior_logits) v = c.prior_scale * normal(rng);
  // Structured rewards: a preference per (prompt, position, token), a bigram term shared by all
  // prompts, and per-sequence noise.
  std::vector<double> unigram(std::size_t(c.prompts * c.length * c.vocab)), bigram(std::size_t(c.vocab * c.vocab));
  for (double& v : unigram) v = c.reward_scale * normal(rng);
  for (double& v : bigram) v = 0.5 * c.reward_scale * normal(rng);
  s.reward.resize(c.prompts, s.outputs);
  for (int x = 0; x < c.prompts; ++x)
    for (Index y = 0; y < s.outputs; ++y) {
      double r = c.reward_noise * normal(rng);
      for (int t = 0; t < c.length; ++t) {
        r += unigram[std::size_t((x * c.length + t) * c.vocab + s.token_of[y][t])];
        if (t > 0) r += bigram[std::size_t(s.token_of[y][t - 1] * c.vocab + s.token_of[y][t])];
      }
      s.reward(x, y) = r;
    }
  s.log_prior = sequence_log_probs(s, s.prior_logits);
  s.log_posterior = brain::exact_log_posterior(s.log_prior, s.reward, brain::bradley_terry{.beta = s.beta});
  const MatrixXd log_joint = s.log_prior + s.reward / s.beta;  // log Z = logsumexp over each row
  const VectorXd shift = log_joint.rowwise().maxCoeff();
  s.log_partition = shift + VectorXd((log_joint.colwise() - shift).array().exp().rowwise().sum().log());
  return s;
}

/// n outputs per prompt drawn from the distribution exp(log_probs) (a row per prompt), [prompts, n].
inline std::vector<std::vector<Index>> draw(const MatrixXd& log_probs, int n, std::mt19937_64& rng) {
  std::vector<std::vector<Index>> out(std::size_t(log_probs.rows()));
  for (Index x = 0; x < log_probs.rows(); ++x) {
    const VectorXd p = log_probs.row(x).array().exp();
    std::discrete_distribution<Index> pick(p.data(), p.data() + p.size());
    for (int i = 0; i < n; ++i) out[std::size_t(x)].push_back(pick(rng));
  }
  return out;
}

/// table[x, ys[x][i]] as a [prompts, n] matrix.
inline MatrixXd gather(const MatrixXd& table, const std::vector<std::vector<Index>>& ys) {
  MatrixXd out(table.rows(), Index(ys[0].size()));
  for (Index x = 0; x < out.rows(); ++x)
    for (Index i = 0; i < out.cols(); ++i) out(x, i) = table(x, ys[std::size_t(x)][std::size_t(i)]);
  return out;
}

/// Σ_x Σ_i w[x, i] ∇_θ log q_θ(y_{x,i}) / prompts: the direction an estimator's coefficients give.
inline std::vector<double> direction(const space& s, const std::vector<double>& node_lp, const MatrixXd& w,
                                     const std::vector<std::vector<Index>>& ys) {
  std::vector<double> g(node_lp.size(), 0.0);
  for (int x = 0; x < s.prompts; ++x)
    for (Index i = 0; i < w.cols(); ++i) {
      const double c = w(x, i) / s.prompts;
      if (c == 0) continue;
      const Index y = ys[std::size_t(x)][std::size_t(i)];
      for (int t = 0; t < s.length; ++t) {
        const std::size_t row = std::size_t((x * s.nodes + s.node_of[y][t]) * s.vocab);
        for (int k = 0; k < s.vocab; ++k) g[row + k] -= c * std::exp(node_lp[row + k]);
        g[row + std::size_t(s.token_of[y][t])] += c;
      }
    }
  return g;
}

// ---------------------------------------------------------------------------------------------
// The arms: every estimator and reduction of brain-math.md §5 and §7.

enum class method { brain, no_baseline, gdc_pp, dpg, dpo_sft, dpo_sft_iw, rso_dpo };

struct arm {
  std::string id, name;
  method kind;
  bool update_proposal;  ///< q <- q_theta every `refresh` steps (Algorithm 1), else q = p
};

inline std::vector<arm> all_arms() {
  return {{"brain", "BRAIn", method::brain, true},
          {"no-baseline", "BRAIn no baseline", method::no_baseline, true},
          {"gdcpp", "GDC++", method::gdc_pp, true},
          {"dpg", "DPG", method::dpg, true},
          {"dpo-sft-iw-n", "DPO-sft+IW+n", method::brain, false},  // BRAIn with the proposal fixed at the prior
          {"no-baseline-prior", "no baseline, q = p", method::no_baseline, false},
          {"gdcpp-prior", "GDC++, q = p", method::gdc_pp, false},
          {"dpg-prior", "DPG, q = p", method::dpg, false},
          {"dpo-sft", "DPO-sft", method::dpo_sft, false},
          {"dpo-sft-iw", "DPO-sft+IW", method::dpo_sft_iw, false},
          {"rso-dpo", "RSO+DPO", method::rso_dpo, false}};
}

/// The per-sample ascent coefficients of `kind` for the batch s, [prompts, n].
inline MatrixXd coefficients(const space& sp, method kind, const brain::samples<MatrixXd>& s, std::mt19937_64& rng) {
  const brain::bradley_terry goodness{.beta = sp.beta};
  const Index prompts = s.reward.rows(), n = s.reward.cols();
  switch (kind) {
    case method::brain: return brain::gradient_coefficients(s, brain::estimator::brain, goodness);
    case method::no_baseline: return brain::gradient_coefficients(s, brain::estimator::no_baseline, goodness);
    case method::gdc_pp: return brain::gradient_coefficients(s, brain::estimator::gdc_pp, goodness, sp.log_partition);
    case method::dpg: return brain::gradient_coefficients(s, brain::estimator::dpg, goodness, sp.log_partition);
    case method::dpo_sft:
    case method::dpo_sft_iw: {
      // n / 2 pairs per prompt; hard (argmax, Theorem 6.1) or soft (eq. 22) labels; q = p.
      const auto target = kind == method::dpo_sft ? brain::target_rule::argmax : brain::target_rule::softmax;
      const MatrixXd paired = brain::gradient_coefficients(brain::pairwise(s), brain::estimator::brain, goodness, {.target = target});
      return paired.reshaped<Eigen::RowMajor>(prompts, n);  // back to one row per prompt
    }
    case method::rso_dpo: {
      // RSO: rejection-sample from p exp(r / beta) using the group, pair the accepted samples,
      // DPO (beta_DPO = beta) on those pairs.
      const auto accepted = brain::rso_select(s.reward, sp.beta, n, rng);
      const auto pairs = brain::rso_pairs(s.reward, accepted);
      MatrixXd w = MatrixXd::Zero(prompts, n);
      if (pairs.empty()) return w;
      const Index count = Index(pairs.size());
      MatrixXd cw(count, 1), cl(count, 1), rw(count, 1), rl(count, 1);
      for (Index k = 0; k < count; ++k) {
        const auto& p = pairs[std::size_t(k)];
        cw(k, 0) = s.log_policy(p.row, p.chosen), cl(k, 0) = s.log_policy(p.row, p.rejected);
        rw(k, 0) = s.log_prior(p.row, p.chosen), rl(k, 0) = s.log_prior(p.row, p.rejected);
      }
      const auto dpo = brain::dpo_loss(cw, cl, rw, rl, {.beta = sp.beta});
      for (Index k = 0; k < count; ++k) {  // ascent: minus the gradient of the per-pair loss
        const auto& p = pairs[std::size_t(k)];
        w(p.row, p.chosen) -= dpo.grad_chosen(k, 0) * double(count);
        w(p.row, p.rejected) -= dpo.grad_rejected(k, 0) * double(count);
      }
      return w;
    }
  }
  throw std::logic_error("lab: unknown method");
}

// ---------------------------------------------------------------------------------------------
// Training and the exact measurements.

struct train_config {
  int steps = 400;
  int refresh = 10;        ///< steps between proposal refreshes (arms that update it)
  double learning_rate = 0.05;
  int evaluate_every = 20;
  unsigned seed = 1;
};

struct measurement {
  int step;
  double kl_posterior_policy;  ///< KL(posterior || policy): what BRAIn's objective (eq. 2) minimises
  double kl_policy_posterior;  ///< KL(policy || posterior)
  double expected_reward;      ///< E_policy[r]
  double kl_policy_prior;      ///< KL(policy || prior)
};

inline measurement measure(const space& s, int step, const MatrixXd& log_policy) {
  return {step, brain::exact_kl(s.log_posterior, log_policy).mean(), brain::exact_kl(log_policy, s.log_posterior).mean(),
          brain::exact_expectation(log_policy, s.reward).mean(), brain::exact_kl(log_policy, s.log_prior).mean()};
}

/// Adam on the ascent direction.
struct adam {
  std::vector<double> m, v;
  int t = 0;
  void step(std::vector<double>& theta, const std::vector<double>& ascent, double lr) {
    if (m.empty()) m.assign(theta.size(), 0.0), v.assign(theta.size(), 0.0);
    ++t;
    const double c1 = 1 - std::pow(0.9, t), c2 = 1 - std::pow(0.999, t);
    for (std::size_t k = 0; k < theta.size(); ++k) {
      m[k] = 0.9 * m[k] + 0.1 * ascent[k];
      v[k] = 0.999 * v[k] + 0.001 * ascent[k] * ascent[k];
      theta[k] += lr * (m[k] / c1) / (std::sqrt(v[k] / c2) + 1e-8);
    }
  }
};

/// Trains a policy initialised at the prior with one arm, n samples per prompt per step; returns
/// the exact measurements every `evaluate_every` steps (and at the end).
inline std::vector<measurement> train(const space& s, const arm& a, int n, const train_config& c) {
  std::mt19937_64 rng(c.seed);
  std::vector<double> theta = s.prior_logits;
  MatrixXd log_proposal = s.log_prior;
  adam optimiser;
  std::vector<measurement> trace;
  for (int step = 0; step <= c.steps; ++step) {
    const MatrixXd log_policy = sequence_log_probs(s, theta);
    if (step % c.evaluate_every == 0 || step == c.steps) trace.push_back(measure(s, step, log_policy));
    if (step == c.steps) break;
    if (a.update_proposal && step % c.refresh == 0) log_proposal = log_policy;
    const auto ys = draw(log_proposal, n, rng);
    const brain::samples<MatrixXd> batch{gather(log_policy, ys), gather(log_proposal, ys), gather(s.log_prior, ys),
                                         gather(s.reward, ys)};
    const MatrixXd w = coefficients(s, a.kind, batch, rng);
    optimiser.step(theta, direction(s, node_log_probs(s, theta), w, ys), c.learning_rate);
  }
  return trace;
}

// ---------------------------------------------------------------------------------------------
// Gradient variance as the proposal moves away from the posterior.

struct variance_point {
  double lambda, kl_proposal_posterior;
  std::string estimator;
  double variance;     ///< E ||g - E g||^2 over repeated draws of n samples per prompt
  double mean_norm;    ///< ||E g||
};

/// Proposals q_λ ∝ posterior^(1-λ) · prior^λ (λ = 0: the posterior, 1: the prior, > 1: beyond
/// it); the policy is the prior. For each λ and estimator, the variance of the direction over
/// `repeats` independent batches of n samples per prompt.
inline std::vector<variance_point> gradient_variance(const space& s, int n, int repeats, const std::vector<double>& lambdas,
                                                     unsigned seed) {
  const std::pair<const char*, method> estimators[] = {
      {"BRAIn", method::brain}, {"no baseline", method::no_baseline}, {"GDC++", method::gdc_pp}, {"DPG", method::dpg}};
  const std::vector<double> node_lp = node_log_probs(s, s.prior_logits);
  std::vector<variance_point> out;
  for (double lambda : lambdas) {
    const MatrixXd log_q = brain::row_log_softmax(MatrixXd((1 - lambda) * s.log_posterior + lambda * s.log_prior));
    const double distance = brain::exact_kl(log_q, s.log_posterior).mean();
    for (const auto& [name, kind] : estimators) {
      std::mt19937_64 rng(seed);  // the same draws for every estimator
      std::vector<double> sum(node_lp.size(), 0.0), sum_sq(node_lp.size(), 0.0);
      for (int r = 0; r < repeats; ++r) {
        const auto ys = draw(log_q, n, rng);
        const brain::samples<MatrixXd> batch{gather(s.log_prior, ys), gather(log_q, ys), gather(s.log_prior, ys),
                                             gather(s.reward, ys)};
        const auto g = direction(s, node_lp, coefficients(s, kind, batch, rng), ys);
        for (std::size_t k = 0; k < g.size(); ++k) sum[k] += g[k], sum_sq[k] += g[k] * g[k];
      }
      double variance = 0, norm_sq = 0;
      for (std::size_t k = 0; k < sum.size(); ++k) {
        const double mean = sum[k] / repeats;
        variance += sum_sq[k] / repeats - mean * mean;
        norm_sq += mean * mean;
      }
      out.push_back({lambda, distance, name, variance * repeats / (repeats - 1), std::sqrt(norm_sq)});
    }
  }
  return out;
}

}  // namespace lab
