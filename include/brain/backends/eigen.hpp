#pragma once
// The Eigen backend, brain's reference: dense Eigen matrices and arrays (and Maps, Refs and
// direct-access Blocks of them) of float or double. Every operation returns an evaluated object
// of the input's plain type (MatrixXd stays MatrixXd, ArrayXXf stays ArrayXXf), never a lazy
// expression that could outlive its operands.

#include <brain/backend.hpp>

#include <Eigen/Core>

#include <cmath>
#include <concepts>
#include <limits>
#include <type_traits>

namespace brain::inline v0 {
namespace detail {

// Plain matrices and arrays, and direct-access views of them (Map, Ref, Block); detected by
// overload resolution so that non-Eigen types never instantiate Eigen's templates.
template <class D>
void as_eigen_dense(const Eigen::PlainObjectBase<D>&);
template <class D>
void as_eigen_dense(const Eigen::MapBase<D, Eigen::ReadOnlyAccessors>&);
template <class X>
concept eigen_dense = requires(const X& x) { detail::as_eigen_dense(x); };

}  // namespace detail

template <class X>
  requires detail::eigen_dense<X> && std::floating_point<typename X::Scalar>
struct backend_traits<X> {
  using value_type = typename X::Scalar;
  using tensor = typename X::PlainObject;
  using vector = Eigen::Matrix<value_type, Eigen::Dynamic, 1>;
  using scalar = value_type;

 private:
  // Assigns an array expression to the plain type, whether it is a Matrix or an Array.
  template <class Expr>
  static tensor make(const Expr& e) {
    if constexpr (std::derived_from<tensor, Eigen::ArrayBase<tensor>>)
      return tensor(e);
    else
      return tensor(e.matrix());
  }
  static value_type cast(double v) { return static_cast<value_type>(v); }

 public:
  template <class A>
  static index rows(const A& a) { return a.rows(); }
  template <class A>
  static index cols(const A& a) { return a.cols(); }

  template <class A>
  static tensor full(const A&, index rows, index cols, double value) {
    return tensor::Constant(rows, cols, cast(value));
  }

  template <class A, class B>
  static tensor add(const A& a, const B& b) { return make(a.array() + b.array()); }
  template <class A, class B>
  static tensor sub(const A& a, const B& b) { return make(a.array() - b.array()); }
  template <class A>
  static tensor affine(const A& a, double scale, double shift) {
    return make(a.array() * cast(scale) + cast(shift));
  }
  // Eigen's vectorised exp clamps its argument, so exp(-inf) would be 5.6e-309 (double) instead of
  // 0, and a zero weight would stop being zero (0 * -inf in a KL). Below log(denorm_min) the true
  // result rounds to 0; return that, as std::exp does.
  template <class A>
  static tensor exp(const A& a) {
    static const value_type underflow = std::log(std::numeric_limits<value_type>::denorm_min());
    return make((a.array() < underflow).select(value_type(0), a.array().exp()));
  }
  template <class A>
  static tensor log(const A& a) { return make(a.array().log()); }
  template <class A>
  static tensor clamp_min(const A& a, double lo) { return make(a.array().max(cast(lo))); }

  template <class A>
  static tensor row_max(const A& a) { return make(a.array().rowwise().maxCoeff()); }
  template <class A>
  static tensor row_sum(const A& a) { return make(a.array().rowwise().sum()); }
  template <class W, class A>
  static tensor row_weighted_sum(const W& w, const A& a) {
    return make((w.array() == value_type(0)).select(value_type(0), w.array() * a.array()).rowwise().sum());
  }
  template <class A>
  static tensor argmax_one_hot(const A& a) {
    tensor out = tensor::Zero(a.rows(), a.cols());
    for (index i = 0; i < a.rows(); ++i) {
      // A plain scan: the first maximum wins, whatever Eigen's visitor order.
      index best = 0;
      for (index j = 1; j < a.cols(); ++j)
        if (a(i, j) > a(i, best)) best = j;
      out(i, best) = value_type(1);
    }
    return out;
  }
  template <class A, class V>
  static tensor sub_per_row(const A& a, const V& v) {
    return make(a.array().colwise() - v.array().col(0));
  }
  template <class A>
  static tensor regroup(const A& a, index k) {
    return make(a.array().template reshaped<Eigen::RowMajor>(a.size() / k, k));
  }

  template <class A>
  static double value_at(const A& a, index i, index j) { return static_cast<double>(a(i, j)); }
  template <class V>
  static vector to_vector(const V& v) { return vector(v.array().col(0).matrix()); }
  template <class V>
  static scalar mean(const V& v) { return v.array().mean(); }

  // Optional: vectorised validity check.
  template <class A>
  static bool all_valid(const A& a, bool allow_negative_infinity) {
    if (!allow_negative_infinity) return a.allFinite();
    return (a.array() < std::numeric_limits<value_type>::infinity()).all();  // false for NaN and +inf
  }
};

}  // namespace brain::inline v0
