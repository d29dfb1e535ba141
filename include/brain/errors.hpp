#pragma once
// Error reporting: every bad input becomes std::invalid_argument naming the function,
// the argument, the position and the value (never a silent NaN).

#include <brain/config.hpp>

#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace brain::inline v0::detail {

inline std::string describe_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+inf" : "-inf";
  std::ostringstream os;
  os.precision(std::numeric_limits<double>::max_digits10);
  os << v;
  return os.str();
}

template <class... Parts>
[[noreturn]] void fail(std::string_view where, const Parts&... parts) {
  std::ostringstream os;
  os << "brain::" << where << ": ";
  (os << ... << parts);
  throw std::invalid_argument(os.str());
}

/// Why a group has no loss, in the words every path uses (the composed path, the CPU and CUDA
/// kernels and the deferred checks).
inline constexpr std::string_view no_target_support_text =
    "every target weight is zero (log_prior + log goodness is -inf for all samples); the posterior gives this group "
    "no support";
inline constexpr std::string_view weight_overflow_text =
    "the largest log importance weight overflowed (log goodness + log_prior - log_proposal)";

/// `name`[row, column] is `value`, which a finite argument (or one below +inf) may not be.
[[noreturn]] inline void fail_value(std::string_view where, std::string_view name, index row, index column,
                                    double value, bool allow_negative_infinity = false) {
  fail(where, name, "[", row, ", ", column, "] is ", describe_value(value),
       allow_negative_infinity ? " (must be a number below +inf)" : " (must be finite)");
}
/// Every target weight of `row` is zero: eq. 6's posterior gives the group no support.
[[noreturn]] inline void fail_no_target_support(std::string_view where, index row, index samples) {
  fail(where, "row ", row, ": every target weight is zero (log_prior + log goodness is -inf for all ", samples,
       " samples); the posterior gives this group no support");
}
/// The largest log importance weight of `row` (eq. 6) is not finite.
[[noreturn]] inline void fail_weight_overflow(std::string_view where, index row, double largest) {
  fail(where, "row ", row, ": the largest log importance weight is ", describe_value(largest),
       " (log goodness + log_prior - log_proposal overflowed)");
}
/// log beta = log_policy - log_proposal (eq. 11) overflowed at [row, column].
[[noreturn]] inline void fail_baseline_overflow(std::string_view where, index row, index column, double log_policy,
                                                double log_proposal, double log_beta) {
  fail(where, "row ", row, ", column ", column, ": log_policy - log_proposal = ", describe_value(log_policy), " - ",
       describe_value(log_proposal), " overflowed to ", describe_value(log_beta), " (baseline weight, eq. 11)");
}

}  // namespace brain::inline v0::detail
