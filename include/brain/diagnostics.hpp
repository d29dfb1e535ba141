#pragma once
// Per-group diagnostics: how many samples effectively carry the target and baseline weights.

#include <brain/backend.hpp>
#include <brain/errors.hpp>
#include <brain/options.hpp>
#include <brain/validate.hpp>

#include <string_view>

namespace brain::inline v0 {

/// Kish's effective sample size per row, (sum_i w_i)^2 / sum_i w_i^2: n for uniform weights, 1 when
/// one sample carries all the weight. Apply it to target_weights (how many samples the SNIS target
/// rests on; near 1 means the proposal is far from the posterior) and baseline_weights.
template <Backend T>
vector_t<T> effective_sample_size(const T& input, const options& opt = {}) {
  using ops = backend_traits<T>;
  constexpr std::string_view where = "effective_sample_size";
  const auto& weights = detail::as_tensor<T>(input);
  if (opt.validate) {
    detail::check_not_empty<T>(where, "weights", weights);
    detail::check_values<T>(where, "weights", weights);
    // By reductions first (one host read each); the scans only run to name the culprit.
    const tensor_t<T> minus_smallest = ops::row_max(ops::affine(weights, -1.0, 0.0));
    if (detail::column_max<T>(minus_smallest) > 0.0) {
      for (index i = 0; i < ops::rows(weights); ++i)
        for (index j = 0; j < ops::cols(weights); ++j)
          if (const double w = ops::value_at(weights, i, j); w < 0.0)
            detail::fail(where, "weights[", i, ", ", j, "] is ", detail::describe_value(w), " (must be >= 0)");
    }
    const tensor_t<T> largest = ops::row_max(weights);
    if (detail::column_max<T>(ops::affine(largest, -1.0, 0.0)) >= 0.0) {
      for (index i = 0; i < ops::rows(largest); ++i)
        if (ops::value_at(largest, i, 0) <= 0.0) detail::fail(where, "weights row ", i, " is all zero");
    }
  }
  // In the log domain, so tiny or huge unnormalised weights neither underflow nor overflow.
  const tensor_t<T> log_w = ops::log(weights);
  const tensor_t<T> log_sum = detail::row_logsumexp<T>(log_w);
  const tensor_t<T> log_sum_sq = detail::row_logsumexp<T>(ops::affine(log_w, 2.0, 0.0));
  return ops::to_vector(ops::exp(ops::sub(ops::affine(log_sum, 2.0, 0.0), log_sum_sq)));
}

}  // namespace brain::inline v0
