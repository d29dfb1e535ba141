#pragma once
// The self-normalised KL divergence (Definition 4.1, eqs. 13-14) that BRAIn minimises.

#include <brain/backend.hpp>
#include <brain/goodness.hpp>
#include <brain/samples.hpp>
#include <brain/weights.hpp>

namespace brain::inline v0 {
namespace detail {

/// KL(p || q) = sum_i p_i (log p_i - log q_i) per row, [rows, 1], given p = exp(log_p) too, with
/// 0 log 0 = 0: a zero weight (log p = -inf) contributes nothing, and p_i > 0 with q_i = 0 gives +inf.
template <class T, class P, class LogP, class LogQ>
tensor_t<T> row_kl(const P& p, const LogP& log_p, const LogQ& log_q) {
  return ops<T>::row_weighted_sum(p, ops<T>::sub(log_p, log_q));
}

}  // namespace detail

/// KL(alpha-bar || beta-bar) of each row's sample tuple (eq. 14), from the log weights of
/// log_target_weights() and log_baseline_weights(). Its expectation over tuples drawn from the
/// proposal is D_SN (eq. 13); it is >= 0, and 0 for every tuple when the policy is the posterior
/// (Theorem 4.3).
template <Backend T>
vector_t<T> self_normalized_kl(const T& log_target, const T& log_baseline, const options& opt = {}) {
  const auto &target = detail::as_tensor<T>(log_target), &baseline = detail::as_tensor<T>(log_baseline);
  if (opt.validate) {
    constexpr std::string_view where = "self_normalized_kl";
    detail::check_not_empty<T>(where, "log_target", target);
    detail::check_same_shape<T>(where, "log_baseline", baseline, "log_target", target);
    detail::check_values<T>(where, "log_target", target, detail::allow_negative_infinity::yes);
    detail::check_values<T>(where, "log_baseline", baseline, detail::allow_negative_infinity::yes);
  }
  return backend_traits<T>::to_vector(detail::row_kl<T>(backend_traits<T>::exp(target), target, baseline));
}

}  // namespace brain::inline v0
