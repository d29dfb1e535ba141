#pragma once
// The exact-posterior lab: an output space small enough to enumerate (all sequences of `length`
// tokens over `vocab`), so the posterior p(y|x,G=1) ∝ p(y|x) exp(r(x,y)/β) is exact and every
// estimator can be measured against it (docs/math.md §6–7).
//
// Priors, policies and proposals are tabular autoregressive models: a logit per (prompt, prefix,
// next token). Training uses the library's per-sample gradient coefficients times
// ∇ log q_θ(y) = Σ_t (e_{y_t} − softmax(θ[prefix_t])), computed by hand: no autograd framework.

#include <brain/loss.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
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
  std::vector<double> prior_logits;           ///< [prompts][nodes][vocab]
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

/// log q(y|x) of every output from a tabular model's node log-probs (node_log_probs), [prompts, outputs].
inline MatrixXd sequence_log_probs_of_nodes(const space& s, const std::vector<double>& table) {
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

/// log q(y|x) of every output under a tabular model, [prompts, outputs].
inline MatrixXd sequence_log_probs(const space& s, const std::vector<double>& logits) {
  return sequence_log_probs_of_nodes(s, node_log_probs(s, logits));
}

/// Logits of the tabular model whose sequence distribution is exp(log_probs) ([prompts, outputs],
/// rows normalised): each node's logits are the log-conditionals of the next token. The inverse of
/// sequence_log_probs; a tabular autoregressive model can represent every distribution.
inline std::vector<double> logits_of(const space& s, const MatrixXd& log_probs) {
  std::vector<double> logits(std::size_t(s.parameters()));
  for (int x = 0; x < s.prompts; ++x) {
    std::vector<double> level(std::size_t(s.outputs));
    for (Index y = 0; y < s.outputs; ++y) level[std::size_t(y)] = log_probs(x, y);  // log p(prefix) at length `length`
    for (int l = s.length - 1; l >= 0; --l) {
      const Index parents = Index(level.size()) / s.vocab, start = (parents - 1) / (s.vocab - 1);
      std::vector<double> up(static_cast<std::size_t>(parents));
      for (Index p = 0; p < parents; ++p) {
        double m = -INFINITY, z = 0;
        for (int k = 0; k < s.vocab; ++k) m = std::max(m, level[std::size_t(p * s.vocab + k)]);
        for (int k = 0; k < s.vocab; ++k) z += std::exp(level[std::size_t(p * s.vocab + k)] - m);
        up[std::size_t(p)] = m + std::log(z);
        for (int k = 0; k < s.vocab; ++k)
          logits[std::size_t((x * s.nodes + start + p) * s.vocab + k)] =
              level[std::size_t(p * s.vocab + k)] - up[std::size_t(p)];
      }
      level = std::move(up);
    }
  }
  return logits;
}

inline space make_space(const space_config& c) {
  if (c.vocab < 2 || c.length < 1 || c.prompts < 1)
    throw std::invalid_argument("lab: need vocab >= 2, length >= 1, prompts >= 1");
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

/// Draws from exp(log_probs), one distribution per row (prompt); built once, used for many batches.
struct sampler {
  std::vector<std::discrete_distribution<Index>> rows;
  explicit sampler(const MatrixXd& log_probs) {
    for (Index x = 0; x < log_probs.rows(); ++x) {
      const VectorXd p = log_probs.row(x).array().exp();
      rows.emplace_back(p.data(), p.data() + p.size());
    }
  }
  /// n outputs per prompt, [prompts][n].
  std::vector<std::vector<Index>> operator()(int n, std::mt19937_64& rng) {
    std::vector<std::vector<Index>> out(rows.size());
    for (std::size_t x = 0; x < rows.size(); ++x)
      for (int i = 0; i < n; ++i) out[x].push_back(rows[x](rng));
    return out;
  }
};

/// n outputs per prompt drawn from the distribution exp(log_probs) (a row per prompt), [prompts, n].
inline std::vector<std::vector<Index>> draw(const MatrixXd& log_probs, int n, std::mt19937_64& rng) {
  return sampler(log_probs)(n, rng);
}

/// log q(y|x) of the drawn outputs only, from a model's node log-probs (node_log_probs), [prompts, n];
/// the same sums, in the same order, as sequence_log_probs.
inline MatrixXd sample_log_probs(const space& s, const std::vector<double>& node_lp,
                                 const std::vector<std::vector<Index>>& ys) {
  MatrixXd out(s.prompts, Index(ys[0].size()));
  for (int x = 0; x < s.prompts; ++x)
    for (Index i = 0; i < out.cols(); ++i) {
      const Index y = ys[std::size_t(x)][std::size_t(i)];
      double lp = 0;
      for (int t = 0; t < s.length; ++t)
        lp += node_lp[std::size_t((x * s.nodes + s.node_of[y][t]) * s.vocab + s.token_of[y][t])];
      out(x, i) = lp;
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
// The arms: every estimator and reduction of docs/math.md §5 and §7.

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
    case method::brain:
      return brain::gradient_coefficients(s, brain::estimator::brain, goodness);
    case method::no_baseline:
      return brain::gradient_coefficients(s, brain::estimator::no_baseline, goodness);
    case method::gdc_pp:
      return brain::gradient_coefficients(s, brain::estimator::gdc_pp, goodness, sp.log_partition);
    case method::dpg:
      return brain::gradient_coefficients(s, brain::estimator::dpg, goodness, sp.log_partition);
    case method::dpo_sft:
    case method::dpo_sft_iw: {
      // n / 2 pairs per prompt; hard (argmax, Theorem 6.1) or soft (eq. 22) labels; q = p.
      const auto target = kind == method::dpo_sft ? brain::target_rule::argmax : brain::target_rule::softmax;
      const MatrixXd paired =
          brain::gradient_coefficients(brain::pairwise(s), brain::estimator::brain, goodness, {.target = target});
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
  int refresh = 10;  ///< steps between proposal refreshes (arms that update it)
  double learning_rate = 0.05;
  int evaluate_every = 20;
  int average_from =
      -1;  ///< >= 0: also measure the policy whose logits are the mean of θ_t over t in [average_from, steps]
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
  return {step, brain::exact_kl(s.log_posterior, log_policy).mean(),
          brain::exact_kl(log_policy, s.log_posterior).mean(), brain::exact_expectation(log_policy, s.reward).mean(),
          brain::exact_kl(log_policy, s.log_prior).mean()};
}

/// The measurement taken at `step` (a multiple of evaluate_every, or the last step).
inline const measurement& at_step(const std::vector<measurement>& trace, int step) {
  for (const auto& m : trace)
    if (m.step == step) return m;
  throw std::invalid_argument("lab: no measurement at step " + std::to_string(step));
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

struct run {
  std::vector<measurement> trace;           ///< every evaluate_every steps and at the end
  std::optional<measurement> tail_average;  ///< the policy with the averaged logits (train_config::average_from)
};

/// Called before each step's draw with the step, the policy's logits and the proposal's log-probs
/// (after the refresh that step may do).
using observer = std::function<void(int step, const std::vector<double>& theta, const MatrixXd& log_proposal)>;

/// Trains a policy initialised at the prior with one arm, n samples per prompt per step, the
/// proposal refreshed from the policy every `refresh` steps where the arm updates it (Algorithm 1
/// with a one-batch buffer); measures it exactly every `evaluate_every` steps and at the end.
inline run train(const space& s, const arm& a, int n, const train_config& c, const observer& watch = {}) {
  if (c.steps < 0 || c.refresh < 1 || c.evaluate_every < 1 || c.average_from > c.steps)
    throw std::invalid_argument("lab: need steps >= 0, refresh >= 1, evaluate_every >= 1, average_from <= steps");
  std::mt19937_64 rng(c.seed);
  std::vector<double> theta = s.prior_logits, theta_sum;
  int averaged = 0;
  MatrixXd log_proposal = s.log_prior, log_policy;
  sampler proposal(log_proposal);
  adam optimiser;
  run out;
  for (int step = 0; step <= c.steps; ++step) {
    const std::vector<double> node_lp = node_log_probs(s, theta);
    const bool evaluate = step % c.evaluate_every == 0 || step == c.steps;
    const bool refresh = a.update_proposal && step % c.refresh == 0 && step < c.steps;
    if (evaluate || refresh) log_policy = sequence_log_probs_of_nodes(s, node_lp);
    if (evaluate) out.trace.push_back(measure(s, step, log_policy));
    if (c.average_from >= 0 && step >= c.average_from) {
      if (theta_sum.empty()) theta_sum.assign(theta.size(), 0.0);
      for (std::size_t k = 0; k < theta.size(); ++k) theta_sum[k] += theta[k];
      ++averaged;
    }
    if (step == c.steps) break;
    if (refresh) log_proposal = log_policy, proposal = sampler(log_proposal);
    if (watch) watch(step, theta, log_proposal);
    const auto ys = proposal(n, rng);
    const brain::samples<MatrixXd> batch{sample_log_probs(s, node_lp, ys), gather(log_proposal, ys),
                                         gather(s.log_prior, ys), gather(s.reward, ys)};
    const MatrixXd w = coefficients(s, a.kind, batch, rng);
    optimiser.step(theta, direction(s, node_lp, w, ys), c.learning_rate);
  }
  if (averaged > 0) {
    for (double& v : theta_sum) v /= averaged;
    out.tail_average = measure(s, c.steps, sequence_log_probs(s, theta_sum));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Gradient variance: how far one batch's direction scatters, for a given policy and proposal.

/// The exact ascent direction of −KL(posterior || q_θ), averaged over prompts:
/// E_posterior[∇ log q_θ(y)] (E_{q_θ}[∇ log q_θ] = 0). DPG and GDC++ with the exact Z estimate it
/// without bias; BRAIn estimates −∇ D_SN instead (Theorem 4.2), which has the same zero.
inline std::vector<double> exact_gradient(const space& s, const std::vector<double>& node_lp) {
  std::vector<std::vector<Index>> all(std::size_t(s.prompts), std::vector<Index>(std::size_t(s.outputs)));
  for (auto& row : all)
    for (Index y = 0; y < s.outputs; ++y) row[std::size_t(y)] = y;
  return direction(s, node_lp, MatrixXd(s.log_posterior.array().exp()), all);
}

inline const std::vector<std::pair<std::string, method>>& variance_estimators() {
  static const std::vector<std::pair<std::string, method>> estimators{
      {"BRAIn", method::brain}, {"no baseline", method::no_baseline}, {"GDC++", method::gdc_pp}, {"DPG", method::dpg}};
  return estimators;
}

/// One estimator's scatter over `repeats` independent batches g_1..g_R (each: n samples per prompt).
struct direction_stats {
  std::string estimator;
  double variance;             ///< Σ_b ||g_b − ḡ||² / (R − 1): an unbiased estimate of E||g − E g||²
  double mean_norm;            ///< ||ḡ||
  double mse;                  ///< Σ_b ||g_b − g*||² / R, g* = exact_gradient: variance + squared bias w.r.t. ∇KL
  double median_sq_deviation;  ///< median over batches of ||g_b − ḡ||²: what a typical batch does
  double top_share;            ///< max_b ||g_b − ḡ||² / Σ_b ||g_b − ḡ||²: how much one batch dominates
};

/// The four estimators of docs/math.md §7 (BRAIn, no baseline, GDC++, DPG; the last two with the
/// exact Z) for a policy (its logits) and a proposal (log-probs, [prompts, outputs]); every
/// estimator sees the same `repeats` batches (drawn with `seed`).
inline std::vector<direction_stats> direction_variance(const space& s, const std::vector<double>& policy_logits,
                                                       const MatrixXd& log_proposal, int n, int repeats,
                                                       unsigned seed) {
  if (repeats < 2 || n < 2) throw std::invalid_argument("lab: the variance needs repeats >= 2 and n >= 2");
  const std::vector<double> node_lp = node_log_probs(s, policy_logits), exact = exact_gradient(s, node_lp);
  sampler q(log_proposal);
  std::vector<direction_stats> out;
  for (const auto& [name, kind] : variance_estimators()) {
    std::mt19937_64 rng(seed);  // the same draws for every estimator
    std::vector<std::vector<double>> g(static_cast<std::size_t>(repeats));
    std::vector<double> mean(node_lp.size(), 0.0);
    double mse = 0;
    for (auto& gb : g) {
      const auto ys = q(n, rng);
      const brain::samples<MatrixXd> batch{sample_log_probs(s, node_lp, ys), gather(log_proposal, ys),
                                           gather(s.log_prior, ys), gather(s.reward, ys)};
      gb = direction(s, node_lp, coefficients(s, kind, batch, rng), ys);
      for (std::size_t k = 0; k < gb.size(); ++k)
        mean[k] += gb[k] / repeats, mse += (gb[k] - exact[k]) * (gb[k] - exact[k]) / repeats;
    }
    std::vector<double> deviation;
    double total = 0, norm_sq = 0;
    for (const auto& gb : g) {
      double d = 0;
      for (std::size_t k = 0; k < gb.size(); ++k) d += (gb[k] - mean[k]) * (gb[k] - mean[k]);
      deviation.push_back(d), total += d;
    }
    for (double m : mean) norm_sq += m * m;
    const double largest = *std::max_element(deviation.begin(), deviation.end());
    std::nth_element(deviation.begin(), deviation.begin() + repeats / 2, deviation.end());
    double median = deviation[std::size_t(repeats / 2)];
    if (repeats % 2 == 0) median = (median + *std::max_element(deviation.begin(), deviation.begin() + repeats / 2)) / 2;
    out.push_back({name, total / (repeats - 1), std::sqrt(norm_sq), mse, median, total > 0 ? largest / total : 0.0});
  }
  return out;
}

/// One estimator at one (policy, proposal) configuration and one seed.
struct variance_point {
  double lambda = NAN;  ///< the proposal's place between posterior (0) and prior (1) (gradient_variance)
  int step = -1,
      lag = -1;  ///< the policy's step along a BRAIn run, and steps since the proposal's refresh (trajectory_variance)
  double kl_proposal_posterior, kl_policy_posterior, kl_policy_proposal;
  double exact_norm;  ///< ||g*||, the exact gradient's norm
  unsigned seed;
  direction_stats stats;
};

/// The policy fixed at the prior; proposals q_λ ∝ posterior^(1-λ) · prior^λ (λ = 0: the
/// posterior, 1: the prior, > 1: beyond it). Algorithm 1 never pairs these two except at λ = 1,
/// where training starts: its proposal is always a past policy.
inline std::vector<variance_point> gradient_variance(const space& s, int n, int repeats,
                                                     const std::vector<double>& lambdas, unsigned seed) {
  const double exact_norm = [&] {
    double sq = 0;
    for (double v : exact_gradient(s, node_log_probs(s, s.prior_logits))) sq += v * v;
    return std::sqrt(sq);
  }();
  std::vector<variance_point> out;
  for (double lambda : lambdas) {
    const MatrixXd log_q = brain::row_log_softmax(MatrixXd((1 - lambda) * s.log_posterior + lambda * s.log_prior));
    const double to_posterior = brain::exact_kl(log_q, s.log_posterior).mean();
    const double policy_to_proposal = brain::exact_kl(s.log_prior, log_q).mean();
    const double policy_to_posterior = brain::exact_kl(s.log_prior, s.log_posterior).mean();
    for (const auto& st : direction_variance(s, s.prior_logits, log_q, n, repeats, seed))
      out.push_back({lambda, -1, -1, to_posterior, policy_to_posterior, policy_to_proposal, exact_norm, seed, st});
  }
  return out;
}

/// The configurations Algorithm 1 reaches: a BRAIn run (n samples per prompt per step, config c,
/// seeded with `seed`) is stopped at each of `steps`; there the policy is θ_step and the proposal
/// the policy of the last refresh (lag = step mod refresh steps behind). Then as gradient_variance.
inline std::vector<variance_point> trajectory_variance(const space& s, int n, int repeats, train_config c,
                                                       const std::vector<int>& steps, unsigned seed) {
  if (steps.empty()) return {};
  c.steps = *std::max_element(steps.begin(), steps.end()) + 1;
  c.seed = seed;
  c.average_from = -1;
  c.evaluate_every = c.steps;
  std::map<int, std::pair<std::vector<double>, MatrixXd>> snapshots;
  const arm brain_arm{"brain", "BRAIn", method::brain, true};
  train(s, brain_arm, n, c, [&](int step, const std::vector<double>& theta, const MatrixXd& log_q) {
    if (std::find(steps.begin(), steps.end(), step) != steps.end()) snapshots[step] = {theta, log_q};
  });
  std::vector<variance_point> out;
  for (int step : steps) {
    const auto& [theta, log_q] = snapshots.at(step);
    const std::vector<double> node_lp = node_log_probs(s, theta);
    const MatrixXd log_policy = sequence_log_probs_of_nodes(s, node_lp);
    double sq = 0;
    for (double v : exact_gradient(s, node_lp)) sq += v * v;
    const double to_posterior = brain::exact_kl(log_q, s.log_posterior).mean();
    const double policy_to_posterior = brain::exact_kl(log_policy, s.log_posterior).mean();
    const double policy_to_proposal = brain::exact_kl(log_policy, log_q).mean();
    for (const auto& st : direction_variance(s, theta, log_q, n, repeats, seed))
      out.push_back({NAN, step, step % c.refresh, to_posterior, policy_to_posterior, policy_to_proposal, std::sqrt(sq),
                     seed, st});
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Summaries over seeds.

struct spread {
  double mean = NAN, sd = NAN, min = NAN, max = NAN, median = NAN;
  std::size_t count = 0;
};

/// Mean, sample standard deviation (0 for one value), min, max and median of v.
inline spread spread_of(std::vector<double> v) {
  spread s;
  s.count = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front(), s.max = v.back();
  s.median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  s.mean = 0;
  for (double x : v) s.mean += x / double(v.size());
  s.sd = 0;
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(s.sd / double(v.size() - 1)) : 0.0;
  return s;
}

/// A factor between two arms run with the same seeds: the ratio of their means, and the smallest
/// and largest per-seed ratio a_k / b_k. (Arms with the proposal fixed at the prior draw the very
/// same samples under the same seed, so their per-seed ratios compare like with like.)
struct ratio_range {
  double of_means, low, high;
};

inline ratio_range ratio_of(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.empty() || a.size() != b.size())
    throw std::invalid_argument("lab: ratio_of needs two equally long, non-empty lists");
  std::vector<double> ratios;
  for (std::size_t k = 0; k < a.size(); ++k) {
    if (!(b[k] > 0) || !(a[k] >= 0)) throw std::invalid_argument("lab: ratio_of needs a >= 0 and b > 0");
    ratios.push_back(a[k] / b[k]);
  }
  const spread r = spread_of(ratios);
  return {spread_of(a).mean / spread_of(b).mean, r.min, r.max};
}

}  // namespace lab
