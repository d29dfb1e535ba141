#pragma once
// BRAIn's per-sample formulas (docs/math.md §3-4), written once over a value type V: a float or
// double (the CPU loops' tails, the CUDA threads), a SIMD pack of them (the CPU loops,
// kernels/simd.hpp), or a whole backend tensor (brain_loss's composed path and estimator::brain,
// through detail::tensor_value in backend.hpp; hence the deduced return types). Changing an equation is an edit here:
// the CPU kernel (kernels/group_loss.hpp), the CUDA kernel (backends/cuda/group_loss.cuh), the composed path (loss.hpp)
// and the estimators (estimators.hpp) all call these functions.
//
// For one prompt's group of n samples y_1..y_n drawn from the proposal q:
//   log alpha_i = log g(r_i) + log p(y_i|x) - log q(y_i|x)                       (eq. 6)
//   log beta_i  = log q_theta(y_i|x) - log q(y_i|x)                              (eq. 11)
//   alpha-bar = alpha / sum alpha, beta-bar = beta / sum beta                     (eqs. 6, 11, 21)
//   KL(alpha-bar || beta-bar) = sum_i alpha-bar_i (log alpha-bar_i - log beta-bar_i)      (eq. 14)
//   d KL / d log q_theta(y_i|x) = beta-bar_i - alpha-bar_i                         (eq. 12, Theorem 4.2)
// The normalisations (softmax over a group) are the callers': a backend's row operations, or a
// kernel's running maxima and sums.

#include <brain/config.hpp>
#include <brain/kernels/simd.hpp>

#include <cmath>
#include <type_traits>

namespace brain::inline v0::formula {

/// A float or double value or SIMD pack: what the kernels instantiate the formulas with.
template <class V>
concept kernel_value = std::is_floating_point_v<kernels::simd::element_t<V>>;

/// log alpha_i, the unnormalised log target weight (eq. 6).
template <class V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT auto log_target_weight(const V& log_goodness, const V& log_prior,
                                                              const V& log_proposal) {
  return log_goodness + log_prior - log_proposal;
}

/// log beta_i, the unnormalised log baseline weight (eq. 11).
template <class V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT auto log_baseline_weight(const V& log_policy, const V& log_proposal) {
  return log_policy - log_proposal;
}

/// The derivative of the loss with respect to log q_theta(y_i|x): (beta-bar_i - alpha-bar_i) * scale
/// (eq. 12 with the sign of a loss). brain_loss uses scale = 1 / prompts (the mean over prompts);
/// estimator::brain's ascent coefficients alpha-bar_i - beta-bar_i are scale = -1.
template <class V, class S>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT auto loss_gradient(const V& target, const V& baseline, const S& scale) {
  return (baseline - target) * scale;
}

/// w * x, exactly 0 where w == 0 (also when x is infinite or NaN: 0 log 0 = 0 in every KL).
template <kernel_value V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT V weighted(const V& w, const V& x) {
  using kernels::simd::broadcast;
  return kernels::simd::select<V>(w == broadcast<V>(0), broadcast<V>(0), w * x);
}

/// One sample's term of eq. 14, w (log w - log b), 0 where w = 0: summed over a group with w =
/// alpha-bar, log w = log alpha-bar and log b = log beta-bar it is KL(alpha-bar || beta-bar). (The
/// CPU kernel sums it with unnormalised weights and shifted logs, then applies group_kl.)
template <class V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT auto kl_summand(const V& weight, const V& log_weight, const V& log_baseline) {
  return weighted(weight, log_weight - log_baseline);
}

/// KL(alpha-bar || beta-bar) (eq. 14) from unnormalised weights: with e_i = exp(a_i), f_i = exp(b_i),
/// S_a = sum e, S_b = sum f (a, b: log alpha and log beta, each shifted by a constant), alpha-bar_i
/// = e_i / S_a and log alpha-bar_i - log beta-bar_i = a_i - b_i - log S_a + log S_b, so
///   KL = (sum_i kl_summand(e_i, a_i, b_i)) / S_a + log(S_b / S_a).
/// Shifted by the group maxima, a_i - b_i and log(S_b / S_a) stay small: no cancellation of large terms.
template <class V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT V group_kl(V summands, V sum_alpha, V sum_beta) {
  return summands / sum_alpha + kernels::simd::log_branchless(sum_beta / sum_alpha);
}

}  // namespace brain::inline v0::formula
