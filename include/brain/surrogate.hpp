#pragma once
// One differentiable loss for every estimator of estimators.hpp, so that a trainer swaps
// estimators with one argument:
//
//   auto out = brain::surrogate_loss(s, brain::estimator::rloo, brain::bradley_terry{.beta = 0.05});
//   out.loss.backward();   // LibTorch: d loss / d log_policy = -coefficients / prompts
//
// The value is each estimator's own objective, negated for descent, averaged over prompts:
//   brain        KL(alpha-bar || beta-bar) (eq. 14), as brain_loss
//   no_baseline  -sum_i alpha-bar_i log q_theta(y_i) (eq. 5)
//   dpg          -sum_i alpha_i / (n Z) log q_theta(y_i) (eq. 4)
//   gdc_pp       the same plus sum_i beta_i / n (eq. 9's baseline, expectation 1)
//   rloo         -sum_i rho_i A_i / n (0 when rho = 1: the advantages sum to 0; trl#3452)
//   grpo         sum_i [-min(rho_i A_i, clip(rho_i) A_i) + kl_coef k3_i] / n (TRL's GRPO loss, one
//                sequence per sample)
//   ppo_clip     sum_i -min(rho_i A_i, clip(rho_i) A_i) / n
// Its gradient with respect to log_policy is exactly -w / prompts on every backend: the value
// is computed from detached inputs and the gradient enters through a term
// sum_i (-w_i)(log_policy_i - detach(log_policy_i)), which is 0. (On an autograd backend the
// advantages, like w, are constants of the backward pass, as in TRL.)

#include <brain/backend.hpp>
#include <brain/estimators.hpp>
#include <brain/goodness.hpp>
#include <brain/samples.hpp>

#include <algorithm>
#include <string_view>
#include <utility>

namespace brain::inline v0 {

/// What surrogate_loss returns. Per-sample members are [prompts, n] tensors of the backend.
template <Backend T>
struct surrogate_result {
  scalar_t<T> loss;             ///< mean over prompts of per_prompt; differentiable w.r.t. log_policy
  vector_t<T> per_prompt;       ///< the estimator's surrogate value of each prompt's group
  tensor_t<T> coefficients;     ///< w of gradient_coefficients (ascent coefficients)
  tensor_t<T> grad_log_policy;  ///< d loss / d log_policy = -w / prompts: feed it to a backward pass
};

namespace detail {

template <class T, class S, class G>
surrogate_result<T> surrogate_loss(const S& s, estimator kind, const G& goodness, const tensor_t<T>* log_partition,
                                   const policy_gradient_options& pg, const options& opt) {
  estimate_result<T> e = estimate<T>("surrogate_loss", s, kind, goodness, log_partition, pg, opt, true);
  const double prompts = static_cast<double>(ops<T>::rows(s.log_policy));
  // The mean over the groups used (all of them unless a selection skipped some: rollouts.hpp).
  const double used = std::max(e.used_groups, 1.0);
  // value + sum_i (-w_i)(lp_i - detach(lp_i)): the same value, gradient -w (autograd backends).
  // A dropped sample's w is 0 (its log_policy may be NaN: zero_unless keeps it out).
  tensor_t<T> kept_log_policy;
  if (given<T>(s.mask)) kept_log_policy = zero_unless<T>(detach<T>(s.mask), s.log_policy);
  const tensor_t<T>& lp = given<T>(s.mask) ? kept_log_policy : s.log_policy;
  const tensor_t<T> zero_with_gradient =
      ops<T>::row_sum(ops<T>::mul(ops<T>::affine(e.coefficients, -1.0, 0.0), ops<T>::sub(lp, detach<T>(lp))));
  const tensor_t<T> per_prompt = ops<T>::add(e.per_prompt, zero_with_gradient);
  tensor_t<T> grad = ops<T>::affine(e.coefficients, -1.0 / used, 0.0);
  return {.loss = ops<T>::mean(ops<T>::affine(per_prompt, prompts / used, 0.0)),
          .per_prompt = ops<T>::to_vector(per_prompt),
          .coefficients = std::move(e.coefficients),
          .grad_log_policy = std::move(grad)};
}

}  // namespace detail

/// The surrogate loss of estimator `kind` (see the header comment): loss, per-prompt values, the
/// coefficients w and d loss / d log_policy = -w / prompts. Throws std::invalid_argument on bad
/// input and where a value would overflow.
template <Backend T, GoodnessModel<T> G = bradley_terry>
surrogate_result<T> surrogate_loss(const samples<T>& s, estimator kind, const G& goodness = {},
                                   const policy_gradient_options& pg = {}, const options& opt = {}) {
  return detail::surrogate_loss<T>(detail::as_tensors(s), kind, goodness, nullptr, pg, opt);
}

/// As above, with the options of the distillation estimators only.
template <Backend T, GoodnessModel<T> G>
surrogate_result<T> surrogate_loss(const samples<T>& s, estimator kind, const G& goodness, const options& opt) {
  return detail::surrogate_loss<T>(detail::as_tensors(s), kind, goodness, nullptr, {}, opt);
}

/// As above, with the exact log normaliser log p(G=1|x) per prompt ([prompts, 1]) for gdc_pp and dpg.
template <Backend T, GoodnessModel<T> G>
surrogate_result<T> surrogate_loss(const samples<T>& s, estimator kind, const G& goodness,
                                   const tensor_t<T>& log_partition, const options& opt = {}) {
  return detail::surrogate_loss<T>(detail::as_tensors(s), kind, goodness, &log_partition, {}, opt);
}

}  // namespace brain::inline v0
