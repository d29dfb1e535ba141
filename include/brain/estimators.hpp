#pragma once
// The family of gradient estimators (docs/math.md §7) as per-sample coefficients w_i of the
// ascent direction sum_i w_i grad log q_theta(y_i|x), all from the same n samples per prompt:
//
//   distillation of the posterior p(y|x, G=1) (eq. 3):  brain, no_baseline, gdc_pp, dpg
//   the KL-regularised reward objective whose optimum is that posterior (eq. 23, Theorem 7.1),
//   i.e. max E_q_theta[log g] - KL(q_theta || p), which under bradley_terry{beta} is
//   (E[r] - beta KL) / beta:                             rloo, grpo, ppo_clip
//
// One sample's log-probability is that of the whole sequence, so the ratios, advantages and KL
// terms of the policy-gradient estimators are sequence-level ones (TRL's
// importance_sampling_level="sequence"; pass length-normalised log-probs, reduction::mean, for
// GSPO's geometric-mean ratio). Side by side, with TRL's options in brackets (see
// docs/equations.md):
//
//   rloo      A_i = L_i - mean_{j != i} L_j,  L = log g + log p - log q_theta      (KL in the reward)
//             w_i = rho_i A_i / n,  rho_i = q_theta / q  (unclipped: TRL RLOOTrainer, num_iterations=1)
//   grpo      A_i = (R_i - mean_j R_j) / (std_j R_j + 1e-4),  R = log g           [scale_rewards]
//             loss_i = -min(rho_i A_i, clip(rho_i) A_i) + kl_coef * k3_i          [epsilon, epsilon_high, beta]
//             k3_i = p/q_theta - log(p/q_theta) - 1 (KL to the reference in the loss)
//   ppo_clip  A = whiten over the batch of (log g + log p - log q) (k1 KL of the sampling policy in the
//             reward; TRL PPOTrainer with gamma = lambda = 1 and no value model)
//             loss_i = -min(rho_i A_i, clip(rho_i) A_i)                          [cliprange]
//
// clip(rho) = min(max(rho, 1 - clip_low), 1 + clip_high); the clipped estimators' coefficient is
// w_i = rho_i A_i [rho_i A_i <= clip(rho_i) A_i] / n (+ kl_coef (p/q_theta - 1) / n for grpo).

#include <brain/backend.hpp>
#include <brain/goodness.hpp>
#include <brain/rewards.hpp>
#include <brain/rollouts.hpp>
#include <brain/samples.hpp>
#include <brain/weights.hpp>

#include <cmath>
#include <string>
#include <string_view>

namespace brain::inline v0 {

/// Which estimator gradient_coefficients() returns. Row sums (the "sum as documented" of each):
enum class estimator {
  brain,        ///< alpha-bar_i - beta-bar_i (eq. 12); rows sum to 0
  no_baseline,  ///< alpha-bar_i (eq. 7, ablation 9.3); rows sum to 1
  gdc_pp,       ///< (alpha_i / Z - beta_i) / n (GDC++); rows sum to (sum alpha / Z - sum beta) / n
  dpg,          ///< alpha_i / (n Z) (DPG); rows sum to sum alpha / (n Z)
  rloo,         ///< rho_i (L_i - mean_{j!=i} L_j) / n (REINFORCE leave-one-out); rows sum to 0 when rho = 1
  grpo,         ///< group-normalised advantages, clipped ratio, k3 KL to log_prior (GRPO, TRL's definitions)
  ppo_clip,     ///< batch-whitened KL-penalised reward, clipped ratio (PPO-clip at the sequence level)
};

/// The estimator's name, for messages and tables.
constexpr std::string_view name_of(estimator e) {
  switch (e) {
    case estimator::brain:
      return "brain";
    case estimator::no_baseline:
      return "no_baseline";
    case estimator::gdc_pp:
      return "gdc_pp";
    case estimator::dpg:
      return "dpg";
    case estimator::rloo:
      return "rloo";
    case estimator::grpo:
      return "grpo";
    case estimator::ppo_clip:
      return "ppo_clip";
  }
  return "unknown";
}

/// How GRPO scales its group-centred advantages (TRL's GRPOConfig.scale_rewards).
enum class advantage_scaling {
  group,  ///< divide by the group's standard deviation (unbiased) + 1e-4: TRL's default
  batch,  ///< divide by the standard deviation of all rewards in the batch (unbiased) + 1e-4
  none,   ///< no division (Dr. GRPO)
};

/// Parameters of the policy-gradient estimators, with TRL's names. Ignored by the others.
struct policy_gradient_options {
  double clip_low = 0.2;   ///< grpo, ppo_clip: ratios below 1 - clip_low are clipped [epsilon, cliprange]
  double clip_high = 0.2;  ///< grpo, ppo_clip: ratios above 1 + clip_high are clipped [epsilon_high; DAPO: 0.28]
  double kl_coef = 0.0;    ///< grpo: weight of the k3 KL(q_theta || p) term in the loss [beta; 0 = none]
  advantage_scaling scale_rewards = advantage_scaling::group;  ///< grpo [scale_rewards]

