#pragma once
// Goodness models (paper §4): how a reward r(x, y) becomes log p(G=1 | x, y), the log-goodness
// that enters the target weights (eq. 6). Only differences within a group matter, because the
// weights are self-normalised; a per-prompt constant in log g changes nothing.

#include <brain/backend.hpp>
#include <brain/errors.hpp>
#include <brain/kernels/simd.hpp>

#include <cmath>
#include <concepts>

namespace brain::inline v0 {

/// Bradley–Terry reward model (eqs. 16–21): log g = r / beta. The paper uses beta = 1; other
/// values give the posterior that is also the optimal policy of KL-regularised reward
/// maximisation with KL coefficient beta (eq. 23).
struct bradley_terry {
  double beta = 1.0;

  void validate() const {
    if (!(beta > 0.0) || !std::isfinite(beta))
      detail::fail("bradley_terry", "beta = ", detail::describe_value(beta), " must be finite and > 0");
  }
  template <class T, class X>
  tensor_t<T> to_log_goodness(const X& reward) const {
    return backend_traits<T>::affine(reward, 1.0 / beta, 0.0);
  }
  /// r * (1 / beta): the same rounding as to_log_goodness, and no division in the kernels' loops.
  BRAIN_HOST_DEVICE double operator()(double reward) const { return reward * (1.0 / beta); }
  /// The same for a kernel value V (a float, double or SIMD pack), in V's precision as
  /// to_log_goodness in the tensor's.
  template <class V>
  BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT V log_goodness_value(V reward) const {
    using E = kernels::simd::element_t<V>;
    return reward * kernels::simd::broadcast<V>(static_cast<E>(1.0 / beta));
  }
};

/// Logistic reward model, a classifier of good outputs (eq. 15): log g = log sigmoid(r).
struct logistic {
  void validate() const {}
  template <class T, class X>
  tensor_t<T> to_log_goodness(const X& reward) const {
    return detail::log_sigmoid<T>(reward);
  }
  BRAIN_HOST_DEVICE double operator()(double reward) const {
    // -softplus(-r), computed without overflow for |r| up to the largest double.
    return (reward < 0.0 ? reward : 0.0) - std::log1p(std::exp(-std::fabs(reward)));
  }
};

/// The reward already is log p(G=1 | x, y) (e.g. a calibrated classifier's log-probability).
struct log_goodness {
  void validate() const {}
  template <class T, class X>
  tensor_t<T> to_log_goodness(const X& reward) const {
    return backend_traits<T>::affine(reward, 1.0, 0.0);
  }
  BRAIN_HOST_DEVICE double operator()(double reward) const { return reward; }
  template <class V>
  BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT V log_goodness_value(V reward) const {
    return reward;
  }
};

/// A goodness model usable with backend T: validates its parameters, maps a reward tensor to
/// log-goodness with backend operations, and a single reward with operator() (host and device).
template <class G, class T>
concept GoodnessModel = requires(const G& g, const tensor_t<T>& reward, double r) {
  g.validate();
  { g.template to_log_goodness<T>(reward) } -> std::same_as<tensor_t<T>>;
  { g(r) } -> std::convertible_to<double>;
};

/// log p(G=1 | x, y) for every element of `reward`, under goodness model `g`.
template <Backend T, GoodnessModel<T> G>
tensor_t<T> log_goodness_of(const G& g, const T& reward) {
  const auto& r = detail::as_tensor<T>(reward);
  g.validate();
  return g.template to_log_goodness<T>(r);
}

}  // namespace brain::inline v0
