#pragma once
// The Eigen backend, brain's reference: dense Eigen matrices and arrays (and Maps, Refs and
// direct-access Blocks of them) of float or double. Every operation returns an evaluated object
// of the input's plain type (MatrixXd stays MatrixXd, ArrayXXf stays ArrayXXf), never a lazy
// expression that could outlive its operands.

#include <brain/backend.hpp>
#include <brain/kernels/group_loss.hpp>
#include <brain/options.hpp>

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

// Two element functors with packet (SIMD) versions: Eigen 3.4's select() has none, and these sit
// on the hot path of every loss.

/// exp(x), exactly 0 below log(denorm_min). Eigen's vectorised exp clamps its argument, so it
/// would return 5.6e-309 (double) for exp(-inf), and a zero weight would stop being zero.
template <class S>
struct exp_flush_op {
  static S underflow() { return std::log(std::numeric_limits<S>::denorm_min()); }
  S operator()(const S& x) const { return x < underflow() ? S(0) : std::exp(x); }
  template <class Packet>
  Packet packetOp(const Packet& x) const {
    namespace ei = Eigen::internal;
    return ei::pandnot(ei::pexp(x), ei::pcmp_lt(x, ei::pset1<Packet>(underflow())));
  }
};

/// w * a, but exactly 0 where w == 0 (even when a is infinite or NaN): 0 log 0 = 0 in a KL.
template <class S>
struct weighted_term_op {
  S operator()(const S& w, const S& a) const { return w == S(0) ? S(0) : w * a; }
  template <class Packet>
  Packet packetOp(const Packet& w, const Packet& a) const {
    namespace ei = Eigen::internal;
    return ei::pandnot(ei::pmul(w, a), ei::pcmp_eq(w, ei::pzero(w)));
  }
};

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
  static index rows(const A& a) {
    return a.rows();
  }
  template <class A>
  static index cols(const A& a) {
    return a.cols();
  }

  template <class A>
  static tensor full(const A&, index rows, index cols, double value) {
    return tensor::Constant(rows, cols, cast(value));
  }

  template <class A, class B>
  static tensor add(const A& a, const B& b) {
    return make(a.array() + b.array());
  }
  template <class A, class B>
  static tensor sub(const A& a, const B& b) {
    return make(a.array() - b.array());
  }
  template <class A, class B>
  static tensor mul(const A& a, const B& b) {
    return make(a.array() * b.array());
  }
  template <class A>
  static tensor affine(const A& a, double scale, double shift) {
    return make(a.array() * cast(scale) + cast(shift));
  }
  template <class A>
  static tensor exp(const A& a) {
    return make(a.array().unaryExpr(detail::exp_flush_op<value_type>{}));
  }
  template <class A>
  static tensor log(const A& a) {
    return make(a.array().log());
  }
  template <class A>
  static tensor clamp_min(const A& a, double lo) {
    return make(a.array().max(cast(lo)));
  }

  template <class A>
  static tensor row_max(const A& a) {
    return make(a.array().rowwise().maxCoeff());
  }
  template <class A>
  static tensor row_sum(const A& a) {
    return make(a.array().rowwise().sum());
  }
  template <class W, class A>
  static tensor row_weighted_sum(const W& w, const A& a) {
    return make(w.array().binaryExpr(a.array(), detail::weighted_term_op<value_type>{}).rowwise().sum());
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
  template <class A, class V>
  static tensor div_per_row(const A& a, const V& v) {
    const Eigen::Array<value_type, Eigen::Dynamic, 1> reciprocal = v.array().col(0).inverse();
    return make(a.array().colwise() * reciprocal);
  }
  template <class A>
  static tensor regroup(const A& a, index k) {
    return make(a.array().template reshaped<Eigen::RowMajor>(a.size() / k, k));
  }

  template <class A>
  static double value_at(const A& a, index i, index j) {
    return static_cast<double>(a(i, j));
  }
  template <class V>
  static vector to_vector(const V& v) {
    return vector(v.array().col(0).matrix());
  }
  template <class V>
  static scalar mean(const V& v) {
    return v.array().mean();
  }

  // Optional: a comparison mask.
  template <class A>
  static tensor is_positive(const A& a) {
    return make((a.array() > value_type(0)).template cast<value_type>());
  }
  /// Optional: x where keep > 0, else 0 (NaN too).
  template <class K, class V>
  static tensor zero_unless(const K& keep, const V& x) {
    return make((keep.array() > value_type(0)).select(x.array(), value_type(0)));
  }

  // Optional: the whole loss in three passes over each group in cache (kernels::cpu_group_loss),
  // in SIMD packs along a group's row (row-major) or across a tile of groups (column-major).
  // `out`'s tensors are reused when their shapes match.
  template <class Out, class S, class G>
  static fused_result fused_group_loss(Out& out, const S& s, const G& goodness, const options& opt) {
    const index prompts = s.log_policy.rows(), n = s.log_policy.cols();
    for (tensor* t : {&out.target_weights, &out.baseline_weights, &out.grad_log_policy})
      if (t->rows() != prompts || t->cols() != n) t->resize(prompts, n);
    out.per_prompt.resize(prompts);
    const kernels::group_loss_inputs<value_type> in{
        s.log_policy.data(), s.log_proposal.data(), s.log_prior.data(), s.reward.data(), prompts, n,
        !tensor::IsRowMajor};
    value_type loss = 0;
    const kernels::group_loss_outputs<value_type> o{out.target_weights.data(), out.baseline_weights.data(),
                                                    out.grad_log_policy.data(), out.per_prompt.data(), &loss};
    const kernels::group_loss_report report = kernels::cpu_group_loss_unchecked(in, o, goodness);
    out.loss = loss;
    return opt.validate && report.row >= 0 ? fused_result::bad_input : fused_result::done;
  }

  // Optional: validity as two vectorised reductions that propagate NaN.
  template <class A>
  static bool all_valid(const A& a, bool allow_negative_infinity) {
    if (a.size() == 0) return true;
    constexpr value_type inf = std::numeric_limits<value_type>::infinity();
    if (!(a.template maxCoeff<Eigen::PropagateNaN>() < inf)) return false;  // NaN or +inf
    return allow_negative_infinity || a.template minCoeff<Eigen::PropagateNaN>() > -inf;
  }
};

/// Integer and complex Eigen types hold no log-probabilities: not a backend (and no static_assert).
template <class X>
  requires detail::eigen_dense<X> && (!std::floating_point<typename X::Scalar>)
struct backend_traits<X> {};

}  // namespace brain::inline v0

namespace Eigen::internal {
template <class S>
struct functor_traits<brain::detail::exp_flush_op<S>> {
  enum { Cost = functor_traits<scalar_exp_op<S>>::Cost + 2, PacketAccess = packet_traits<S>::HasExp };
};
template <class S>
struct functor_traits<brain::detail::weighted_term_op<S>> {
  enum { Cost = NumTraits<S>::MulCost + 2, PacketAccess = packet_traits<S>::HasMul && packet_traits<S>::HasCmp };
};
}  // namespace Eigen::internal
