#pragma once
// The tensor-backend concept: the few operations BRAIn's algorithms need, so that the math is
// written once (weights.hpp, divergence.hpp, loss.hpp, ...) and runs on Eigen, xtensor, LibTorch
// and a user's own matrix type.
//
// A backend is a specialisation of brain::backend_traits<T> for an input type T. Every tensor is
// two-dimensional, [prompts, samples_per_prompt] for the loss; a per-row result (one value per
// prompt) is a [rows, 1] tensor. Every public function converts its inputs to the result type
// tensor_t<T> once, at entry, and computes on tensors only: the operations below are asked of
// tensors, never of inputs. tests/support/vector_backend.hpp is a complete backend over a
// std::vector<double> in 80 lines; tests/support/view_backend.hpp adds a view input type.

#include <brain/config.hpp>

#include <concepts>
#include <limits>
#include <type_traits>
#include <utility>

namespace brain::inline v0 {

namespace detail {

// Types of the libraries brain has backends for, recognised by their members, so that using one
// whose backend header was not included fails with a static_assert naming that header (instead
// of an anonymous constraint failure).
template <class T>
concept eigen_type = requires {
  typename T::Scalar;
  typename T::StorageIndex;
  typename T::PlainObject;
};
template <class T>
concept xtensor_type = requires {
  typename T::shape_type;
  typename T::expression_tag;
};
template <class T>
concept libtorch_type = requires(const T& t) {
  t.scalar_type();
  t.sizes();
  t.options();
};

}  // namespace detail

/// Specialise for your tensor type. Required members (a, b: tensors of type `tensor`; s: double):
///
///   using tensor = ...;   // evaluated result type of every operation (often T itself)
///   using vector = ...;   // per-prompt results handed to the user (e.g. Eigen::VectorXd)
///   using scalar = ...;   // the batch loss handed to the user (double, or a 0-dim tensor)
///
///   rows(a), cols(a)               shape
///   full(a, rows, cols, s)         a new tensor filled with s, "like a" (dtype, device)
///   add(a, b), sub(a, b), mul(a, b) elementwise
///   affine(a, s, t)                a * s + t elementwise
///   exp(a), log(a)                 elementwise; log(0) = -inf, exp(-inf) = 0
///   clamp_min(a, s)                max(a, s) elementwise
///   row_max(a), row_sum(a)         [rows, 1]
///   row_weighted_sum(w, a)         [rows, 1]: sum_j w_ij * a_ij, where w_ij == 0 contributes 0
///                                  even if a_ij is infinite or NaN (0 log 0 = 0 in every KL)
///   argmax_one_hot(a)              1 at the first maximum of each row, 0 elsewhere
///   sub_per_row(a, v)              a_ij - v_i0, for v of shape [rows, 1]
///   regroup(a, k)                  row-major reshape [rows, n] -> [rows * n / k, k]
///   value_at(a, i, j)              one element as double (validation messages, host utilities)
///   to_vector(v), mean(v)          turn a [rows, 1] result into the user's vector / scalar
///
/// An input type T other than `tensor` converts with `static tensor to_tensor(const T&)`, or
/// else by tensor's constructor (Eigen's Map -> Matrix). `tensor` must be a backend itself.
///
/// Optional members, preferred when present (a backend's fused or autograd-aware version):
///   row_logsumexp(a), row_log_softmax(a), log_sigmoid(a), detach(a),
///   all_valid(a, allow_negative_infinity),
///   div_per_row(a, v) (a_ij / v_i0: softmax without a second exp),
///   is_positive(a) (1 where a_ij > 0, else 0: the clipped estimators' masks),
///   zero_unless(keep, x) (x where keep > 0, else 0, NaN included: samples::mask's dropped positions),
///   dims(a) (number of dimensions, for a clear error on non-2-D input),
///   first_invalid(a, allow_negative_infinity) (optional<pair<index, index>>: where validation failed),
///   fused_group_loss(out, samples, goodness, options) -> fused_result: the whole BRAIn loss of
///     every group in one pass (the Eigen and LibTorch backends run kernels::cpu_group_loss or the
///     CUDA kernel); brain_loss prefers it under the softmax target (see loss.hpp).
///
/// The primary template is no backend. For a type of Eigen, xtensor or LibTorch it fails to
/// compile with a message naming the backend header to include (or CMake target to link).
template <class T>
struct backend_traits {
  static_assert(!detail::eigen_type<T>,
                "brain: no backend for this Eigen type. Include <brain/backends/eigen.hpp>, or link the CMake "
                "target brain::eigen (it defines BRAIN_WITH_EIGEN, so <brain/loss.hpp> includes the backend). The "
                "backend takes float and double matrices and arrays, and Maps, Refs and Blocks of them: evaluate "
                "an expression first (.eval()).");
  static_assert(!detail::xtensor_type<T>,
                "brain: no backend for this xtensor type. Include <brain/backends/xtensor.hpp>, or link the CMake "
                "target brain::xtensor (it defines BRAIN_WITH_XTENSOR). The backend takes xt::xtensor<float or "
                "double, 2>.");
  static_assert(!detail::libtorch_type<T>,
                "brain: no backend for at::Tensor. Include <brain/backends/torch.hpp>, or link the CMake target "
                "brain::torch (it defines BRAIN_WITH_TORCH).");
};

/// What a backend's fused group loss did: filled every result; or filled them and found a bad
/// group, which brain_loss then names (so errors read the same whichever path ran); or declined
/// (a dtype, device or goodness model it has no kernel for), and brain_loss composes the loss.
enum class fused_result { done, bad_input, declined };

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

/// T enters the algorithms as tensor_t<T>: it is that type, or converts to it, and the tensor
/// type is its own backend (results can be passed back in, e.g. pairwise(s) then brain_loss).
template <class T>
concept ConvertibleInput = BackendTypes<T> && std::same_as<tensor_t<tensor_t<T>>, tensor_t<T>> &&
                           (std::same_as<T, tensor_t<T>> || requires(const T& x) {
                             { backend_traits<T>::to_tensor(x) } -> std::same_as<tensor_t<T>>;
                           } || std::constructible_from<tensor_t<T>, const T&>);

template <class T>
concept ShapedBackend = BackendTypes<T> && requires(const tensor_t<T>& a) {
  { backend_traits<T>::rows(a) } -> std::convertible_to<index>;
  { backend_traits<T>::cols(a) } -> std::convertible_to<index>;
  { backend_traits<T>::full(a, index{}, index{}, double{}) } -> std::same_as<tensor_t<T>>;
};

template <class T>
concept ElementwiseBackend = requires(const tensor_t<T>& a, double s) {
  { backend_traits<T>::add(a, a) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::sub(a, a) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::mul(a, a) } -> std::same_as<tensor_t<T>>;
  { backend_traits<T>::affine(a, s, s) } -> std::same_as<tensor_t<T>>;
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
concept ReshapableBackend = requires(const tensor_t<T>& a) {
  { backend_traits<T>::regroup(a, index{}) } -> std::same_as<tensor_t<T>>;
};

template <class T>
concept ReadableBackend = requires(const tensor_t<T>& a) {
  { backend_traits<T>::value_at(a, index{}, index{}) } -> std::convertible_to<double>;
  { backend_traits<T>::to_vector(a) } -> std::same_as<vector_t<T>>;
  { backend_traits<T>::mean(a) } -> std::same_as<scalar_t<T>>;
};

/// A type T the algorithms accept: backend_traits<T> provides every required operation.
template <class T>
concept Backend = ConvertibleInput<T> && ShapedBackend<T> && ElementwiseBackend<T> && RowwiseBackend<T> &&
                  ReshapableBackend<T> && ReadableBackend<T>;

namespace detail {

// The optional operations: the backend's own version when it has one, else a composition of the
// required ones. Each fallback is what the backend would compute, only slower. T names the
// backend; operands are its tensors (or, inside loss.hpp's tiles, its row blocks).

template <class T>
using ops = backend_traits<T>;

/// The input converted to the result type, once, at a public function's entry: a reference to x
/// itself when T is the tensor type, else an evaluated copy.
template <class T>
decltype(auto) as_tensor(const T& x) {
  if constexpr (std::same_as<T, tensor_t<T>>)
    return (x);
  else if constexpr (requires { ops<T>::to_tensor(x); })
    return ops<T>::to_tensor(x);
  else
    return tensor_t<T>(x);
}

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
    const tensor_t<T> shift = ops<T>::clamp_min(detach<T>(ops<T>::row_max(a)), std::numeric_limits<double>::lowest());
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
    const tensor_t<T> neg_part = ops<T>::clamp_min(ops<T>::affine(a, -1.0, 0.0), 0.0);
    const tensor_t<T> abs_a = ops<T>::add(ops<T>::affine(neg_part, 2.0, 0.0), a);
    const tensor_t<T> log1p_term = ops<T>::log(ops<T>::affine(ops<T>::exp(ops<T>::affine(abs_a, -1.0, 0.0)), 1.0, 1.0));
    return ops<T>::sub(ops<T>::affine(neg_part, -1.0, 0.0), log1p_term);
  }
}

/// [rows, cols] tensor whose row i repeats v_i0 (v is [rows, 1]): exact, from sub_per_row.
template <class T, class X, class V>
tensor_t<T> broadcast_column(const X& like, const V& v) {
  return ops<T>::affine(ops<T>::sub_per_row(ops<T>::full(like, ops<T>::rows(like), ops<T>::cols(like), 0.0), v), -1.0,
                        0.0);
}

/// a_ij / v_i0 for v > 0; the fallback multiplies by exp(-log v) (a relative error of a few ulp).
template <class T, class X, class V>
tensor_t<T> div_per_row(const X& a, const V& v) {
  if constexpr (requires { ops<T>::div_per_row(a, v); })
    return ops<T>::div_per_row(a, v);
  else
    return ops<T>::mul(a, broadcast_column<T>(a, ops<T>::exp(ops<T>::affine(ops<T>::log(v), -1.0, 0.0))));
}

/// 1 where a_ij > 0, 0 elsewhere; never differentiated. The fallback is exact without a
/// comparison: log(max(a, 0)) is -inf exactly where a <= 0 and at least -745 elsewhere (the
/// log of the smallest denormal double; -104 in float), so after clamping at -800, adding 800
/// and scaling by -1e38, exp gives 1 for a <= 0 and 0 (underflow, or exp(-inf)) for a > 0.
template <class T, class X>
tensor_t<T> is_positive(const X& a) {
  if constexpr (requires { ops<T>::is_positive(a); }) {
    return ops<T>::is_positive(a);
  } else {
    const tensor_t<T> log_positive_part = ops<T>::log(ops<T>::clamp_min(detach<T>(a), 0.0));
    const tensor_t<T> zero_or_large = ops<T>::affine(ops<T>::clamp_min(log_positive_part, -800.0), 1.0, 800.0);
    return ops<T>::affine(ops<T>::exp(ops<T>::affine(zero_or_large, -1e38, 0.0)), -1.0, 1.0);
  }
}

/// A backend tensor with the arithmetic operators that formula.hpp's functions use, so that each
/// formula written for one value applies to whole tensors: +, -, * map to add, sub, mul, and * by a
/// double to affine. It owns its tensor (a result) or refers to one (value_of, an operand that
/// outlives the expression). weighted() keeps its weight and value apart until a row sum, which
/// is the backend's row_weighted_sum (0 where the weight is 0: the one elementwise choice there is).
template <class T, bool Owned>
struct tensor_value {
  std::conditional_t<Owned, tensor_t<T>, const tensor_t<T>&> t;
};
template <class T>
using tensor_result = tensor_value<T, true>;
template <class T, bool A, bool B>
tensor_result<T> operator+(const tensor_value<T, A>& a, const tensor_value<T, B>& b) {
  return {ops<T>::add(a.t, b.t)};
}
template <class T, bool A, bool B>
tensor_result<T> operator-(const tensor_value<T, A>& a, const tensor_value<T, B>& b) {
  return {ops<T>::sub(a.t, b.t)};
}
template <class T, bool A, bool B>
tensor_result<T> operator*(const tensor_value<T, A>& a, const tensor_value<T, B>& b) {
  return {ops<T>::mul(a.t, b.t)};
}
template <class T, bool A>
tensor_result<T> operator*(const tensor_value<T, A>& a, double s) {
  return {ops<T>::affine(a.t, s, 0.0)};
}
template <class T>
struct weighted_tensor {
  tensor_t<T> weight, value;
};
template <class T, bool A, bool B>
weighted_tensor<T> weighted(const tensor_value<T, A>& w, const tensor_value<T, B>& x) {
  return {w.t, x.t};
}
/// sum_j w_ij x_ij per row, [rows, 1], 0 where w_ij = 0.
template <class T>
tensor_t<T> row_sum(const weighted_tensor<T>& w) {
  return ops<T>::row_weighted_sum(w.weight, w.value);
}
/// A tensor as an operand of formula.hpp (by reference: it must outlive the expression).
template <class T>
tensor_value<T, false> value_of(const tensor_t<T>& x) {
  return {x};
}

/// The sum of all elements as a [1, 1] tensor.
template <class T, class X>
tensor_t<T> total(const X& a) {
  const tensor_t<T> per_row = ops<T>::row_sum(a);
  return ops<T>::row_sum(ops<T>::regroup(per_row, ops<T>::rows(per_row)));
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
