#pragma once
// An independent scalar reference for the tests: the paper's formulas written directly, row by
// row in long double, with none of the library's code.

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <vector>

namespace brain_test::ref {

using host = Eigen::MatrixXd;
using real = long double;

inline std::vector<real> log_softmax(const std::vector<real>& x) {
  real m = -INFINITY;
  for (real v : x) m = std::max(m, v);
  real z = 0;
  for (real v : x) z += std::exp(v - m);
  std::vector<real> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = x[i] - m - std::log(z);
  return out;
}

inline std::vector<real> softmax(const std::vector<real>& x) {
  std::vector<real> out = log_softmax(x);
  for (real& v : out) v = std::exp(v);
  return out;
}

struct group {
  std::vector<real> target, baseline;
  real kl;
};

/// One row of brain_loss (eqs. 6, 11, 14, 21) for log g given per sample.
inline group brain_group(const std::vector<real>& lp, const std::vector<real>& lq, const std::vector<real>& l0,
                         const std::vector<real>& log_g) {
  std::vector<real> a(lp.size()), b(lp.size());
  for (std::size_t i = 0; i < lp.size(); ++i) {
    a[i] = log_g[i] + l0[i] - lq[i];
    b[i] = lp[i] - lq[i];
  }
  // The KL in the log domain, so that a baseline weight below the smallest long double stays
  // exact (log beta-bar = -1e12 is a finite contribution).
  const std::vector<real> log_target = log_softmax(a), log_baseline = log_softmax(b);
  group g{softmax(a), softmax(b), 0};
  for (std::size_t i = 0; i < lp.size(); ++i)
    if (g.target[i] > 0) g.kl += g.target[i] * (log_target[i] - log_baseline[i]);
  return g;
}

inline std::vector<real> row(const host& m, Eigen::Index i) {
  std::vector<real> out;
  for (Eigen::Index j = 0; j < m.cols(); ++j) out.push_back(m(i, j));
  return out;
}

/// Whole-batch reference under Bradley–Terry with KL coefficient beta.
struct batch {
  host target, baseline, grad;
  Eigen::VectorXd per_prompt;
  double loss;
};
inline batch brain_loss_bt(const host& lp, const host& lq, const host& l0, const host& r, double beta = 1.0) {
  batch out{host(lp.rows(), lp.cols()), host(lp.rows(), lp.cols()), host(lp.rows(), lp.cols()),
            Eigen::VectorXd(lp.rows()), 0.0};
  real total = 0;
  for (Eigen::Index i = 0; i < lp.rows(); ++i) {
    std::vector<real> log_g = row(r, i);
    for (real& v : log_g) v /= beta;
    const group g = brain_group(row(lp, i), row(lq, i), row(l0, i), log_g);
    for (Eigen::Index j = 0; j < lp.cols(); ++j) {
      out.target(i, j) = double(g.target[j]);
      out.baseline(i, j) = double(g.baseline[j]);
      out.grad(i, j) = double((g.baseline[j] - g.target[j]) / lp.rows());
    }
    out.per_prompt(i) = double(g.kl);
    total += g.kl;
  }
  out.loss = double(total / lp.rows());
  return out;
}

/// log g per element: Bradley–Terry r / beta, or the logistic model's log sigmoid(r).
inline host log_goodness_bt(const host& reward, double beta) { return reward / beta; }

/// The policy-gradient estimators of estimators.hpp, written from their definitions (TRL's
/// formulas, one sequence per sample) in long double: coefficients w and surrogate values.
struct estimate {
  host w;
  Eigen::VectorXd value;
};
enum class pg { rloo, grpo_group, grpo_batch, grpo_none, ppo_clip };

inline estimate policy_gradient(pg kind, const host& lp, const host& lq, const host& l0, const host& log_g,
                                double clip_low = 0.2, double clip_high = 0.2, double kl_coef = 0.0) {
  const Eigen::Index rows = lp.rows(), n = lp.cols();
  estimate out{host(rows, n), Eigen::VectorXd(rows)};
  // Batch statistics (grpo_batch: std of all rewards; ppo_clip: whitening of log g + log p - log q).
  real all_sum = 0, all_sq = 0, count = real(rows * n);
  std::vector<real> ppo_reward;
  for (Eigen::Index i = 0; i < rows; ++i)
    for (Eigen::Index j = 0; j < n; ++j) {
      const real x = kind == pg::ppo_clip ? real(log_g(i, j)) + l0(i, j) - lq(i, j) : real(log_g(i, j));
      all_sum += x;
      ppo_reward.push_back(x);
    }
  const real all_mean = all_sum / count;
  for (real x : ppo_reward) all_sq += (x - all_mean) * (x - all_mean);
  const real all_var = all_sq / (count - 1);
  for (Eigen::Index i = 0; i < rows; ++i) {
    real value = 0;
    std::vector<real> advantage(n);
    if (kind == pg::rloo) {
      std::vector<real> L(n);
      for (Eigen::Index j = 0; j < n; ++j) L[j] = real(log_g(i, j)) + l0(i, j) - lp(i, j);
      for (Eigen::Index j = 0; j < n; ++j) {
        real others = 0;
        for (Eigen::Index m = 0; m < n; ++m)
          if (m != j) others += L[m];
        advantage[j] = L[j] - others / (n - 1);
      }
    } else if (kind == pg::ppo_clip) {
      for (Eigen::Index j = 0; j < n; ++j)
        advantage[j] = (real(log_g(i, j)) + l0(i, j) - lq(i, j) - all_mean) / std::sqrt(all_var + 1e-8L);
    } else {
      real mean = 0, sq = 0;
      for (Eigen::Index j = 0; j < n; ++j) mean += log_g(i, j);
      mean /= n;
      for (Eigen::Index j = 0; j < n; ++j) sq += (log_g(i, j) - mean) * (log_g(i, j) - mean);
      const real sd = kind == pg::grpo_group ? std::sqrt(sq / (n - 1)) : std::sqrt(all_var);
      for (Eigen::Index j = 0; j < n; ++j)
        advantage[j] = kind == pg::grpo_none ? log_g(i, j) - mean : (log_g(i, j) - mean) / (sd + real(1e-4));
    }
    for (Eigen::Index j = 0; j < n; ++j) {
      const real rho = std::exp(real(lp(i, j)) - lq(i, j)), a = advantage[j];
      real w, term;
      if (kind == pg::rloo) {
        w = rho * a;
        term = -rho * a;
      } else {
        const real clipped = std::min(std::max(rho, 1 - real(clip_low)), 1 + real(clip_high));
        const bool kept = rho * a <= clipped * a;
        w = kept ? rho * a : 0;
        term = -std::min(rho * a, clipped * a);
        if (kind != pg::ppo_clip && kl_coef > 0) {
          const real log_ratio = real(l0(i, j)) - lp(i, j);  // log p / q_theta
          w += kl_coef * (std::exp(log_ratio) - 1);
          term += kl_coef * (std::exp(log_ratio) - log_ratio - 1);
        }
      }
      out.w(i, j) = double(w / n);
      value += term / n;
    }
    out.value(i) = double(value);
  }
  return out;
}

/// Row i's scale of rounding for the policy-gradient estimators: the magnitude of what the
/// advantage is computed from over its normalisation (cancellation of huge, nearly equal rewards).
inline double advantage_condition(pg kind, const host& lp, const host& lq, const host& l0, const host& log_g,
                                  Eigen::Index i) {
  double m = 0;
  for (const host* x : {&lp, &lq, &l0, &log_g})
    for (double v : x->reshaped())
      if (std::isfinite(v)) m = std::max(m, std::abs(v));
  if (kind == pg::rloo || kind == pg::grpo_none) return m;
  if (kind == pg::ppo_clip) {
    const host x = log_g + l0 - lq;
    const double mean = x.mean(), var = (x.array() - mean).square().sum() / double(x.size() - 1);
    return m / std::sqrt(var + 1e-8);
  }
  const Eigen::RowVectorXd row = log_g.row(i);
  const double sd = kind == pg::grpo_group
                        ? std::sqrt((row.array() - row.mean()).square().sum() / double(row.size() - 1))
                        : std::sqrt((log_g.array() - log_g.mean()).square().sum() / double(log_g.size() - 1));
  return m / (sd + 1e-4);
}

/// -log sigmoid(h), the DPO loss of one pair (Rafailov et al., eq. 7), written as log1p.
inline double dpo_pair_loss(double h) { return h > 0 ? std::log1p(std::exp(-h)) : -h + std::log1p(std::exp(h)); }

}  // namespace brain_test::ref
