#pragma once
// The family of gradient estimators BRAIn is compared with (brain-math.md §7), as per-sample
// coefficients w_i of the ascent direction sum_i w_i grad log q_theta(y_i|x) on the distillation
// objective L_x (eq. 3). All four use the same n samples from the proposal.

#include <brain/backend.hpp>
#include <brain/goodness.hpp>
#include <brain/samples.hpp>
#include <brain/weights.hpp>

#include <cmath>
#include <string_view>

namespace brain::inline v0 {

/// Which estimator gradient_coefficients() returns. Row sums (the "sum as documented" of each):
enum class estimator {
  brain,        ///< alpha-bar_i - beta-bar_i (eq. 12); rows sum to 0
  no_baseline,  ///< alpha-bar_i (eq. 7, ablation 9.3); rows sum to 1
  gdc_pp,       ///< (alpha_i / Z - beta_i) / n (GDC++); rows sum to (sum alpha / Z - sum beta) / n
  dpg,          ///< alpha_i / (n Z) (DPG); rows sum to sum alpha / (n Z)
};

namespace detail {

template <class T, class G>
tensor_t<T> gradient_coefficients(const samples<T>& s, estimator kind, const G& goodness,
                                  const tensor_t<T>* log_partition, const options& opt) {
  constexpr std::string_view where = "gradient_coefficients";
  goodness.validate();
  if (opt.validate) check_samples<T>(where, s);
  const tensor_t<T> log_alpha =
      log_importance_weights<T>(where, s.log_prior, s.log_proposal, s.reward, goodness, opt.validate);
  const double n = static_cast<double>(ops<T>::cols(log_alpha));
  switch (kind) {
    case estimator::brain:
      return ops<T>::sub(normalize_target<T>(log_alpha, opt.target).p,
                         ops<T>::exp(log_baseline_weights<T>(s.log_policy, s.log_proposal)));
    case estimator::no_baseline:
      return normalize_target<T>(log_alpha, opt.target).p;
    case estimator::gdc_pp:
    case estimator::dpg: {
      // alpha_i / Z with the posterior's normaliser Z = p(G=1|x) = E_q[alpha]; without a known Z,
      // the same samples' estimate log(sum alpha / n) (then DPG's coefficients equal alpha-bar).
      if (log_partition != nullptr && opt.validate) {
        if (ops<T>::rows(*log_partition) != ops<T>::rows(log_alpha) || ops<T>::cols(*log_partition) != 1)
          fail(where, "shape mismatch: log_partition is ", ops<T>::rows(*log_partition), "x",
               ops<T>::cols(*log_partition), " but must be ", ops<T>::rows(log_alpha), "x1 (one value per prompt)");
        check_values<T>(where, "log_partition", *log_partition);
      }
      const tensor_t<T> log_z = log_partition != nullptr
                                    ? *log_partition
                                    : ops<T>::affine(row_logsumexp<T>(log_alpha), 1.0, -std::log(n));
      const tensor_t<T> alpha_over_z = ops<T>::exp(ops<T>::sub_per_row(log_alpha, log_z));
      if (kind == estimator::dpg) return ops<T>::affine(alpha_over_z, 1.0 / n, 0.0);
      const tensor_t<T> beta = ops<T>::exp(ops<T>::sub(detach<T>(s.log_policy), detach<T>(s.log_proposal)));
      return ops<T>::affine(ops<T>::sub(alpha_over_z, beta), 1.0 / n, 0.0);
    }
  }
  fail(where, "unknown estimator ", static_cast<int>(kind));
}

}  // namespace detail

/// Per-sample coefficients w_i of estimator `kind`, [prompts, n]: the ascent direction on L_x is
/// sum_i w_i grad log q_theta(y_i|x). GDC++ and DPG normalise alpha by p(G=1|x), estimated from
/// the samples; pass its logarithm per prompt ([prompts, 1]) to the overload below when known.
template <Backend T, GoodnessModel<T> G = bradley_terry>
tensor_t<T> gradient_coefficients(const samples<T>& s, estimator kind, const G& goodness = {},
                                  const options& opt = {}) {
  return detail::gradient_coefficients<T>(s, kind, goodness, nullptr, opt);
}

/// As above, with the exact log normaliser log p(G=1|x) = log sum_y p(y|x) g(x,y) per prompt.
template <Backend T, GoodnessModel<T> G = bradley_terry>
tensor_t<T> gradient_coefficients(const samples<T>& s, estimator kind, const G& goodness,
                                  const tensor_t<T>& log_partition, const options& opt = {}) {
  return detail::gradient_coefficients<T>(s, kind, goodness, &log_partition, opt);
}

}  // namespace brain::inline v0
