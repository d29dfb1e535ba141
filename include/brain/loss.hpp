#pragma once
// The public entry point: brain_loss(samples, goodness, options) returns the BRAIn loss, its
// gradient with respect to the policy's sequence log-probs, and the weights behind it.
//
//   #include <brain/loss.hpp>
//   brain::samples<Eigen::MatrixXd> s{.log_policy = lp, .log_proposal = lq, .log_prior = l0, .reward = r};
//   auto out = brain::brain_loss(s);   // Bradley–Terry goodness, beta = 1
//
// Including this header brings in every core header, and the Eigen backend when Eigen is on the
// include path (link brain::eigen) unless BRAIN_NO_EIGEN is defined.

#include <brain/backend.hpp>
#include <brain/diagnostics.hpp>
#include <brain/divergence.hpp>
#include <brain/estimators.hpp>
#include <brain/exact.hpp>
#include <brain/goodness.hpp>
#include <brain/reductions.hpp>
#include <brain/samples.hpp>
#include <brain/weights.hpp>

#if !defined(BRAIN_NO_EIGEN) && __has_include(<Eigen/Core>)
#include <brain/backends/eigen.hpp>
#endif

namespace brain::inline v0 {

/// What brain_loss returns. Per-sample members are [prompts, n] tensors of the backend.
template <Backend T>
struct loss_result {
  /// Mean over prompts of KL(alpha-bar || beta-bar) (eqs. 13-14). With autograd backends it is
  /// differentiable with respect to log_policy, and the target weights are detached.
  scalar_t<T> loss;
  vector_t<T> per_prompt;      ///< KL(alpha-bar || beta-bar) of each prompt's group, [prompts]
  tensor_t<T> target_weights;  ///< alpha-bar (eqs. 6, 21); each row sums to 1
  tensor_t<T> baseline_weights;  ///< beta-bar (eq. 11); each row sums to 1
  /// d loss / d log_policy = (beta-bar - alpha-bar) / prompts: minus the BRAIn gradient
  /// coefficients of eq. 12, scaled for the mean over prompts. Feed it to a backward pass.
  tensor_t<T> grad_log_policy;
};

namespace detail {

/// Everything brain_loss computes for a block of rows; `prompts` is the batch's row count (for
/// the 1 / prompts of the mean) and `row_offset` the block's first row (for error messages).
template <class T>
struct group_loss_parts {
  tensor_t<T> per_prompt;  // [rows, 1]
  tensor_t<T> target_weights, baseline_weights, grad_log_policy;
};

template <class T, class G>
group_loss_parts<T> group_loss(const samples<T>& s, const G& goodness, const options& opt, index prompts,
                               index row_offset) {
  constexpr std::string_view where = "brain_loss";
  if (opt.validate) check_samples<T>(where, s, row_offset);
  const tensor_t<T> log_target = log_normalize_target<T>(
      log_importance_weights<T>(where, s.log_prior, s.log_proposal, s.reward, goodness, opt.validate, row_offset),
      opt.target);
  const tensor_t<T> log_baseline = log_baseline_weights<T>(s.log_policy, s.log_proposal);
  group_loss_parts<T> parts{
      .per_prompt = row_kl<T>(log_target, log_baseline),  // eq. 14
      .target_weights = ops<T>::exp(log_target),
      .baseline_weights = ops<T>::exp(detach<T>(log_baseline)),
      .grad_log_policy = {},
  };
  // d KL(alpha-bar || beta-bar) / d log q_theta(y_i) = beta-bar_i - alpha-bar_i (Theorem 4.2).
  parts.grad_log_policy = ops<T>::affine(ops<T>::sub(parts.baseline_weights, parts.target_weights),
                                         1.0 / static_cast<double>(prompts), 0.0);
  return parts;
}

}  // namespace detail

/// The BRAIn loss of a batch of groups (paper §3): the mean over prompts of KL(alpha-bar ||
/// beta-bar), whose gradient with respect to log_policy is minus the BRAIn estimate of eq. 12.
/// Throws std::invalid_argument on bad input (see options::validate).
template <Backend T, GoodnessModel<T> G = bradley_terry>
loss_result<T> brain_loss(const samples<T>& s, const G& goodness = {}, const options& opt = {}) {
  goodness.validate();
  if (opt.validate) detail::check_not_empty<T>("brain_loss", "log_policy", s.log_policy);
  const index prompts = backend_traits<T>::rows(s.log_policy);
  auto parts = detail::group_loss<T>(s, goodness, opt, prompts, 0);
  return loss_result<T>{
      .loss = backend_traits<T>::mean(parts.per_prompt),
      .per_prompt = backend_traits<T>::to_vector(parts.per_prompt),
      .target_weights = std::move(parts.target_weights),
      .baseline_weights = std::move(parts.baseline_weights),
      .grad_log_policy = std::move(parts.grad_log_policy),
  };
}

}  // namespace brain::inline v0
