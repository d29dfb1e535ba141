#pragma once
// The inputs every algorithm takes: one row per prompt, one column per sample of its group.

#include <brain/backend.hpp>
#include <brain/options.hpp>
#include <brain/validate.hpp>

#include <string_view>

namespace brain::inline v0 {

/// n samples y_1..y_n per prompt x, drawn from the proposal q (paper §1). Every member is
/// [prompts, samples_per_prompt]; row p is prompt p's group. Log-probabilities are of whole
/// sequences (sums of per-token log-probs over the response tokens).
template <Backend T>
struct samples {
  T log_policy;    ///< log q_theta(y|x): the model being trained; the only input gradients flow to
  T log_proposal;  ///< log q(y|x): the frozen model the samples were drawn from (eq. 4)
  T log_prior;     ///< log p(y|x): the SFT model; -inf is legal (that sample gets zero target weight)
  T reward;        ///< r(x, y) from the reward model, turned into log-goodness by a goodness model
};

namespace detail {

/// Shapes of a samples<T>: all four [prompts, n] with prompts >= 1 and n >= 1.
template <class T>
void check_sample_shapes(std::string_view where, const samples<T>& s) {
  check_not_empty<T>(where, "log_policy", s.log_policy);
  check_same_shape<T>(where, "log_proposal", s.log_proposal, "log_policy", s.log_policy);
  check_same_shape<T>(where, "log_prior", s.log_prior, "log_policy", s.log_policy);
  check_same_shape<T>(where, "reward", s.reward, "log_policy", s.log_policy);
}

/// Values of a samples<T>: log_policy, log_proposal and reward finite; log_prior may be -inf.
template <class T>
void check_sample_values(std::string_view where, const samples<T>& s, index row_offset = 0) {
  check_values<T>(where, "log_policy", s.log_policy, allow_negative_infinity::no, row_offset);
  check_values<T>(where, "log_proposal", s.log_proposal, allow_negative_infinity::no, row_offset);
  check_values<T>(where, "log_prior", s.log_prior, allow_negative_infinity::yes, row_offset);
  check_values<T>(where, "reward", s.reward, allow_negative_infinity::no, row_offset);
}

template <class T>
void check_samples(std::string_view where, const samples<T>& s) {
  check_sample_shapes(where, s);
  check_sample_values(where, s);
}

}  // namespace detail
}  // namespace brain::inline v0
