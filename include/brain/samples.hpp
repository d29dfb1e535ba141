#pragma once
// The inputs every algorithm takes: one row per prompt, one column per sample of its group.

#include <brain/backend.hpp>
#include <brain/options.hpp>
#include <brain/validate.hpp>

#include <string_view>
#include <type_traits>

namespace brain::inline v0 {

/// n samples y_1..y_n per prompt x, drawn from the proposal q (paper §1). Every member is
/// [prompts, samples_per_prompt]; row p is prompt p's group. Log-probabilities are of whole
/// sequences (sums of per-token log-probs over the response tokens). An Eigen, xtensor or
/// LibTorch type whose backend header is missing fails with a message naming it (backend.hpp).
template <Backend T>
struct samples {
  T log_policy;    ///< log q_theta(y|x): the model being trained; the only input gradients flow to
  T log_proposal;  ///< log q(y|x): the frozen model the samples were drawn from (eq. 4)
  T log_prior;     ///< log p(y|x): the SFT model; -inf is legal (that sample gets zero target weight)
  T reward;        ///< r(x, y) from the reward model, turned into log-goodness by a goodness model
  // The optional members are of the backend's result type (an input type such as Eigen::Map need
  // not have an empty value).
  /// Optional (empty: the samples were drawn from log_proposal's model): log mu(y|x), the log-prob
  /// the inference engine that drew the samples reported (vLLM, SGLang). The estimators correct
  /// for mu != q as options::sampler says; rollout_report() measures the mismatch (rollouts.hpp).
  tensor_t<T> log_sampler = {};
  /// Optional (empty: every sample kept): 1 keeps a sample, 0 drops it (its reward is missing, a
  /// filter removed it). Dropped positions are never read, NaN included, on backends with
  /// zero_unless (Eigen, xtensor, LibTorch); groups left with too few samples are skipped.
  tensor_t<T> mask = {};
};

namespace detail {

/// True when the optional member x (log_sampler, mask) was given: not empty.
template <class T, class X>
bool given(const X& x) {
  return ops<T>::rows(x) > 0 && ops<T>::cols(x) > 0;
}

/// The samples as tensors: `s` itself when T is the tensor type, else a converted copy.
template <class T>
decltype(auto) as_tensors(const samples<T>& s) {
  if constexpr (std::same_as<T, tensor_t<T>>)
    return (s);
  else
    return samples<tensor_t<T>>{.log_policy = as_tensor<T>(s.log_policy),
                                .log_proposal = as_tensor<T>(s.log_proposal),
                                .log_prior = as_tensor<T>(s.log_prior),
                                .reward = as_tensor<T>(s.reward),
                                .log_sampler = s.log_sampler,
                                .mask = s.mask};
}

/// Shapes of a samples<T>: all four [prompts, n] with prompts >= 1 and n >= 1.
template <class T, class S>
void check_sample_shapes(std::string_view where, const S& s) {
  check_not_empty<T>(where, "log_policy", s.log_policy);
  check_same_shape<T>(where, "log_proposal", s.log_proposal, "log_policy", s.log_policy);
  check_same_shape<T>(where, "log_prior", s.log_prior, "log_policy", s.log_policy);
  check_same_shape<T>(where, "reward", s.reward, "log_policy", s.log_policy);
}

/// Values of a samples<T>: log_policy, log_proposal and reward finite; log_prior may be -inf.
template <class T, class S>
void check_sample_values(std::string_view where, const S& s, index row_offset = 0,
                         allow_negative_infinity prior_negative_infinity = allow_negative_infinity::yes) {
  check_values<T>(where, "log_policy", s.log_policy, allow_negative_infinity::no, row_offset);
  check_values<T>(where, "log_proposal", s.log_proposal, allow_negative_infinity::no, row_offset);
  check_values<T>(where, "log_prior", s.log_prior, prior_negative_infinity, row_offset);
  check_values<T>(where, "reward", s.reward, allow_negative_infinity::no, row_offset);
}

template <class T, class S>
void check_samples(std::string_view where, const S& s,
                   allow_negative_infinity prior_negative_infinity = allow_negative_infinity::yes) {
  check_sample_shapes<T>(where, s);
  check_sample_values<T>(where, s, 0, prior_negative_infinity);
}

}  // namespace detail
}  // namespace brain::inline v0
