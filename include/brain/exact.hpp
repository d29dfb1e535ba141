#pragma once
// Exact quantities on an enumerable output space (paper §7, docs/math.md §6): each row is one
// prompt, each column one of all its possible outputs. Tests and the exact-posterior lab use them
// to compare a trained policy with the true target.

#include <brain/backend.hpp>
#include <brain/divergence.hpp>
#include <brain/goodness.hpp>
#include <brain/samples.hpp>
#include <brain/validate.hpp>

#include <cmath>
#include <string_view>

namespace brain::inline v0 {
namespace detail {

/// How far from 0 a normalised row's log-sum-exp may be: rounding in double, not float.
inline constexpr double normalisation_tolerance = 1e-10;

/// Throws unless every row of log_p is a normalised distribution (|log sum exp| <= 1e-10).
template <class T, class X>
void check_log_distribution(std::string_view where, std::string_view name, const X& log_p) {
  check_not_empty<T>(where, name, log_p);
  check_values<T>(where, name, log_p, allow_negative_infinity::yes);
  const tensor_t<T> lse = row_logsumexp<T>(log_p);
  // max |lse| over rows, by reductions (one host read), then the offending row if any.
  const tensor_t<T> abs_lse =
      ops<T>::add(ops<T>::clamp_min(lse, 0.0), ops<T>::clamp_min(ops<T>::affine(lse, -1.0, 0.0), 0.0));
  if (column_max<T>(abs_lse) <= normalisation_tolerance) return;
  for (index i = 0; i < ops<T>::rows(lse); ++i) {
    const double v = ops<T>::value_at(lse, i, 0);
    if (!(std::fabs(v) <= normalisation_tolerance))
      fail(where, name, " row ", i, " is not a normalised distribution: log sum exp = ", describe_value(v),
           " (must be within ", normalisation_tolerance, " of 0)");
  }
}

}  // namespace detail

/// log p(y|x, G=1) for every output y (eq. 1): log_softmax over the row of log p(y|x) + log g.
/// For Bradley–Terry goodness with KL coefficient beta this is the optimal policy of
/// max E_pi[r] - beta KL(pi || p) (eq. 23, Theorem 7.1).
template <Backend T, GoodnessModel<T> G = bradley_terry>
tensor_t<T> exact_log_posterior(const T& prior_input, const T& reward_input, const G& goodness = {},
                                const options& opt = {}) {
  constexpr std::string_view where = "exact_log_posterior";
  const auto &log_prior = detail::as_tensor<T>(prior_input), &reward = detail::as_tensor<T>(reward_input);
  goodness.validate();
  if (opt.validate) {
    detail::check_not_empty<T>(where, "log_prior", log_prior);
    detail::check_same_shape<T>(where, "reward", reward, "log_prior", log_prior);
    detail::check_values<T>(where, "log_prior", log_prior, detail::allow_negative_infinity::yes);
    detail::check_values<T>(where, "reward", reward);
  }
  const tensor_t<T> log_joint = backend_traits<T>::add(goodness.template to_log_goodness<T>(reward), log_prior);
  if (opt.validate) detail::check_groups_possible<T>(where, log_joint, 0);
  return detail::row_log_softmax<T>(log_joint);
}

/// KL(p || q) per row for distributions given as log-probabilities over the same outputs; +inf
/// where p puts mass on an output that q cannot produce.
template <Backend T>
vector_t<T> exact_kl(const T& p_input, const T& q_input, const options& opt = {}) {
  const auto &log_p = detail::as_tensor<T>(p_input), &log_q = detail::as_tensor<T>(q_input);
  if (opt.validate) {
    constexpr std::string_view where = "exact_kl";
    detail::check_log_distribution<T>(where, "log_p", log_p);
    detail::check_same_shape<T>(where, "log_q", log_q, "log_p", log_p);
    detail::check_log_distribution<T>(where, "log_q", log_q);
  }
  return backend_traits<T>::to_vector(detail::row_kl<T>(backend_traits<T>::exp(log_p), log_p, log_q));
}

/// E_{y ~ pi}[v(y)] per row, for pi given as log-probabilities over all outputs.
template <Backend T>
vector_t<T> exact_expectation(const T& pi_input, const T& values_input, const options& opt = {}) {
  const auto &log_pi = detail::as_tensor<T>(pi_input), &values = detail::as_tensor<T>(values_input);
  if (opt.validate) {
    constexpr std::string_view where = "exact_expectation";
    detail::check_log_distribution<T>(where, "log_pi", log_pi);
    detail::check_same_shape<T>(where, "values", values, "log_pi", log_pi);
    detail::check_values<T>(where, "values", values);
  }
  return backend_traits<T>::to_vector(backend_traits<T>::row_weighted_sum(backend_traits<T>::exp(log_pi), values));
}

/// E_pi[r] - beta KL(pi || p) per row: the KL-regularised reward that the posterior under
/// bradley_terry{beta} maximises (eq. 23, Theorem 7.1).
template <Backend T>
vector_t<T> kl_regularized_reward(const T& pi_input, const T& prior_input, const T& reward_input, double beta,
                                  const options& opt = {}) {
  using ops = backend_traits<T>;
  const auto &log_pi = detail::as_tensor<T>(pi_input), &log_prior = detail::as_tensor<T>(prior_input);
  const auto& reward = detail::as_tensor<T>(reward_input);
  if (opt.validate) {
    constexpr std::string_view where = "kl_regularized_reward";
    bradley_terry{.beta = beta}.validate();
    detail::check_log_distribution<T>(where, "log_pi", log_pi);
    detail::check_same_shape<T>(where, "log_prior", log_prior, "log_pi", log_pi);
    detail::check_log_distribution<T>(where, "log_prior", log_prior);
    detail::check_same_shape<T>(where, "reward", reward, "log_pi", log_pi);
    detail::check_values<T>(where, "reward", reward);
  }
  // E_pi[r - beta (log pi - log p)], one weighted sum so 0 log 0 = 0 holds per output.
  const tensor_t<T> pointwise =
      ops::sub(ops::add(ops::affine(log_prior, beta, 0.0), reward), ops::affine(log_pi, beta, 0.0));
  return ops::to_vector(ops::row_weighted_sum(ops::exp(log_pi), pointwise));
}

}  // namespace brain::inline v0
