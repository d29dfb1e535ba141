#pragma once
// Target weights alpha-bar (eqs. 6, 21) and baseline weights beta-bar (eq. 11), in the log
// domain. Both are self-normalised over each row (one prompt's group of n samples).

#include <brain/backend.hpp>
#include <brain/formula.hpp>
#include <brain/goodness.hpp>
#include <brain/samples.hpp>
#include <brain/validate.hpp>

#include <string_view>
#include <utility>

namespace brain::inline v0 {
namespace detail {

/// Throws for a row whose importance weights are all zero (no sample the posterior can produce)
/// or whose largest log weight overflowed.
template <class T, class X>
void check_groups_possible(std::string_view where, const X& log_alpha, index row_offset) {
  const tensor_t<T> row_max = ops<T>::row_max(log_alpha);
  if (all_valid<T>(row_max, false)) return;
  for (index i = 0; i < ops<T>::rows(row_max); ++i) {
    const double v = ops<T>::value_at(row_max, i, 0);
    if (v == -INFINITY) fail_no_target_support(where, i + row_offset, ops<T>::cols(log_alpha));
    if (!(v < INFINITY)) fail_weight_overflow(where, i + row_offset, v);
  }
}

/// Throws where log beta = log_policy - log_proposal overflowed (finite inputs more than the
/// largest double apart): that sample's baseline weight would be 0 or NaN and the KL infinite.
template <class T, class X, class P, class Q>
void check_baseline_possible(std::string_view where, const X& log_beta, const P& log_policy, const Q& log_proposal,
                             index row_offset) {
  if (const auto at = find_invalid<T>(log_beta, false)) {
    const auto [i, j] = *at;
    fail_baseline_overflow(where, i + row_offset, j, ops<T>::value_at(log_policy, i, j),
                           ops<T>::value_at(log_proposal, i, j), ops<T>::value_at(log_beta, i, j));
  }
}

/// log alpha_i = log g_i + log p(y_i|x) - log q(y_i|x) (eq. 6, unnormalised). Inputs are detached:
/// the target does not depend on theta, even when the caller passes the policy's own log-probs as
/// the proposal (on-policy sampling).
template <class T, class X, class G>
tensor_t<T> log_importance_weights(std::string_view where, const X& log_prior, const X& log_proposal, const X& reward,
                                   const G& goodness, bool validate, index row_offset = 0) {
  const tensor_t<T> log_g = goodness.template to_log_goodness<T>(detach<T>(reward));
  if (validate) check_values<T>(where, "log goodness of reward", log_g, allow_negative_infinity::no, row_offset);
  tensor_t<T> log_alpha = formula::log_target_weight(value_of<T>(log_g), value_of<T>(detach<T>(log_prior)),
                                                     value_of<T>(detach<T>(log_proposal)))
                              .t;
  if (validate) check_groups_possible<T>(where, log_alpha, row_offset);
  return log_alpha;
}

/// alpha-bar from log alpha, in both domains: softmax per row (eqs. 6, 21), or the argmax one-hot.
template <class T, class X>
row_softmax_result<T> normalize_target(const X& log_alpha, target_rule rule) {
  if (rule == target_rule::argmax) {
    tensor_t<T> one_hot = ops<T>::argmax_one_hot(log_alpha);
    tensor_t<T> log_one_hot = ops<T>::log(one_hot);
    return {std::move(log_one_hot), std::move(one_hot)};
  }
  return row_softmax<T>(log_alpha);
}

/// log beta_i = log q_theta(y_i|x) - log q(y_i|x) (eq. 11, unnormalised); gradients flow through
/// log_policy only. Checked for overflow when `validate`.
template <class T, class X>
tensor_t<T> log_baseline_importance(std::string_view where, const X& log_policy, const X& log_proposal, bool validate,
                                    index row_offset = 0) {
  tensor_t<T> log_beta = formula::log_baseline_weight(value_of<T>(log_policy), value_of<T>(detach<T>(log_proposal))).t;
  if (validate) check_baseline_possible<T>(where, log_beta, log_policy, log_proposal, row_offset);
  return log_beta;
}

/// What the composed path computes: per-prompt KLs [prompts, 1] and the [prompts, n] results.
template <class T>
struct composed_parts {
  tensor_t<T> per_prompt, target_weights, baseline_weights, grad_log_policy;
};

/// brain_loss composed from backend operations (formula.hpp's functions on whole tensors): for
/// backends without a fused group loss and for the argmax target; estimator::brain's coefficients
/// are its gradient at gradient_scale = -1. With opt.validate, checks the samples' values unless
/// the caller did (values_checked) and the weights' overflow.
template <class T, class S, class G>
composed_parts<T> composed_group_loss(std::string_view where, const S& s, const G& goodness, const options& opt,
                                      double gradient_scale, bool values_checked = false,
                                      const tensor_t<T>* log_factor = nullptr) {
  if (opt.validate && !values_checked) check_sample_values<T>(where, s, 0);
  tensor_t<T> log_alpha =
      log_importance_weights<T>(where, s.log_prior, s.log_proposal, s.reward, goodness, opt.validate);
  tensor_t<T> log_beta = log_baseline_importance<T>(where, s.log_policy, s.log_proposal, opt.validate);
  if (log_factor != nullptr) {  // the sampler correction and dropped samples (rollouts.hpp), after the checks
    log_alpha = ops<T>::add(log_alpha, *log_factor);
    log_beta = ops<T>::add(log_beta, *log_factor);
  }
  // alpha-bar (eqs. 6, 21) and beta-bar (eq. 11), each in both domains.
  row_softmax_result<T> target = normalize_target<T>(log_alpha, opt.target);
  const row_softmax_result<T> baseline = row_softmax<T>(log_beta);
  tensor_t<T> baseline_weights = detach<T>(baseline.p);
  // eq. 12 with alpha-bar the target actually used (one-hot under target_rule::argmax), and eq. 14.
  tensor_t<T> grad = formula::loss_gradient(value_of<T>(target.p), value_of<T>(baseline_weights), gradient_scale).t;
  tensor_t<T> kl =
      row_sum(formula::kl_summand(value_of<T>(target.p), value_of<T>(target.log_p), value_of<T>(baseline.log_p)));
  return {std::move(kl), std::move(target.p), std::move(baseline_weights), std::move(grad)};
}

}  // namespace detail

/// log alpha-bar: log target weights (eqs. 6, 21), [prompts, n], rows log-sum-exp to 0.
/// With Bradley–Terry goodness and log_proposal == log_prior this is log_softmax(reward / beta)
/// (Proposition 5.1).
template <Backend T, GoodnessModel<T> G = bradley_terry>
tensor_t<T> log_target_weights(const T& log_prior, const T& log_proposal, const T& reward, const G& goodness = {},
                               const options& opt = {}) {
  constexpr std::string_view where = "log_target_weights";
  const auto &l0 = detail::as_tensor<T>(log_prior), &lq = detail::as_tensor<T>(log_proposal);
  const auto& r = detail::as_tensor<T>(reward);
  goodness.validate();
  if (opt.validate) {
    detail::check_not_empty<T>(where, "reward", r);
    detail::check_same_shape<T>(where, "log_prior", l0, "reward", r);
    detail::check_same_shape<T>(where, "log_proposal", lq, "reward", r);
    detail::check_values<T>(where, "log_prior", l0, detail::allow_negative_infinity::yes);
    detail::check_values<T>(where, "log_proposal", lq);
    detail::check_values<T>(where, "reward", r);
  }
  return detail::normalize_target<T>(detail::log_importance_weights<T>(where, l0, lq, r, goodness, opt.validate),
                                     opt.target)
      .log_p;
}

/// alpha-bar: target weights (eqs. 6, 21), [prompts, n], rows sum to 1.
template <Backend T, GoodnessModel<T> G = bradley_terry>
tensor_t<T> target_weights(const T& log_prior, const T& log_proposal, const T& reward, const G& goodness = {},
                           const options& opt = {}) {
  return backend_traits<T>::exp(log_target_weights(log_prior, log_proposal, reward, goodness, opt));
}

/// log beta-bar: log baseline weights (eq. 11), [prompts, n].
template <Backend T>
tensor_t<T> log_baseline_weights(const T& log_policy, const T& log_proposal, const options& opt = {}) {
  constexpr std::string_view where = "log_baseline_weights";
  const auto &lp = detail::as_tensor<T>(log_policy), &lq = detail::as_tensor<T>(log_proposal);
  if (opt.validate) {
    detail::check_not_empty<T>(where, "log_policy", lp);
    detail::check_same_shape<T>(where, "log_proposal", lq, "log_policy", lp);
    detail::check_values<T>(where, "log_policy", lp);
    detail::check_values<T>(where, "log_proposal", lq);
  }
  return detail::row_log_softmax<T>(detail::log_baseline_importance<T>(where, lp, lq, opt.validate));
}

/// beta-bar: baseline weights (eq. 11), [prompts, n], rows sum to 1.
template <Backend T>
tensor_t<T> baseline_weights(const T& log_policy, const T& log_proposal, const options& opt = {}) {
  return backend_traits<T>::exp(log_baseline_weights(log_policy, log_proposal, opt));
}

/// log_softmax over each row: the normalisation every weight above uses.
template <Backend T>
tensor_t<T> row_log_softmax(const T& a) {
  return detail::row_log_softmax<T>(detail::as_tensor<T>(a));
}

}  // namespace brain::inline v0
