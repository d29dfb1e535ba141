#pragma once
// Input checks shared by every public function. On by default (options::validate); each check
// names the function, the argument, the row and column, and the offending value.

#include <brain/backend.hpp>
#include <brain/errors.hpp>

#include <cmath>
#include <optional>
#include <string_view>
#include <utility>

namespace brain::inline v0::detail {

/// Throws unless x has at least one row and one column.
template <class T, class X>
void check_not_empty(std::string_view where, std::string_view name, const X& x) {
  if constexpr (requires { ops<T>::dims(x); }) {
    if (ops<T>::dims(x) != 2)
      fail(where, name, " has ", ops<T>::dims(x), " dimensions: expected 2, [prompts, samples_per_prompt]");
  }
  const index rows = ops<T>::rows(x), cols = ops<T>::cols(x);
  if (rows < 1) fail(where, name, " has no rows (", rows, "x", cols, "): need at least one prompt");
  if (cols < 1) fail(where, name, " has no columns (", rows, "x", cols, "): need at least one sample per prompt");
}

/// Throws unless `x` has the same shape as `reference`.
template <class T, class X, class R>
void check_same_shape(std::string_view where, std::string_view name, const X& x, std::string_view reference_name,
                      const R& reference) {
  if (ops<T>::rows(x) != ops<T>::rows(reference) || ops<T>::cols(x) != ops<T>::cols(reference))
    fail(where, "shape mismatch: ", name, " is ", ops<T>::rows(x), "x", ops<T>::cols(x), " but ", reference_name,
         " is ", ops<T>::rows(reference), "x", ops<T>::cols(reference));
}

enum class allow_negative_infinity : bool { no, yes };

/// Where the first NaN or +inf (and -inf unless allowed) of x is, if any.
template <class T, class X>
std::optional<std::pair<index, index>> find_invalid(const X& x, bool allow_negative_infinity) {
  if (all_valid<T>(x, allow_negative_infinity)) return std::nullopt;  // the fast path
  if constexpr (requires { ops<T>::first_invalid(x, allow_negative_infinity); }) {
    return ops<T>::first_invalid(x, allow_negative_infinity);
  } else {
    for (index i = 0; i < ops<T>::rows(x); ++i)
      for (index j = 0; j < ops<T>::cols(x); ++j) {
        const double v = ops<T>::value_at(x, i, j);
        if (std::isnan(v) || v == INFINITY || (!allow_negative_infinity && v == -INFINITY))
          return std::pair<index, index>{i, j};
      }
    return std::nullopt;
  }
}

/// Throws at the first NaN or +inf (and -inf unless allowed), naming its row and column.
/// `row_offset` turns rows of a tile back into rows of the caller's tensor.
template <class T, class X>
void check_values(std::string_view where, std::string_view name, const X& x,
                  allow_negative_infinity negative_infinity = allow_negative_infinity::no, index row_offset = 0) {
  const bool allow = negative_infinity == allow_negative_infinity::yes;
  if (const auto at = find_invalid<T>(x, allow))
    fail_value(where, name, at->first + row_offset, at->second, ops<T>::value_at(x, at->first, at->second), allow);
}

/// The largest element of a [rows, 1] column as a double: one host read whatever the backend.
template <class T>
double column_max(const tensor_t<T>& column) {
  return ops<T>::value_at(ops<T>::row_max(ops<T>::regroup(column, ops<T>::rows(column))), 0, 0);
}

}  // namespace brain::inline v0::detail
