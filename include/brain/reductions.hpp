#pragma once
// DPO and RSO as special cases of BRAIn (paper §6, docs/math.md §5): pairing a group of n into
// n/2 groups of two, the argmax target rule (options::target), a standalone DPO loss, and RSO's
// rejection-sampling selection of pairs.
//
// The bridge of Table 3, with q = p (log_proposal = log_prior):
//   DPO-sft       brain_loss(pairwise(s), bt, {.target = target_rule::argmax})
//   DPO-sft+IW    brain_loss(pairwise(s), bt)                    (soft labels, eq. 22)
//   DPO-sft+IW+n  brain_loss(s, bt)
//   BRAIn         brain_loss(s, bt) with the proposal refreshed (Algorithm 1)

#include <brain/backend.hpp>
#include <brain/errors.hpp>
#include <brain/samples.hpp>
#include <brain/validate.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string_view>
#include <vector>

namespace brain::inline v0 {

/// Splits each prompt's n samples into n / k groups of k consecutive samples: [prompts, n] becomes
/// [prompts * n / k, k], group g of prompt p becoming row p * (n / k) + g.
template <Backend T>
samples<tensor_t<T>> regroup(const samples<T>& input, index k, const options& opt = {}) {
  using ops = backend_traits<T>;
  const auto& s = detail::as_tensors(input);
  if (opt.validate) {
    constexpr std::string_view where = "regroup";
    detail::check_samples<T>(where, s);
    if (k < 1 || ops::cols(s.log_policy) % k != 0)
      detail::fail(where, "group size k = ", k, " must divide the ", ops::cols(s.log_policy), " samples per prompt");
  }
  // The optional members follow when given (rollouts.hpp); empty ones stay empty.
  const auto optional = [&](const tensor_t<T>& x) { return detail::given<T>(x) ? ops::regroup(x, k) : tensor_t<T>{}; };
  return {.log_policy = ops::regroup(s.log_policy, k),
          .log_proposal = ops::regroup(s.log_proposal, k),
          .log_prior = ops::regroup(s.log_prior, k),
          .reward = ops::regroup(s.reward, k),
          .log_sampler = optional(s.log_sampler),
          .mask = optional(s.mask)};
}

/// n samples per prompt as n / 2 pairs (samples 2i and 2i+1), the grouping of DPO-sft (Table 3).
template <Backend T>
samples<tensor_t<T>> pairwise(const samples<T>& s, const options& opt = {}) {
  return regroup(s, 2, opt);
}

/// Parameters of the standalone DPO loss.
struct dpo_options {
  double beta = 0.1;             ///< beta_DPO; Theorem 6.1's reduction is beta = 1
  double label_smoothing = 0.0;  ///< epsilon of conservative DPO: the label is flipped with this probability
};

/// The DPO loss per pair and its gradients, for arbitrary [rows, cols] tensors of pairs.
template <Backend T>
struct dpo_result {
  scalar_t<T> loss;           ///< mean of per_pair
  tensor_t<T> per_pair;       ///< -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)
  tensor_t<T> grad_chosen;    ///< d loss / d chosen_log_policy
  tensor_t<T> grad_rejected;  ///< d loss / d rejected_log_policy (= -grad_chosen)
};

/// DPO (Rafailov et al. 2023, eq. 7) with h = [log pi(y_w) - log pi_ref(y_w)] -
/// [log pi(y_l) - log pi_ref(y_l)]. With beta = 1 and the prior as reference it equals BRAIn's
/// loss with argmax weights on pairs (Theorem 6.1).
template <Backend T>
dpo_result<T> dpo_loss(const T& chosen_policy_input, const T& rejected_policy_input, const T& chosen_reference_input,
                       const T& rejected_reference_input, const dpo_options& dpo = {}, const options& opt = {}) {
  using ops = backend_traits<T>;
  constexpr std::string_view where = "dpo_loss";
  const auto& chosen_log_policy = detail::as_tensor<T>(chosen_policy_input);
  const auto& rejected_log_policy = detail::as_tensor<T>(rejected_policy_input);
  const auto& chosen_log_reference = detail::as_tensor<T>(chosen_reference_input);
  const auto& rejected_log_reference = detail::as_tensor<T>(rejected_reference_input);
  if (!(dpo.beta > 0.0) || !std::isfinite(dpo.beta))
    detail::fail(where, "beta = ", detail::describe_value(dpo.beta), " must be finite and > 0");
  if (!(dpo.label_smoothing >= 0.0 && dpo.label_smoothing <= 0.5))
    detail::fail(where, "label_smoothing = ", detail::describe_value(dpo.label_smoothing), " must be in [0, 0.5]");
  if (opt.validate) {
    detail::check_not_empty<T>(where, "chosen_log_policy", chosen_log_policy);
    detail::check_same_shape<T>(where, "rejected_log_policy", rejected_log_policy, "chosen_log_policy",
                                chosen_log_policy);
    detail::check_same_shape<T>(where, "chosen_log_reference", chosen_log_reference, "chosen_log_policy",
                                chosen_log_policy);
    detail::check_same_shape<T>(where, "rejected_log_reference", rejected_log_reference, "chosen_log_policy",
                                chosen_log_policy);
    detail::check_values<T>(where, "chosen_log_policy", chosen_log_policy);
    detail::check_values<T>(where, "rejected_log_policy", rejected_log_policy);
    detail::check_values<T>(where, "chosen_log_reference", chosen_log_reference);
    detail::check_values<T>(where, "rejected_log_reference", rejected_log_reference);
  }
  const double eps = dpo.label_smoothing;
  const tensor_t<T> h = ops::sub(ops::sub(chosen_log_policy, detail::detach<T>(chosen_log_reference)),
                                 ops::sub(rejected_log_policy, detail::detach<T>(rejected_log_reference)));
  const tensor_t<T> scaled = ops::affine(h, dpo.beta, 0.0);
  const tensor_t<T> log_sig_pos = detail::log_sigmoid<T>(scaled);
  const tensor_t<T> log_sig_neg = detail::log_sigmoid<T>(ops::affine(scaled, -1.0, 0.0));
  tensor_t<T> per_pair = ops::add(ops::affine(log_sig_pos, -(1.0 - eps), 0.0), ops::affine(log_sig_neg, -eps, 0.0));
  // d/dh: -(1 - eps) beta sigmoid(-beta h) + eps beta sigmoid(beta h), over the count of the mean.
  const double count = static_cast<double>(ops::rows(h)) * static_cast<double>(ops::cols(h));
  const tensor_t<T> sig_pos = ops::exp(detail::detach<T>(log_sig_pos));
  const tensor_t<T> sig_neg = ops::exp(detail::detach<T>(log_sig_neg));
  tensor_t<T> grad_chosen = ops::add(ops::affine(sig_neg, -(1.0 - eps) * dpo.beta / count, 0.0),
                                     ops::affine(sig_pos, eps * dpo.beta / count, 0.0));
  tensor_t<T> grad_rejected = ops::affine(grad_chosen, -1.0, 0.0);
  return {.loss = ops::mean(per_pair),
          .per_pair = std::move(per_pair),
          .grad_chosen = std::move(grad_chosen),
          .grad_rejected = std::move(grad_rejected)};
}

/// log of RSO's acceptance probability (Liu et al. 2023): (r_i - max_j r_j) / beta, the rejection
/// sampler from pi*(y|x) proportional to p(y|x) exp(r / beta) with the group's samples from p.
template <Backend T>
tensor_t<T> rso_log_acceptance(const T& reward_input, double beta, const options& opt = {}) {
  using ops = backend_traits<T>;
  constexpr std::string_view where = "rso_log_acceptance";
  const auto& reward = detail::as_tensor<T>(reward_input);
  if (!(beta > 0.0) || !std::isfinite(beta))
    detail::fail(where, "beta = ", detail::describe_value(beta), " must be finite and > 0");
  if (opt.validate) {
    detail::check_not_empty<T>(where, "reward", reward);
    detail::check_values<T>(where, "reward", reward);
  }
  return ops::affine(ops::sub_per_row(reward, ops::row_max(reward)), 1.0 / beta, 0.0);
}

/// A preference pair within row `row`: column `chosen` beat column `rejected` under the reward.
struct preference_pair {
  index row, chosen, rejected;
  friend bool operator==(const preference_pair&, const preference_pair&) = default;
};

/// RSO's statistical rejection sampling, per row: visit the samples in a random order and accept
/// each with probability exp((r_i - max_j r_j) / beta), until `max_accepted` are accepted. The
/// best sample is accepted whenever it is visited. Returns the accepted columns per row, in order.
/// A host utility: it reads the rewards with value_at.
template <Backend T, class Rng>
std::vector<std::vector<index>> rso_select(const T& reward, double beta, index max_accepted, Rng& rng,
                                           const options& opt = {}) {
  using ops = backend_traits<T>;
  if (max_accepted < 1) detail::fail("rso_select", "max_accepted = ", max_accepted, " must be >= 1");
  const tensor_t<T> log_accept = rso_log_acceptance(reward, beta, opt);
  const index rows = ops::rows(log_accept), cols = ops::cols(log_accept);
  std::vector<std::vector<index>> accepted(static_cast<std::size_t>(rows));
  std::vector<index> order(static_cast<std::size_t>(cols));
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (index i = 0; i < rows; ++i) {
    std::iota(order.begin(), order.end(), index{0});
    std::shuffle(order.begin(), order.end(), rng);
    for (index j : order) {
      if (static_cast<index>(accepted[i].size()) == max_accepted) break;
      // u < exp(l) written as log(u) < l: l = 0 (the maximum) always accepts, since log u < 0.
      if (std::log(uniform(rng)) < ops::value_at(log_accept, i, j)) accepted[i].push_back(j);
    }
  }
  return accepted;
}

/// RSO's pairs: consecutive accepted samples (1st with 2nd, 3rd with 4th, ...), the higher reward
/// chosen (the earlier one on ties).
template <Backend T>
std::vector<preference_pair> rso_pairs(const T& reward_input, const std::vector<std::vector<index>>& accepted) {
  using ops = backend_traits<T>;
  const auto& reward = detail::as_tensor<T>(reward_input);
  if (static_cast<index>(accepted.size()) != ops::rows(reward))
    detail::fail("rso_pairs", "accepted has ", accepted.size(), " rows but reward has ", ops::rows(reward));
  std::vector<preference_pair> pairs;
  for (index i = 0; i < static_cast<index>(accepted.size()); ++i) {
    const auto& row = accepted[static_cast<std::size_t>(i)];
    for (std::size_t k = 0; k + 1 < row.size(); k += 2) {
      const index a = row[k], b = row[k + 1];
      if (a < 0 || a >= ops::cols(reward) || b < 0 || b >= ops::cols(reward))
        detail::fail("rso_pairs", "accepted[", i, "] holds column ", a < 0 || a >= ops::cols(reward) ? a : b,
                     " outside [0, ", ops::cols(reward), ")");
      const bool a_wins = ops::value_at(reward, i, a) >= ops::value_at(reward, i, b);
      pairs.push_back({.row = i, .chosen = a_wins ? a : b, .rejected = a_wins ? b : a});
    }
  }
  return pairs;
}

}  // namespace brain::inline v0
