#pragma once
// The BRAIn loss of one group (one prompt's n samples) over raw row-major memory, written as
// BRAIN_HOST_DEVICE pieces that the CPU loop below and the CUDA kernels
// (brain/backends/cuda/group_loss.cuh) share, so the CPU tests exercise the GPU's arithmetic.
//
// Per group, with g the goodness model (§4) and i over the n samples:
//   log alpha_i = log g(r_i) + log p_i - log q_i                                 (eq. 6)
//   log beta_i  = log q_theta,i - log q_i                                        (eq. 11)
//   log alpha-bar_i = log alpha_i - logsumexp(log alpha),  likewise beta-bar     (eqs. 6, 11, 21)
//   KL(alpha-bar || beta-bar) = sum_i alpha-bar_i (log alpha-bar_i - log beta-bar_i)  (eq. 14)
//   d loss / d log q_theta,i = (beta-bar_i - alpha-bar_i) / prompts              (eq. 12, Theorem 4.2)
// The logsumexps are online (running max and sum), so a group takes one pass for them and one
// pass for the outputs, in any order and split across any number of threads.

#include <brain/config.hpp>
#include <brain/errors.hpp>
#include <brain/kernels/token_log_probs.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

namespace brain::inline v0::kernels {

/// logsumexp of values seen one at a time (add) or in parts (merge), in any order: a running
/// maximum and the sum of exp(x - maximum). -inf when empty or all -inf; NaN once a NaN or +inf
/// was seen (as row_logsumexp).
template <class Acc>
struct online_logsumexp {
  Acc max = -std::numeric_limits<Acc>::infinity();
  Acc sum = 0;
  bool poisoned = false;

