#pragma once
// The xtensor backend: xt::xtensor<S, 2> (row-major) of float or double. Every operation returns
// an evaluated xt::xtensor, never an xexpression that could keep references to temporaries
// (the `auto tmp = expr;` pitfall of xtensor's own documentation).

#include <brain/backend.hpp>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xreducer.hpp>
#include <xtensor/xsort.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>

namespace brain::inline v0 {

template <std::floating_point S>
struct backend_traits<xt::xtensor<S, 2>> {
  using tensor = xt::xtensor<S, 2>;
  using vector = xt::xtensor<S, 1>;
  using scalar = S;

 private:
  static S cast(double v) { return static_cast<S>(v); }
  // A per-row reduction result [rows] as a [rows, 1] tensor.
  template <class E>
  static tensor as_column(E&& e) {
    return xt::view(std::forward<E>(e), xt::all(), xt::newaxis());
  }

 public:
  static index rows(const tensor& a) { return static_cast<index>(a.shape()[0]); }
  static index cols(const tensor& a) { return static_cast<index>(a.shape()[1]); }
  static tensor full(const tensor&, index rows, index cols, double value) {
    return tensor({static_cast<std::size_t>(rows), static_cast<std::size_t>(cols)}, cast(value));
  }

  static tensor add(const tensor& a, const tensor& b) { return a + b; }
  static tensor sub(const tensor& a, const tensor& b) { return a - b; }
  static tensor mul(const tensor& a, const tensor& b) { return a * b; }
  static tensor affine(const tensor& a, double scale, double shift) { return a * cast(scale) + cast(shift); }
  static tensor exp(const tensor& a) { return xt::exp(a); }
  static tensor log(const tensor& a) { return xt::log(a); }
  static tensor clamp_min(const tensor& a, double lo) { return xt::maximum(a, cast(lo)); }

  static tensor row_max(const tensor& a) {
    // Not xt::amax: it starts from lowest(), so a row of -inf would come out finite.
    tensor out({a.shape()[0], std::size_t(1)});
    for (std::size_t i = 0; i < a.shape()[0]; ++i) {
      const auto row = xt::row(a, static_cast<std::ptrdiff_t>(i));
      out(i, 0) = *std::max_element(row.cbegin(), row.cend());
    }
    return out;
  }
  static tensor row_sum(const tensor& a) { return as_column(xt::sum(a, {1})); }
  static tensor row_weighted_sum(const tensor& w, const tensor& a) {
    return as_column(xt::sum(xt::where(xt::equal(w, S(0)), S(0), w * a), {1}));
  }
  static tensor argmax_one_hot(const tensor& a) {
    tensor out = xt::zeros<S>(a.shape());
    const auto best = xt::eval(xt::argmax(a, 1));  // the first maximum of each row
    for (std::size_t i = 0; i < best.size(); ++i) out(i, best(i)) = S(1);
    return out;
  }
  static tensor sub_per_row(const tensor& a, const tensor& v) { return a - v; }  // [rows, 1] broadcasts
  static tensor regroup(const tensor& a, index k) {
    tensor out = a;
    out.reshape({a.size() / static_cast<std::size_t>(k), static_cast<std::size_t>(k)});
    return out;
  }

  static double value_at(const tensor& a, index i, index j) {
    return static_cast<double>(a(static_cast<std::size_t>(i), static_cast<std::size_t>(j)));
  }
  static vector to_vector(const tensor& v) { return xt::view(v, xt::all(), 0); }
  static scalar mean(const tensor& v) { return xt::mean(v)(); }

  // Optional operations.
  static tensor div_per_row(const tensor& a, const tensor& v) { return a / v; }
  static tensor is_positive(const tensor& a) { return xt::where(a > S(0), S(1), S(0)); }
  static tensor zero_unless(const tensor& keep, const tensor& x) { return xt::where(keep > S(0), x, S(0)); }
  static bool all_valid(const tensor& a, bool allow_negative_infinity) {
    if (!allow_negative_infinity) return xt::all(xt::isfinite(a));
    return !xt::any(xt::isnan(a) || xt::equal(a, std::numeric_limits<S>::infinity()));
  }
};

/// Integer xtensors hold no log-probabilities: not a backend (and no static_assert).
template <class S>
  requires(!std::floating_point<S>)
struct backend_traits<xt::xtensor<S, 2>> {};

}  // namespace brain::inline v0
