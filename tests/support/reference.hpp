#pragma once
// An independent scalar reference for the tests: the paper's formulas written directly, row by
// row in long double, with none of the library's code.

#include <Eigen/Core>

#include <cmath>
#include <vector>

namespace brain_test::ref {

using host = Eigen::MatrixXd;
using real = long double;

inline std::vector<real> softmax(const std::vector<real>& x) {
  real m = -INFINITY;
  for (real v : x) m = std::max(m, v);
  std::vector<real> out(x.size());
  real z = 0;
  for (std::size_t i = 0; i < x.size(); ++i) z += out[i] = std::exp(x[i] - m);
  for (real& v : out) v /= z;
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
  group g{softmax(a), softmax(b), 0};
  for (std::size_t i = 0; i < lp.size(); ++i)
    if (g.target[i] > 0) g.kl += g.target[i] * std::log(g.target[i] / g.baseline[i]);
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

/// -log sigmoid(h), the DPO loss of one pair (Rafailov et al., eq. 7), written as log1p.
inline double dpo_pair_loss(double h) { return h > 0 ? std::log1p(std::exp(-h)) : -h + std::log1p(std::exp(h)); }

}  // namespace brain_test::ref
