#pragma once
// A user-written backend: a row-major matrix over std::vector<double> and one backend_traits specialisation. It exposes
// no memory and provides no optional operation, so every fallback in backend.hpp runs on it, with the typed suite.

#include <brain/backend.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace user {

struct matrix {
  brain::index rows = 0, cols = 0;
  std::vector<double> data;  // row-major
  double operator()(brain::index i, brain::index j) const { return data[static_cast<std::size_t>(i * cols + j)]; }
};

}  // namespace user

template <>
struct brain::backend_traits<user::matrix> {
  using tensor = user::matrix;
  using vector = std::vector<double>;
  using scalar = double;
  using m = user::matrix;

  template <class F>
  static m map(const m& a, F f) {
    m out = a;
    for (double& v : out.data) v = f(v);
    return out;
  }
  template <class F>
  static m zip(const m& a, const m& b, F f) {
    m out = a;
    for (std::size_t k = 0; k < out.data.size(); ++k) out.data[k] = f(a.data[k], b.data[k]);
    return out;
  }
  // clang-format off: one operation per line, as the 80 lines this example promises (ctest user_backend_under_80_lines)
  template <class F>  // f(row) -> double, one value per row: a [rows, 1] result
  static m per_row(const m& a, F f) {
    m out{a.rows, 1, {}};
    for (index i = 0; i < a.rows; ++i) out.data.push_back(f(a.data.begin() + i * a.cols, a.data.begin() + (i + 1) * a.cols));
    return out;
  }
  static index rows(const m& a) { return a.rows; }
  static index cols(const m& a) { return a.cols; }
  static m full(const m&, index r, index c, double v) { return {r, c, std::vector<double>(static_cast<std::size_t>(r * c), v)}; }
  static m add(const m& a, const m& b) { return zip(a, b, std::plus<>{}); }
  static m sub(const m& a, const m& b) { return zip(a, b, std::minus<>{}); }
  static m mul(const m& a, const m& b) { return zip(a, b, std::multiplies<>{}); }
  static m affine(const m& a, double s, double t) { return map(a, [=](double v) { return v * s + t; }); }
  static m exp(const m& a) { return map(a, [](double v) { return std::exp(v); }); }
  static m log(const m& a) { return map(a, [](double v) { return std::log(v); }); }
  static m clamp_min(const m& a, double lo) { return map(a, [=](double v) { return std::max(v, lo); }); }
  static m row_max(const m& a) { return per_row(a, [](auto b, auto e) { return *std::max_element(b, e); }); }
  static m row_sum(const m& a) { return per_row(a, [](auto b, auto e) { return std::accumulate(b, e, 0.0); }); }
  // clang-format on
  static m row_weighted_sum(const m& w, const m& a) {
    const m terms = zip(w, a, [](double x, double y) { return x == 0.0 ? 0.0 : x * y; });
    return row_sum(terms);
  }
  static m argmax_one_hot(const m& a) {
    m out = full(a, a.rows, a.cols, 0.0);
    const m best = per_row(a, [](auto b, auto e) { return double(std::max_element(b, e) - b); });
    for (index i = 0; i < a.rows; ++i) out.data[static_cast<std::size_t>(i * a.cols + index(best.data[i]))] = 1.0;
    return out;
  }
  static m sub_per_row(const m& a, const m& v) {
    m out = a;
    for (index k = 0; k < a.rows * a.cols; ++k) out.data[k] -= v.data[k / a.cols];
    return out;
  }
  static m regroup(const m& a, index k) { return {a.rows * a.cols / k, k, a.data}; }
  static double value_at(const m& a, index i, index j) { return a(i, j); }
  static vector to_vector(const m& v) { return v.data; }
  static scalar mean(const m& v) { return std::accumulate(v.data.begin(), v.data.end(), 0.0) / double(v.data.size()); }
};