  void validate() const {
    if (!(clip_low >= 0.0 && clip_low < 1.0))
      detail::fail("policy_gradient_options", "clip_low = ", detail::describe_value(clip_low), " must be in [0, 1)");
    if (!(clip_high >= 0.0) || !std::isfinite(clip_high))
      detail::fail("policy_gradient_options", "clip_high = ", detail::describe_value(clip_high),
                   " must be finite and >= 0");
    if (!(kl_coef >= 0.0) || !std::isfinite(kl_coef))
      detail::fail("policy_gradient_options", "kl_coef = ", detail::describe_value(kl_coef),
                   " must be finite and >= 0");
  }
};

namespace detail {

/// An estimator's coefficients w, and (when asked) its surrogate value per prompt, [rows, 1]:
/// a loss whose gradient with respect to log_policy, holding w's inputs fixed, is -w.
template <class T>
struct estimate_result {
  tensor_t<T> coefficients;
  tensor_t<T> per_prompt;    // empty unless asked for
  double used_groups = 0.0;  // the groups not skipped (rollouts.hpp): the mean over prompts divides by it
};

/// One value per row as a double (its host read): for batch statistics.
template <class T, class X>
double scalar_of(const X& one_by_one) {
  return ops<T>::value_at(one_by_one, 0, 0);
}

/// min(max(rho, lo), hi), exactly (negation and max are exact).
template <class T, class X>
tensor_t<T> clip(const X& rho, double lo, double hi) {
  return ops<T>::affine(ops<T>::clamp_min(ops<T>::affine(ops<T>::clamp_min(rho, lo), -1.0, 0.0), -hi), -1.0, 0.0);
}

/// PPO's clipped term: coefficient rho A [rho A <= clip(rho) A] and value -min(rho A, clip(rho) A).
template <class T>
struct clipped_terms {
  tensor_t<T> coefficient, loss;
};
template <class T, class X>
clipped_terms<T> clipped_surrogate(const X& rho, const X& advantage, const policy_gradient_options& pg) {
  const tensor_t<T> unclipped = ops<T>::mul(rho, advantage);
  // rho A - clip(rho) A > 0 exactly where the clipped branch is the minimum (a constant in theta).
  const tensor_t<T> excess =
      ops<T>::mul(advantage, ops<T>::sub(rho, clip<T>(rho, 1.0 - pg.clip_low, 1.0 + pg.clip_high)));
  const tensor_t<T> kept = ops<T>::affine(is_positive<T>(excess), -1.0, 1.0);
  // -min(x, y) = max(x - y, 0) - x with x - y = excess.
  return {ops<T>::mul(kept, unclipped), ops<T>::sub(ops<T>::clamp_min(excess, 0.0), unclipped)};
}

/// Names the first non-finite coefficient with the log-quantities whose exp overflowed there.
template <class T, class S>
void check_coefficients(std::string_view where, estimator kind, const tensor_t<T>& w, const S& s,
                        const tensor_t<T>* log_alpha_minus_log_z) {
  const auto at = find_invalid<T>(w, false);
  if (!at) return;
  const auto [i, j] = *at;
  const auto v = [&](const auto& x) { return describe_value(ops<T>::value_at(x, i, j)); };
  const double lp = ops<T>::value_at(s.log_policy, i, j), lq = ops<T>::value_at(s.log_proposal, i, j);
  const double l0 = ops<T>::value_at(s.log_prior, i, j);
  fail(where, "estimator ", name_of(kind), ": coefficient [", i, ", ", j, "] is ", v(w),
       ": an exponential overflowed; log_policy - log_proposal = ", describe_value(lp - lq),
       " (importance ratio exp of it)",
       log_alpha_minus_log_z != nullptr ? ", log alpha - log Z = " + v(*log_alpha_minus_log_z) : std::string(),
       kind == estimator::grpo ? ", log_prior - log_policy = " + describe_value(l0 - lp) + " (k3 KL term)"
                               : std::string(),
       "; log_policy[", i, ", ", j, "] = ", describe_value(lp), ", log_proposal = ", describe_value(lq),
       ", log_prior = ", describe_value(l0));
}

/// Rejects samples estimator `kind` cannot use: shapes, values, and too few samples for its
/// baseline (rloo, grpo) or its batch whitening (ppo_clip).
template <class T, class S>
void check_estimator_input(std::string_view where, const S& s, estimator kind, const policy_gradient_options& pg) {
  const index prompts = ops<T>::rows(s.log_policy), n = ops<T>::cols(s.log_policy);
  check_sample_shapes<T>(where, s);
  // L = log g + log p - log q_theta needs a finite prior; so does GRPO's KL term.
  const bool prior_in_reward =
      kind == estimator::rloo || kind == estimator::ppo_clip || (kind == estimator::grpo && pg.kl_coef > 0.0);
  check_sample_values<T>(where, s, 0, prior_in_reward ? allow_negative_infinity::no : allow_negative_infinity::yes);
  if ((kind == estimator::rloo || kind == estimator::grpo) && n < 2)
    fail(where, "estimator ", name_of(kind), " needs n >= 2 samples per prompt (a baseline from the others), got ", n);
  if (kind == estimator::ppo_clip && prompts * n < 2)
    fail(where, "estimator ppo_clip whitens advantages over the batch and needs at least 2 samples, got 1");
}

// --- the policy-gradient family (rloo, grpo, ppo_clip): advantages, then rho A ---------------
// With a selection (rollouts.hpp) the statistics run over each group's kept samples (count k per
// row instead of n), the coefficients carry the sampler correction c and skipped groups give 0.

/// The per-sample coefficient or loss x summed as the estimator does: x / n, or with a selection
/// x c / k in used groups and 0 in skipped ones.
template <class T>
tensor_t<T> per_group_share(const tensor_t<T>& x, double nd, const selection<T>* sel) {
  if (sel == nullptr) return ops<T>::affine(x, 1.0 / nd, 0.0);
  return mul_per_row<T>(div_per_row<T>(ops<T>::mul(x, sel->factor), sel->count), sel->used);
}

/// rloo: L_i = log g_i + log p_i - log q_theta,i; A_i = L_i - mean_{j!=i} L_j = n / (n - 1) (L_i - mean L)
/// (k kept siblings instead of n with a selection); w = rho A / n, value -sum rho A / n.
template <class T>
estimate_result<T> rloo_estimate(const tensor_t<T>& log_g, const tensor_t<T>& rho, const tensor_t<T>& lp,
                                 const tensor_t<T>& l0, double nd, const selection<T>* sel, bool want_value) {
  const tensor_t<T> L = ops<T>::sub(ops<T>::add(log_g, l0), lp);
  tensor_t<T> advantage;
  if (sel == nullptr) {
    const tensor_t<T> centred = ops<T>::sub_per_row(L, ops<T>::affine(ops<T>::row_sum(L), 1.0 / nd, 0.0));
    advantage = ops<T>::affine(centred, nd / (nd - 1.0), 0.0);
  } else {
    const tensor_t<T> mean = kept_row_mean<T>(L, sel->keep, sel->count);
    const tensor_t<T> k_over_k_minus_1 = div_per_row<T>(sel->count, ops<T>::affine(sel->count, 1.0, -1.0));
    advantage = mul_per_row<T>(ops<T>::sub_per_row(L, mean), k_over_k_minus_1);
  }
  estimate_result<T> out;
  out.coefficients = per_group_share<T>(ops<T>::mul(rho, advantage), nd, sel);
  if (want_value) out.per_prompt = ops<T>::affine(ops<T>::row_sum(out.coefficients), -1.0, 0.0);
  return out;
}

/// Mean and unbiased variance of x over the batch (over `member` = 1 when given, count of them).
struct batch_moments {
  double mean, variance;
};
template <class T>
batch_moments moments(const tensor_t<T>& x, const tensor_t<T>* member, double count) {
  const double mean = scalar_of<T>(total<T>(member ? ops<T>::mul(x, *member) : x)) / count;
  const tensor_t<T> d = ops<T>::affine(x, 1.0, -mean);
  const tensor_t<T> squares = ops<T>::mul(d, d);
  return {mean, scalar_of<T>(total<T>(member ? ops<T>::mul(squares, *member) : squares)) / (count - 1.0)};
}

/// The moments of x over the batch: all samples, or with a selection the kept samples of used groups.
template <class T>
batch_moments batch_moments_of(const tensor_t<T>& x, index prompts, double nd, const selection<T>* sel) {
  if (sel == nullptr) return moments<T>(x, nullptr, nd * static_cast<double>(prompts));
  const tensor_t<T> member = mul_per_row<T>(sel->keep, sel->used);
  const double count = scalar_of<T>(total<T>(member));
  // Every group skipped (fewer than two kept samples in the batch): the results are multiplied by
  // used = 0, so any finite moments do; the skipped rows' keep (all 1) gives them.
  if (count < 2.0) return moments<T>(x, &sel->keep, scalar_of<T>(total<T>(sel->keep)));
  return moments<T>(x, &member, count);
}

/// grpo's advantages: log g centred within each group (over kept samples), scaled as TRL's
/// scale_rewards says.
template <class T>
tensor_t<T> grpo_advantages(const tensor_t<T>& log_g, advantage_scaling scaling, index prompts, double nd,
                            const selection<T>* sel) {
  if (scaling == advantage_scaling::group)
    return sel ? standardise_kept_rows<T>(log_g, sel->keep, sel->count, 1e-4) : standardise_rows<T>(log_g, 1e-4);
  const tensor_t<T> centred = sel ? ops<T>::sub_per_row(log_g, kept_row_mean<T>(log_g, sel->keep, sel->count))
                                  : ops<T>::sub_per_row(log_g, ops<T>::affine(ops<T>::row_sum(log_g), 1.0 / nd, 0.0));
  if (scaling == advantage_scaling::batch) {
    const batch_moments m = batch_moments_of<T>(log_g, prompts, nd, sel);
    return ops<T>::affine(centred, 1.0 / (std::sqrt(m.variance) + 1e-4), 0.0);
  }
  return centred;
}

/// ppo_clip's advantages: A = whiten(log g + log p - log q) over the batch (TRL's masked_whiten).
template <class T>
tensor_t<T> ppo_advantages(const tensor_t<T>& log_g, const tensor_t<T>& lq, const tensor_t<T>& l0, index prompts,
                           double nd, const selection<T>* sel) {
  const tensor_t<T> reward = ops<T>::sub(ops<T>::add(log_g, l0), lq);
  const batch_moments m = batch_moments_of<T>(reward, prompts, nd, sel);
  return ops<T>::affine(ops<T>::affine(reward, 1.0, -m.mean), 1.0 / std::sqrt(m.variance + 1e-8), 0.0);
}

/// grpo and ppo_clip: PPO's clipped term of rho A, plus grpo's k3 KL term to the prior when
/// kl_coef > 0; coefficients and value divided by n.
template <class T>
estimate_result<T> clipped_estimate(estimator kind, const tensor_t<T>& rho, const tensor_t<T>& advantage,
                                    const tensor_t<T>& lp, const tensor_t<T>& l0, const policy_gradient_options& pg,
                                    double nd, const selection<T>* sel, bool want_value) {
  const clipped_terms<T> terms = clipped_surrogate<T>(rho, advantage, pg);
  tensor_t<T> w = terms.coefficient;
  tensor_t<T> loss = terms.loss;
  if (kind == estimator::grpo && pg.kl_coef > 0.0) {
    // k3 = p/q_theta - log(p/q_theta) - 1; d k3 / d log q_theta = 1 - p/q_theta.
    const tensor_t<T> log_p_over_q = ops<T>::sub(l0, lp);
    const tensor_t<T> p_over_q = ops<T>::exp(log_p_over_q);
    w = ops<T>::add(w, ops<T>::affine(p_over_q, pg.kl_coef, -pg.kl_coef));
    if (want_value)
      loss = ops<T>::add(loss, ops<T>::affine(ops<T>::sub(p_over_q, log_p_over_q), pg.kl_coef, -pg.kl_coef));
  }
  estimate_result<T> out;
  out.coefficients = per_group_share<T>(w, nd, sel);
  if (want_value) out.per_prompt = ops<T>::row_sum(per_group_share<T>(loss, nd, sel));
  return out;
}

/// rloo, grpo, ppo_clip: log g and the importance ratio rho = q_theta / q, the estimator's
/// advantages and coefficients, then the checks that name an overflow.
template <class T, class S, class G>
estimate_result<T> policy_gradient_estimate(std::string_view where, const S& s, estimator kind, const G& goodness,
                                            const tensor_t<T>& lp, const tensor_t<T>& lq, const tensor_t<T>& l0,
                                            const policy_gradient_options& pg, const options& opt,
                                            const selection<T>* sel, bool want_value) {
  const index prompts = ops<T>::rows(s.log_policy);
  const double nd = static_cast<double>(ops<T>::cols(s.log_policy));
  const tensor_t<T> log_g = goodness.template to_log_goodness<T>(detach<T>(s.reward));
  if (opt.validate) check_values<T>(where, "log goodness of reward", log_g);
  const tensor_t<T> log_ratio = log_baseline_importance<T>(where, lp, lq, opt.validate);
  const tensor_t<T> rho = ops<T>::exp(log_ratio);
  estimate_result<T> out;
  if (kind == estimator::rloo) {
    out = rloo_estimate<T>(log_g, rho, lp, l0, nd, sel, want_value);
  } else {
    const tensor_t<T> advantage = kind == estimator::grpo
                                      ? grpo_advantages<T>(log_g, pg.scale_rewards, prompts, nd, sel)
                                      : ppo_advantages<T>(log_g, lq, l0, prompts, nd, sel);
    out = clipped_estimate<T>(kind, rho, advantage, lp, l0, pg, nd, sel, want_value);
  }
  if (opt.validate) check_coefficients<T>(where, kind, out.coefficients, s, nullptr);
  if (want_value && opt.validate) check_values<T>(where, "surrogate value of row", out.per_prompt);
  return out;
}

// --- the distillation family (brain, no_baseline, gdc_pp, dpg): weights of the posterior -----
// With a selection, log c is added to log alpha and log beta (-inf for a dropped sample: weight
// 0), n becomes each group's kept count k, and skipped groups give 0.

/// x in used groups, 0 in skipped ones (x itself without a selection).
template <class T>
tensor_t<T> in_used_groups(tensor_t<T> x, const selection<T>* sel) {
  return sel ? mul_per_row<T>(x, sel->used) : x;
}

/// log alpha (eq. 6) plus the selection's log c.
template <class T, class S, class G>
tensor_t<T> selected_log_alpha(std::string_view where, const S& s, const G& goodness, const options& opt,
                               const selection<T>* sel) {
  tensor_t<T> log_alpha = log_importance_weights<T>(where, s.log_prior, s.log_proposal, s.reward, goodness,
                                                    opt.validate);  // eq. 6
  return sel ? ops<T>::add(log_alpha, ops<T>::log(sel->factor)) : log_alpha;
}

/// brain: alpha-bar - beta-bar (eq. 12) and the KL (eq. 14): brain_loss's composed path, detached.
template <class T, class S, class G>
estimate_result<T> brain_estimate(std::string_view where, const S& s, const G& goodness, const tensor_t<T>& lp,
                                  const tensor_t<T>& lq, const tensor_t<T>& l0, const options& opt,
                                  const selection<T>* sel, bool want_value) {
  struct {
    const tensor_t<T>&log_policy, &log_proposal, &log_prior, &reward;
  } const detached{lp, lq, l0, s.reward};
  const tensor_t<T> log_factor = sel ? ops<T>::log(sel->factor) : tensor_t<T>{};
  auto parts = composed_group_loss<T>(where, detached, goodness, opt, -1.0, /*values_checked=*/true,
                                      sel ? &log_factor : nullptr);
  estimate_result<T> out;
  out.coefficients = in_used_groups<T>(std::move(parts.grad_log_policy), sel);
  if (want_value) out.per_prompt = in_used_groups<T>(std::move(parts.per_prompt), sel);
  return out;
}

/// no_baseline: the target weights alpha-bar (eqs. 6, 21, or argmax; eq. 7); value eq. 5.
template <class T, class S, class G>
estimate_result<T> no_baseline_estimate(std::string_view where, const S& s, const G& goodness, const tensor_t<T>& lp,
                                        const options& opt, const selection<T>* sel, bool want_value) {
  const row_softmax_result<T> target =
      normalize_target<T>(selected_log_alpha<T>(where, s, goodness, opt, sel), opt.target);
  estimate_result<T> out;
  out.coefficients = in_used_groups<T>(target.p, sel);
  if (want_value) out.per_prompt = ops<T>::affine(ops<T>::row_weighted_sum(out.coefficients, lp), -1.0, 0.0);
  return out;
}

/// log Z per prompt, Z = p(G=1|x) = E_q[alpha] the posterior's normaliser: the given one (checked),
/// or else the same samples' estimate log(sum alpha / n) (then DPG's coefficients equal alpha-bar).
template <class T>
tensor_t<T> log_normaliser(std::string_view where, const tensor_t<T>& log_alpha, const tensor_t<T>* log_partition,
                           index prompts, double nd, const selection<T>* sel, bool validate) {
  if (log_partition != nullptr && validate) {
    if (ops<T>::rows(*log_partition) != prompts || ops<T>::cols(*log_partition) != 1)
      fail(where, "shape mismatch: log_partition is ", ops<T>::rows(*log_partition), "x", ops<T>::cols(*log_partition),
           " but must be ", prompts, "x1 (one value per prompt)");
    check_values<T>(where, "log_partition", *log_partition);
  }
  if (log_partition != nullptr) return *log_partition;
  const tensor_t<T> log_sum = row_logsumexp<T>(log_alpha);
  return sel ? ops<T>::sub(log_sum, ops<T>::log(sel->count)) : ops<T>::affine(log_sum, 1.0, -std::log(nd));
}

/// gdc_pp and dpg: alpha_i / (n Z) (DPG, eq. 4), less GDC++'s baseline beta_i / n (eq. 9).
template <class T, class S, class G>
estimate_result<T> normalised_estimate(std::string_view where, const S& s, estimator kind, const G& goodness,
                                       const tensor_t<T>* log_partition, const tensor_t<T>& lp, const tensor_t<T>& lq,
                                       const options& opt, const selection<T>* sel, bool want_value) {
  const index prompts = ops<T>::rows(s.log_policy);
  const double nd = static_cast<double>(ops<T>::cols(s.log_policy));
  const tensor_t<T> log_alpha = selected_log_alpha<T>(where, s, goodness, opt, sel);
  const tensor_t<T> log_z = log_normaliser<T>(where, log_alpha, log_partition, prompts, nd, sel, opt.validate);
  const tensor_t<T> log_alpha_over_z = ops<T>::sub_per_row(log_alpha, log_z);
  const auto over_n = [&](const tensor_t<T>& x) {
    return sel ? div_per_row<T>(x, sel->count) : ops<T>::affine(x, 1.0 / nd, 0.0);
  };
  const tensor_t<T> alpha_over_nz = in_used_groups<T>(over_n(ops<T>::exp(log_alpha_over_z)), sel);
  estimate_result<T> out;
  if (kind == estimator::dpg) {
    out.coefficients = alpha_over_nz;
    if (want_value) out.per_prompt = ops<T>::affine(ops<T>::row_weighted_sum(alpha_over_nz, lp), -1.0, 0.0);
  } else {
    // The baseline term of eq. 9: sum beta_i / n has gradient beta_i / n and expectation 1.
    const tensor_t<T> beta = ops<T>::exp(log_baseline_importance<T>(where, lp, lq, opt.validate));
    const tensor_t<T> beta_over_n = in_used_groups<T>(over_n(sel ? ops<T>::mul(beta, sel->factor) : beta), sel);
    out.coefficients = ops<T>::sub(alpha_over_nz, beta_over_n);
    if (want_value)
      out.per_prompt = ops<T>::sub(ops<T>::row_sum(beta_over_n), ops<T>::row_weighted_sum(alpha_over_nz, lp));
  }
  if (opt.validate) check_coefficients<T>(where, kind, out.coefficients, s, &log_alpha_over_z);
  if (want_value && opt.validate) check_values<T>(where, "surrogate value of row", out.per_prompt);
  return out;
}

/// What estimator `kind` needs of a group (rollouts.hpp): two kept samples for a leave-one-out
/// or group baseline; one with a nonzero weight for the self-normalised weights.
inline group_needs needs_of(estimator kind) {
  switch (kind) {
    case estimator::rloo:
    case estimator::grpo:
      return {.min_kept = 2, .positive_factor = false};
    case estimator::ppo_clip:  // whitening over the batch needs two samples in it
      return {.min_kept = 1, .positive_factor = false, .min_batch = 2};
    default:
      return {.min_kept = 1, .positive_factor = true};
  }
}

/// The coefficients (and surrogate values) of estimator `kind` from samples `s` (their selection
/// `sel`'s filled samples when there is one): the input checks, then the estimator's family.
/// Everything is detached: w is a constant of the backward pass.
template <class T, class S, class G>
estimate_result<T> estimate_selected(std::string_view where, const S& s, estimator kind, const G& goodness,
                                     const tensor_t<T>* log_partition, const policy_gradient_options& pg,
                                     const options& opt, const selection<T>* sel, bool want_value) {
  if (opt.validate) check_estimator_input<T>(where, s, kind, pg);
  const auto& lp = detach<T>(s.log_policy);
  const auto& lq = detach<T>(s.log_proposal);
  const auto& l0 = detach<T>(s.log_prior);
  switch (kind) {
    case estimator::rloo:
    case estimator::grpo:
    case estimator::ppo_clip:
      return policy_gradient_estimate<T>(where, s, kind, goodness, lp, lq, l0, pg, opt, sel, want_value);
    case estimator::brain:
      return brain_estimate<T>(where, s, goodness, lp, lq, l0, opt, sel, want_value);
    case estimator::no_baseline:
      return no_baseline_estimate<T>(where, s, goodness, lp, opt, sel, want_value);
    default:
      return normalised_estimate<T>(where, s, kind, goodness, log_partition, lp, lq, opt, sel, want_value);
  }
}

/// estimate_selected on the samples as given, or on their selection when they carry a mask or a
/// sampler's log-probs or uninformative groups are dropped (rollouts.hpp).
template <class T, class S, class G>
estimate_result<T> estimate(std::string_view where, const S& s, estimator kind, const G& goodness,
                            const tensor_t<T>* log_partition, const policy_gradient_options& pg, const options& opt,
                            bool want_value) {
  goodness.validate();
  pg.validate();
  if (opt.validate) check_sample_shapes<T>(where, s);
  const selection<T> sel = select_samples<T>(where, s, needs_of(kind), opt);
  if (!sel.active) {
    estimate_result<T> out =
        estimate_selected<T>(where, s, kind, goodness, log_partition, pg, opt, nullptr, want_value);
    out.used_groups = static_cast<double>(ops<T>::rows(s.log_policy));
    return out;
  }
  estimate_result<T> out =
      estimate_selected<T>(where, sel.filled, kind, goodness, log_partition, pg, opt, &sel, want_value);
  out.used_groups = sel.used_groups;
  return out;
}

}  // namespace detail

/// What a batch's rollouts look like to estimator `kind` (rollouts.hpp): the groups it uses, skips
/// for too few kept samples, or finds uninformative (all kept rewards equal), the masked samples,
/// and the sampler mismatch over the kept samples when log_sampler is given (TRL's and NeMo-RL's
/// logged quantities). Reads a few values on the host.
template <Backend T>
rollout_diagnostics rollout_report(const samples<T>& input, estimator kind, const options& opt = {}) {
  constexpr std::string_view where = "rollout_report";
  const auto& s = detail::as_tensors(input);
  if (opt.validate) detail::check_sample_shapes<T>(where, s);
  rollout_diagnostics d;
  d.groups = backend_traits<T>::rows(s.log_policy);
  // Selected as the estimators select (with uninformative groups counted even when kept).
  options counting = opt;
  counting.uninformative = uninformative_groups::drop;
  const detail::selection<T> sel =
      detail::select_samples<T>(where, s, detail::needs_of(kind), counting, /*count_groups=*/true);
  d.skipped_groups = static_cast<index>(std::lround(sel.too_few));
  d.uninformative_groups = static_cast<index>(std::lround(sel.uninformative));
  d.used_groups = opt.uninformative == uninformative_groups::drop ? static_cast<index>(std::lround(sel.used_groups))
                                                                  : d.groups - d.skipped_groups;
  detail::measure_mismatch<T>(d, s, opt);
  return d;
}

/// Per-sample coefficients w_i of estimator `kind`, [prompts, n]: the ascent direction is
/// sum_i w_i grad log q_theta(y_i|x). GDC++ and DPG normalise alpha by p(G=1|x), estimated from
/// the samples; pass its logarithm per prompt ([prompts, 1]) to the overload below when known.
/// Throws std::invalid_argument on bad input, and where a coefficient would overflow.
template <Backend T, GoodnessModel<T> G = bradley_terry>
tensor_t<T> gradient_coefficients(const samples<T>& s, estimator kind, const G& goodness = {},
                                  const options& opt = {}) {
  return detail::estimate<T>("gradient_coefficients", detail::as_tensors(s), kind, goodness, nullptr, {}, opt, false)
      .coefficients;
}

/// As above, with the parameters of the policy-gradient estimators (rloo, grpo, ppo_clip).
template <Backend T, GoodnessModel<T> G>
tensor_t<T> gradient_coefficients(const samples<T>& s, estimator kind, const G& goodness,
                                  const policy_gradient_options& pg, const options& opt = {}) {
  return detail::estimate<T>("gradient_coefficients", detail::as_tensors(s), kind, goodness, nullptr, pg, opt, false)
      .coefficients;
}

/// As above, with the exact log normaliser log p(G=1|x) = log sum_y p(y|x) g(x,y) per prompt
/// (used by gdc_pp and dpg).
template <Backend T, GoodnessModel<T> G = bradley_terry>
tensor_t<T> gradient_coefficients(const samples<T>& s, estimator kind, const G& goodness,
                                  const tensor_t<T>& log_partition, const options& opt = {}) {
  return detail::estimate<T>("gradient_coefficients", detail::as_tensors(s), kind, goodness, &log_partition, {}, opt,
                             false)
      .coefficients;
}

}  // namespace brain::inline v0
