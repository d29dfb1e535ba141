#pragma once
// Several rewards made one (docs/equations.md, "Several rewards"): k reward tensors of the same
// [prompts, samples_per_prompt] shape, each put on a common scale (within its group, within the
// batch, or left as it is), weighted and summed. The result is a reward like any other: it enters
// a goodness model (log g = r / beta under Bradley–Terry, eqs. 16–21) or an estimator.
//
// For BRAIn the scale matters, unlike for GRPO, which normalises the sum again: the weights of
// eq. 6 are exp(log g) = exp(r / beta), so a weight w on a group-normalised reward means "one
// within-group standard deviation of this reward multiplies the posterior by exp(w / beta)".
// TRL's GRPO names: reward_weights = weights; multi_objective_aggregation "normalize_then_sum"
// (GDPO) = scale group; "sum_then_normalize" (its default) = scale none, GRPO normalising the sum.

#include <brain/backend.hpp>
#include <brain/errors.hpp>
#include <brain/options.hpp>
#include <brain/validate.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

namespace brain::inline v0 {

/// How each reward is put on a common scale before the weighted sum.
enum class reward_scale {
  none,   ///< as given
  group,  ///< (r - mean) / (std + epsilon) over the samples of its prompt (unbiased std, as GRPO's)
  batch,  ///< the same over every sample of the batch
};

/// The weighted sum of several rewards: sum_k weights[k] * scaled(rewards[k]).
struct reward_mix {
  std::vector<double> weights;  ///< one per reward; empty: every weight 1
  reward_scale scale = reward_scale::none;
  double epsilon = 1e-4;  ///< added to the standard deviation (TRL's value), so equal rewards give 0

  /// Throws unless the weights fit `rewards` rewards and every number is usable.
  void validate(std::size_t rewards) const {
    if (!weights.empty() && weights.size() != rewards)
      detail::fail("combine_rewards", "reward_mix.weights has ", weights.size(), " entries for ", rewards, " rewards");
    for (std::size_t k = 0; k < weights.size(); ++k)
      if (!std::isfinite(weights[k]))
        detail::fail("combine_rewards", "reward_mix.weights[", k, "] = ", detail::describe_value(weights[k]),
                     " must be finite");
    if (scale != reward_scale::none && !(epsilon > 0.0 && std::isfinite(epsilon)))
      detail::fail("combine_rewards", "reward_mix.epsilon = ", detail::describe_value(epsilon),
                   " must be finite and > 0");
  }
};

namespace detail {

/// sqrt(variance) + epsilon per row, sqrt as exp(log(v) / 2): log(0) = -inf and exp(-inf) = 0, so
/// a row of equal values gives epsilon.
template <class T>
tensor_t<T> standard_deviation_plus(const tensor_t<T>& variance, double epsilon) {
  return ops<T>::affine(ops<T>::exp(ops<T>::affine(ops<T>::log(variance), 0.5, 0.0)), 1.0, epsilon);
}

/// (a - row mean) / (row std + epsilon) for each row of a, the std unbiased (n - 1), as torch.std
/// and TRL's scale_rewards. GRPO's group advantages (estimators.hpp) are this with epsilon 1e-4.
template <class T>
tensor_t<T> standardise_rows(const tensor_t<T>& a, double epsilon) {
  const double n = static_cast<double>(ops<T>::cols(a));
  const tensor_t<T> centred = ops<T>::sub_per_row(a, ops<T>::affine(ops<T>::row_sum(a), 1.0 / n, 0.0));
  const tensor_t<T> variance = ops<T>::affine(ops<T>::row_sum(ops<T>::mul(centred, centred)), 1.0 / (n - 1.0), 0.0);
  return div_per_row<T>(centred, standard_deviation_plus<T>(variance, epsilon));
}

/// The mean of each row's kept values (keep = 1; count of them per row), [rows, 1].
template <class T>
tensor_t<T> kept_row_mean(const tensor_t<T>& a, const tensor_t<T>& keep, const tensor_t<T>& count) {
  return div_per_row<T>(ops<T>::row_sum(ops<T>::mul(a, keep)), count);
}

/// The same over the samples with keep = 1 of each row (count of them per row, each >= 2): the
/// mean and the unbiased variance of the kept values; dropped positions get finite values.
template <class T>
tensor_t<T> standardise_kept_rows(const tensor_t<T>& a, const tensor_t<T>& keep, const tensor_t<T>& count,
                                  double epsilon) {
  const tensor_t<T> centred = ops<T>::sub_per_row(a, kept_row_mean<T>(a, keep, count));
  const tensor_t<T> variance = div_per_row<T>(ops<T>::row_sum(ops<T>::mul(keep, ops<T>::mul(centred, centred))),
                                              ops<T>::affine(count, 1.0, -1.0));
  return div_per_row<T>(centred, standard_deviation_plus<T>(variance, epsilon));
}

/// One reward on the scale `scale`. The batch scale standardises the batch as one row.
template <class T>
tensor_t<T> scaled_reward(const tensor_t<T>& r, reward_scale scale, double epsilon) {
  if (scale == reward_scale::group) return standardise_rows<T>(r, epsilon);
  if (scale == reward_scale::batch) {
    const index rows = ops<T>::rows(r), cols = ops<T>::cols(r);
    return ops<T>::regroup(standardise_rows<T>(ops<T>::regroup(r, rows * cols), epsilon), cols);
  }
  return r;
}

}  // namespace detail

/// sum_k mix.weights[k] * scaled(rewards[k]), each reward [prompts, samples_per_prompt] (docs:
/// equations.md, "Several rewards"). With opt.validate: at least one reward, one shape, finite
/// values, a usable mix, and at least two samples to standardise over (per prompt for the group
/// scale, in the batch for the batch scale); errors name the reward by its index.
template <Backend T>
tensor_t<T> combine_rewards(const std::vector<T>& rewards, const reward_mix& mix = {}, const options& opt = {}) {
  using ops = backend_traits<T>;
  constexpr std::string_view where = "combine_rewards";
  if (rewards.empty()) detail::fail(where, "no rewards: give at least one [prompts, samples_per_prompt] tensor");
  mix.validate(rewards.size());
  std::vector<tensor_t<T>> r;
  r.reserve(rewards.size());
  for (const T& x : rewards) r.push_back(detail::as_tensor<T>(x));
  if (opt.validate) {
    for (std::size_t k = 0; k < r.size(); ++k) {
      const std::string name = "rewards[" + std::to_string(k) + "]";
      detail::check_not_empty<T>(where, name, r[k]);
      detail::check_same_shape<T>(where, name, r[k], "rewards[0]", r[0]);
      detail::check_values<T>(where, name, r[k]);
    }
    const index rows = ops::rows(r[0]), cols = ops::cols(r[0]);
    if (mix.scale == reward_scale::group && cols < 2)
      detail::fail(where, "the group scale needs at least 2 samples per prompt; the rewards have ", cols);
    if (mix.scale == reward_scale::batch && rows * cols < 2)
      detail::fail(where, "the batch scale needs at least 2 samples; the rewards have ", rows * cols);
  }
  const auto weight = [&](std::size_t k) { return mix.weights.empty() ? 1.0 : mix.weights[k]; };
  tensor_t<T> sum = ops::affine(detail::scaled_reward<T>(r[0], mix.scale, mix.epsilon), weight(0), 0.0);
  for (std::size_t k = 1; k < r.size(); ++k)
    sum = ops::add(sum, ops::affine(detail::scaled_reward<T>(r[k], mix.scale, mix.epsilon), weight(k), 0.0));
  return sum;
}

}  // namespace brain::inline v0