  BRAIN_HOST_DEVICE void add(Acc x) {
    poisoned = poisoned || !(x == x) || x == std::numeric_limits<Acc>::infinity();
    if (poisoned || x == -std::numeric_limits<Acc>::infinity()) return;
    if (x > max) {
      sum = sum * exp_approx(max - x) + Acc(1);
      max = x;
    } else {
      sum += exp_approx(x - max);
    }
  }
  BRAIN_HOST_DEVICE void merge(const online_logsumexp& other) {
    poisoned = poisoned || other.poisoned;
    if (other.max == -std::numeric_limits<Acc>::infinity()) return;
    if (max == -std::numeric_limits<Acc>::infinity()) {
      max = other.max;
      sum = other.sum;
      return;
    }
    const Acc m = max > other.max ? max : other.max;
    sum = sum * exp_approx(max - m) + other.sum * exp_approx(other.max - m);
    max = m;
  }
  BRAIN_HOST_DEVICE Acc value() const {
    if (poisoned) return std::numeric_limits<Acc>::quiet_NaN();
    if (max == -std::numeric_limits<Acc>::infinity()) return max;
    return max + std::log(sum);
  }
};

/// Why a group has no loss. Input codes name the argument; the order is the order of the checks.
enum class group_status : std::uint8_t {
  ok = 0,
  bad_log_policy,     ///< NaN or ±inf in log_policy
  bad_log_proposal,   ///< NaN or ±inf in log_proposal
  bad_log_prior,      ///< NaN or +inf in log_prior (-inf is allowed: a zero target weight)
  bad_reward,         ///< NaN or ±inf in reward, or its log goodness
  no_target_support,  ///< every target weight is zero (log alpha = -inf for all n samples)
  weight_overflow,    ///< the largest log importance weight is +inf or NaN
  baseline_overflow,  ///< log_policy - log_proposal overflowed (eq. 11's log beta is not finite)
};

/// What group_status means, for error messages.
inline std::string_view describe(group_status s) {
  switch (s) {
    case group_status::ok: return "ok";
    case group_status::bad_log_policy: return "log_policy holds NaN or an infinity";
    case group_status::bad_log_proposal: return "log_proposal holds NaN or an infinity";
    case group_status::bad_log_prior: return "log_prior holds NaN or +inf";
    case group_status::bad_reward: return "reward (or its log goodness) holds NaN or an infinity";
    case group_status::baseline_overflow:
      return "log_policy - log_proposal overflowed (the log baseline weight of eq. 11 is not finite)";
    case group_status::no_target_support:
      return "every target weight is zero (log_prior + log goodness is -inf for all samples); the posterior gives "
             "this group no support";
    case group_status::weight_overflow:
      return "the largest log importance weight overflowed (log goodness + log_prior - log_proposal)";
  }
  return "unknown status";
}

/// Pointers to [prompts, n] row-major arrays (host or device memory, as the caller says).
template <class T>
struct group_loss_inputs {
  const T* log_policy;    ///< log q_theta(y|x): the policy being trained
  const T* log_proposal;  ///< log q(y|x): the proposal the samples came from
  const T* log_prior;     ///< log p(y|x): the SFT prior; -inf allowed
  const T* reward;        ///< r(x, y)
  index prompts;
  index n;
};

/// Where the results go: [prompts, n] arrays, per_prompt [prompts]; loss (one value) may be null.
template <class T>
struct group_loss_outputs {
  T* target_weights;    ///< alpha-bar, rows sum to 1
  T* baseline_weights;  ///< beta-bar, rows sum to 1
  T* grad_log_policy;   ///< (beta-bar - alpha-bar) / prompts
  T* per_prompt;        ///< KL(alpha-bar || beta-bar) per group (eq. 14)
  T* loss;              ///< mean of per_prompt; nullptr to skip
};

/// The first bad input among one sample's values, or ok: the reward itself must be finite (as in
/// brain_loss), not only its log goodness (logistic goodness maps +inf to a finite 0).
template <class Acc>
BRAIN_HOST_DEVICE group_status check_sample(Acc log_policy, Acc log_proposal, Acc log_prior, Acc reward,
                                            Acc log_goodness) {
  constexpr Acc inf = std::numeric_limits<Acc>::infinity();
  // v - v is 0 for finite v, NaN for NaN and ±inf.
  if (!(log_policy - log_policy == Acc(0))) return group_status::bad_log_policy;
  if (!(log_proposal - log_proposal == Acc(0))) return group_status::bad_log_proposal;
  if (!(log_prior < inf)) return group_status::bad_log_prior;
  if (!(reward - reward == Acc(0))) return group_status::bad_reward;
  if (!(log_goodness - log_goodness == Acc(0))) return group_status::bad_reward;
  const Acc log_beta = log_policy - log_proposal;
  if (!(log_beta - log_beta == Acc(0))) return group_status::baseline_overflow;
  return group_status::ok;
}

/// log g(r) in the accumulation type, for a goodness model of brain/goodness.hpp (its
/// operator() is BRAIN_HOST_DEVICE).
template <class Acc, class G>
BRAIN_HOST_DEVICE Acc log_goodness_value(const G& goodness, Acc reward) {
  return static_cast<Acc>(goodness(static_cast<double>(reward)));
}

/// log alpha_i (eq. 6, unnormalised).
template <class Acc>
BRAIN_HOST_DEVICE Acc log_importance_weight(Acc log_goodness, Acc log_prior, Acc log_proposal) {
  return log_goodness + log_prior - log_proposal;
}

/// log beta_i (eq. 11, unnormalised).
template <class Acc>
BRAIN_HOST_DEVICE Acc log_baseline_weight(Acc log_policy, Acc log_proposal) {
  return log_policy - log_proposal;
}

/// A group's status once its log-sum-exps are known.
template <class Acc>
BRAIN_HOST_DEVICE group_status check_group(Acc lse_alpha) {
  if (lse_alpha == -std::numeric_limits<Acc>::infinity()) return group_status::no_target_support;
  if (!(lse_alpha < std::numeric_limits<Acc>::infinity())) return group_status::weight_overflow;
  return group_status::ok;
}

/// One sample's outputs given its group's log-sum-exps.
template <class Acc>
struct sample_terms {
  Acc target;    // alpha-bar_i
  Acc baseline;  // beta-bar_i
  Acc kl;        // alpha-bar_i (log alpha-bar_i - log beta-bar_i), 0 where alpha-bar_i = 0 (eq. 14)
  Acc grad;      // (beta-bar_i - alpha-bar_i) * inv_prompts (eq. 12)
};

template <class Acc>
BRAIN_HOST_DEVICE sample_terms<Acc> sample_outputs(Acc log_alpha, Acc log_beta, Acc lse_alpha, Acc lse_beta,
                                                   Acc inv_prompts) {
  const Acc log_target = log_alpha - lse_alpha, log_baseline = log_beta - lse_beta;
  const Acc target = exp_approx(log_target), baseline = exp_approx(log_baseline);
  const Acc kl = target == Acc(0) ? Acc(0) : target * (log_target - log_baseline);  // 0 log 0 = 0
  return {target, baseline, kl, (baseline - target) * inv_prompts};
}

/// The whole loss of group `row` on the calling thread: the CPU path, and the reference the
/// CUDA kernels are tested against. Writes the row's outputs and per_prompt[row] (not loss).
template <class T, class G>
BRAIN_HOST_DEVICE group_status group_loss_row(const group_loss_inputs<T>& in, const group_loss_outputs<T>& out,
                                              const G& goodness, index row) {
  using acc = accumulate_t<T>;
  const index begin = row * in.n;
  online_logsumexp<acc> alpha, beta;
  group_status status = group_status::ok;
  for (index i = begin; i < begin + in.n; ++i) {
    const acc lp = in.log_policy[i], lq = in.log_proposal[i], l0 = in.log_prior[i], r = in.reward[i];
    const acc lg = log_goodness_value<acc>(goodness, r);
    if (status == group_status::ok) status = check_sample(lp, lq, l0, r, lg);
    alpha.add(log_importance_weight(lg, l0, lq));
    beta.add(log_baseline_weight(lp, lq));
  }
  const acc lse_alpha = alpha.value(), lse_beta = beta.value();
  if (status == group_status::ok) status = check_group(lse_alpha);
  const acc inv_prompts = acc(1) / static_cast<acc>(in.prompts);
  acc kl = 0;
  for (index i = begin; i < begin + in.n; ++i) {
    const acc lq = in.log_proposal[i];
    const acc lg = log_goodness_value<acc>(goodness, static_cast<acc>(in.reward[i]));
    const sample_terms<acc> t = sample_outputs(log_importance_weight(lg, static_cast<acc>(in.log_prior[i]), lq),
                                               log_baseline_weight(static_cast<acc>(in.log_policy[i]), lq),
                                               lse_alpha, lse_beta, inv_prompts);
    out.target_weights[i] = static_cast<T>(t.target);
    out.baseline_weights[i] = static_cast<T>(t.baseline);
    out.grad_log_policy[i] = static_cast<T>(t.grad);
    kl += t.kl;
  }
  out.per_prompt[row] = static_cast<T>(kl);
  return status;
}

/// Throws for group `row`, whose status is `status`, naming the column, argument and value of its
/// first bad sample (from host memory holding the row's n values of each input); a status of the
/// whole group (no support, overflow of the largest weight) is named with the row alone.
template <class T, class G>
[[noreturn]] void fail_group(std::string_view where, index row, group_status status, const T* log_policy,
                             const T* log_proposal, const T* log_prior, const T* reward, index n, const G& goodness) {
  using acc = accumulate_t<T>;
  using brain::detail::describe_value;
  for (index j = 0; j < n; ++j) {
    const acc lp = log_policy[j], lq = log_proposal[j], l0 = log_prior[j], r = reward[j];
    const group_status c = check_sample(lp, lq, l0, r, log_goodness_value<acc>(goodness, r));
    switch (c) {
      case group_status::ok: continue;
      case group_status::bad_log_policy:
        brain::detail::fail(where, "row ", row, ", column ", j, ": log_policy = ", describe_value(lp), ": ", describe(c));
      case group_status::bad_log_proposal:
        brain::detail::fail(where, "row ", row, ", column ", j, ": log_proposal = ", describe_value(lq), ": ", describe(c));
      case group_status::bad_log_prior:
        brain::detail::fail(where, "row ", row, ", column ", j, ": log_prior = ", describe_value(l0), ": ", describe(c));
      case group_status::bad_reward:
        brain::detail::fail(where, "row ", row, ", column ", j, ": reward = ", describe_value(r), " (log goodness ",
                            describe_value(log_goodness_value<acc>(goodness, r)), "): ", describe(c));
      default:
        brain::detail::fail(where, "row ", row, ", column ", j, ": log_policy - log_proposal = ", describe_value(lp),
                            " - ", describe_value(lq), ": ", describe(c));
    }
  }
  brain::detail::fail(where, "row ", row, ": ", describe(status));
}

/// Throws std::invalid_argument for a group_loss call whose sizes or pointers are unusable.
template <class T>
void check_group_loss_arguments(std::string_view where, const group_loss_inputs<T>& in,
                                const group_loss_outputs<T>& out) {
  if (in.prompts < 1) brain::detail::fail(where, "prompts = ", in.prompts, " must be >= 1");
  if (in.n < 1) brain::detail::fail(where, "n = ", in.n, " must be >= 1");
  const void* pointers[] = {in.log_policy, in.log_proposal, in.log_prior, in.reward,
                            out.target_weights, out.baseline_weights, out.grad_log_policy, out.per_prompt};
  const char* names[] = {"log_policy", "log_proposal", "log_prior", "reward",
                         "target_weights", "baseline_weights", "grad_log_policy", "per_prompt"};
  for (int k = 0; k < 8; ++k)
    if (pointers[k] == nullptr) brain::detail::fail(where, names[k], " is a null pointer");
}

/// The BRAIn loss of [prompts, n] groups on the CPU, one group after another; throws
/// std::invalid_argument naming the first bad row when `validate` (else bad rows give NaN).
template <class T, class G>
void group_loss(const group_loss_inputs<T>& in, const group_loss_outputs<T>& out, const G& goodness,
                bool validate = true) {
  constexpr std::string_view where = "kernels::group_loss";
  check_group_loss_arguments(where, in, out);
  goodness.validate();
  accumulate_t<T> total = 0;
  for (index row = 0; row < in.prompts; ++row) {
    const group_status s = group_loss_row(in, out, goodness, row);
    if (validate && s != group_status::ok) {
      const index at = row * in.n;
      fail_group(where, row, s, in.log_policy + at, in.log_proposal + at, in.log_prior + at, in.reward + at, in.n, goodness);
    }
    total += out.per_prompt[row];
  }
  if (out.loss != nullptr) *out.loss = static_cast<T>(total / static_cast<accumulate_t<T>>(in.prompts));
}

}  // namespace brain::inline v0::kernels
