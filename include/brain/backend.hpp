#pragma once
// The tensor-backend concept: the few operations BRAIn's algorithms need, so that the math is
// written once (weights.hpp, divergence.hpp, loss.hpp, ...) and runs on Eigen, a user's own
// matrix type, and later xtensor, LibTorch and CUDA.
//
// A backend is a specialisation of brain::backend_traits<T> for an input type T. Every tensor is
// two-dimensional, [prompts, samples_per_prompt] for the loss; a per-row result (one value per
// prompt) is a [rows, 1] tensor. tests/support/vector_backend.hpp is a complete backend over a
// std::vector<double> in about 70 lines.

#include <brain/config.hpp>

#include <concepts>
#include <limits>
#include <type_traits>
#include <utility>

namespace brain::inline v0 {

/// Specialise for your tensor type. Required members (a, b: tensors; x: an input T; s: double):
///
///   using tensor = ...;   // evaluated result type of every operation (often T itself)
///   using vector = ...;   // per-prompt results handed to the user (e.g. Eigen::VectorXd)
///   using scalar = ...;   // the batch loss handed to the user (double, or a 0-dim tensor)
///
///   rows(a), cols(a)               shape, also for x
///   full(a, rows, cols, s)         a new tensor filled with s, "like a" (dtype, device)
///   add(a, b), sub(a, b)           elementwise, also for inputs x
///   affine(a, s, t)                a * s + t elementwise, also for x
///   exp(a), log(a)                 elementwise; log(0) = -inf
///   clamp_min(a, s)                max(a, s) elementwise
///   row_max(a), row_sum(a)         [rows, 1]
///   row_weighted_sum(w, a)         [rows, 1]: sum_j w_ij * a_ij, where w_ij == 0 contributes 0
///                                  even if a_ij is infinite or NaN (0 log 0 = 0 in every KL)
///   argmax_one_hot(a)              1 at the first maximum of each row, 0 elsewhere
///   sub_per_row(a, v)              a_ij - v_i0, for v of shape [rows, 1]
///   regroup(a, k)                  row-major reshape [rows, n] -> [rows * n / k, k], also for x
///   value_at(a, i, j)              one element as double (validation messages, host utilities)
///   to_vector(v), mean(v)          turn a [rows, 1] result into the user's vector / scalar
///
/// Optional members, preferred when present (a backend's fused or autograd-aware version):
///   row_logsumexp(a), row_log_softmax(a), log_sigmoid(a), detach(a),
///   all_valid(a, allow_negative_infinity),
///   div_per_row(a, v) (a_ij / v_i0: softmax without a second exp),
///   dims(a) (number of dimensions, for a clear error on non-2-D input),
///   first_invalid(a, allow_negative_infinity) (optional<pair<index, index>>: where validation failed),
///   row_block(x, begin, count) with assign_rows(dst, begin, src) (cache tiling, see loss.hpp).
template <class T>
struct backend_traits;

template <class T>
using tensor_t = typename backend_traits<T>::tensor;
template <class T>
using vector_t = typename backend_traits<T>::vector;
template <class T>
using scalar_t = typename backend_traits<T>::scalar;

// The concept, built up in named steps so a compiler error says which part is missing.

template <class T>
concept BackendTypes = requires {
  typename tensor_t<T>;
  typename vector_t<T>;
  typename scalar_t<T>;
};

template <class T>
concept ShapedBackend = BackendTypes<T> && requires(const T& x, const tensor_t<T>& a) {
  { backend_traits<T>::rows(a) } -> std::convertible_to<index>;
  { backend_traits<T>::cols(a) } -> std::convertible_to<index>;
  { backend_traits<T>::rows(x) } -> std::convertible_to<index>;
  { backend_traits<T>::cols(x) } -> std::convertible_to<index>;
  { backend_traits<T>::full(a, index{}, index{}, double{}) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::full(x, index{}, index{}, double{}) } -> std::same_as<tensor_t<T>>;
};

template <class T>
concept ElementwiseBackend = requires(const T& x, const tensor_t<T>& a, double s) {
  { backend_traits<T>::add(a, a) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::add(a, x) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::sub(a, a) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::sub(x, x) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::sub(a, x) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::affine(a, s, s) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::affine(x, s, s) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::exp(a) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::log(a) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::clamp_min(a, s) } -> std::same_as<tensor_t<T>>;
};

template <class T>
concept RowwiseBackend = requires(const tensor_t<T>& a) {
  { backend_traits<T>::row_max(a) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::row_sum(a) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::row_weighted_sum(a, a) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::argmax_one_hot(a) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::sub_per_row(a, a) } -> std::same_as<tensor_t<T>>;
};

template <class T>
concept ReshapableBackend = requires(const T& x, const tensor_t<T>& a) {
  { backend_traits<T>::regroup(a, index{}) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::regroup(x, index{}) } -> std::same_as<tensor_t<T>>;
};

template <class T>
concept ReadableBackend = requires(const T& x, const tensor_t<T>& a) {
  { backend_traits<T>::value_at(a, index{}, index{}) } -> std::convertible_to<double>;
  { backend_traits<T>::value_at(x, index{}, index{}) } -> std::convertible_to<double>;
  { backend_traits<T>::to_vector(a) } -> std::same_as<vector_t<T>>;
  { backend_traits<T>::mean(a) } -> std::same_as<scalar_t<T>>;
};

/// A type T the algorithms accept: backend_traits<T> provides every required operation.
template <class T>
concept Backend = ShapedBackend<T> && ElementwiseBackend<T> && RowwiseBackend<T> &&
                  ReshapableBackend<T> && ReadableBackend<T>;

namespace detail {

// The optional operations: the backend's own version when it has one, else a composition of the
// required ones. Each fallback is what the backend would compute, only slower.

template <class T>
using ops = backend_traits<T>;

/// Stops autograd from flowing through `a` (identity for backends without autograd).
template <class T, class X>
decltype(auto) detach(const X& a) {
  if constexpr (requires { ops<T>::detach(a); })
    return ops<T>::detach(a);
  else
    return (a);
}

/// log sum_j exp(a_ij) per row, [rows, 1]. A row that is all -inf gives -inf.
template <class T, class X>
tensor_t<T> row_logsumexp(const X& a) {
  if constexpr (requires { ops<T>::row_logsumexp(a); }) {
    return ops<T>::row_logsumexp(a);
  } else {
    // Shift by the row maximum; clamp it so an all -inf row computes -inf, not (-inf) - (-inf).
    // The result does not depend on the shift, so no gradient needs to flow through it.
    const auto shift = ops<T>::clamp_min(detach<T>(ops<T>::row_max(a)), std::numeric_limits<double>::lowest());
    return ops<T>::add(shift, ops<T>::log(ops<T>::row_sum(ops<T>::exp(ops<T>::sub_per_row(a, shift)))));
  }
}

/// a_ij - log sum_k exp(a_ik): log-domain normalisation of each row.
template <class T, class X>
tensor_t<T> row_log_softmax(const X& a) {
  if constexpr (requires { ops<T>::row_log_softmax(a); })
    return ops<T>::row_log_softmax(a);
  else
    return ops<T>::sub_per_row(a, row_logsumexp<T>(a));
}

/// A row-wise softmax in both domains: log_p = a - logsumexp(a) and p = exp(log_p).
template <class T>
struct row_softmax_result {
  tensor_t<T> log_p, p;
};

/// Softmax of each row: from the backend's fused log-softmax when it has one; else computing exp
/// once per element when the backend can divide by a per-row value (p = exp(a - max) / sum); else
/// p = exp(log_p). An all -inf row gives NaN: callers validate that every row has a finite entry.
template <class T, class X>
row_softmax_result<T> row_softmax(const X& a) {
  if constexpr (requires { ops<T>::row_log_softmax(a); }) {
    tensor_t<T> log_p = ops<T>::row_log_softmax(a);
    tensor_t<T> p = ops<T>::exp(log_p);
    return {std::move(log_p), std::move(p)};
  } else if constexpr (requires(const tensor_t<T>& t) { ops<T>::div_per_row(t, t); }) {
    const tensor_t<T> shift = detach<T>(ops<T>::row_max(a));  // the result does not depend on it
    const tensor_t<T> shifted = ops<T>::sub_per_row(a, shift);
    tensor_t<T> unnormalised = ops<T>::exp(shifted);
    const tensor_t<T> total = ops<T>::row_sum(unnormalised);
    return {ops<T>::sub_per_row(shifted, ops<T>::log(total)), ops<T>::div_per_row(unnormalised, total)};
  } else {
    tensor_t<T> log_p = row_log_softmax<T>(a);
    tensor_t<T> p = ops<T>::exp(log_p);
    return {std::move(log_p), std::move(p)};
  }
}

/// log sigmoid(a) = -softplus(-a), stable for |a| up to the largest finite value.
template <class T, class X>
tensor_t<T> log_sigmoid(const X& a) {
  if constexpr (requires { ops<T>::log_sigmoid(a); }) {
    return ops<T>::log_sigmoid(a);
  } else {
    // log sigmoid(a) = min(a, 0) - log(1 + exp(-|a|)), with min(a, 0) = -max(-a, 0) and
    // |a| = 2 max(-a, 0) + a.
    const auto neg_part = ops<T>::clamp_min(ops<T>::affine(a, -1.0, 0.0), 0.0);
    const auto abs_a = ops<T>::add(ops<T>::affine(neg_part, 2.0, 0.0), a);
    const auto log1p_term = ops<T>::log(ops<T>::affine(ops<T>::exp(ops<T>::affine(abs_a, -1.0, 0.0)), 1.0, 1.0));
    return ops<T>::sub(ops<T>::affine(neg_part, -1.0, 0.0), log1p_term);
  }
}

/// True when no element is NaN or +inf, and no element is -inf unless allowed. The fallback reads
/// every element; backends provide a vectorised check.
template <class T, class X>
bool all_valid(const X& a, bool allow_negative_infinity) {
  if constexpr (requires { ops<T>::all_valid(a, allow_negative_infinity); }) {
    return ops<T>::all_valid(a, allow_negative_infinity);
  } else {
    for (index i = 0; i < ops<T>::rows(a); ++i)
      for (index j = 0; j < ops<T>::cols(a); ++j) {
        const double v = ops<T>::value_at(a, i, j);
        if (!(v < std::numeric_limits<double>::infinity())) return false;  // NaN or +inf
        if (!allow_negative_infinity && v == -std::numeric_limits<double>::infinity()) return false;
      }
    return true;
  }
}

}  // namespace detail
}  // namespace brain::inline v0
