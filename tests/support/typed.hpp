#pragma once
// The backends every typed test runs on, and conversions between them and a host reference
// matrix (Eigen::MatrixXd, column-major, double).

#include <brain/loss.hpp>

#include "vector_backend.hpp"
#include "view_backend.hpp"

#if defined(BRAIN_TEST_XTENSOR)
#include <brain/backends/xtensor.hpp>
#endif
#if defined(BRAIN_TEST_TORCH)
#include <brain/backends/torch.hpp>
#endif

#include <Eigen/Core>
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace brain_test {

using host = Eigen::MatrixXd;
using host_vector = Eigen::VectorXd;
using row_major = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Each test executable runs the typed suite on one group of backends, chosen by a definition:
// brain_tests (Eigen in three layouts, the user-written backend and its view input type),
// brain_tests_xtensor and brain_tests_torch. The scalar reference is the same for all, so they
// agree with each other.
#if defined(BRAIN_TEST_TORCH)
using double_backends = ::testing::Types<at::Tensor>;
#elif defined(BRAIN_TEST_XTENSOR)
using double_backends = ::testing::Types<xt::xtensor<double, 2>>;
#elif defined(BRAIN_TEST_WITHOUT_EIGEN_ARRAY)
// scripts/test's sanitizer pass (BRAIN_TEST_EIGEN_ARRAY=OFF): ArrayXXd has MatrixXd's storage and
// takes the same column-major kernel path, so instrumenting it again finds nothing new.
using double_backends = ::testing::Types<Eigen::MatrixXd, row_major, user::matrix, user::view>;
#else
using double_backends = ::testing::Types<Eigen::MatrixXd, Eigen::ArrayXXd, row_major, user::matrix, user::view>;
#endif

/// Readable names for the typed tests in ctest's list.
struct backend_names {
  template <class T>
  static std::string GetName(int) {
    if constexpr (std::is_same_v<T, Eigen::MatrixXd>) return "EigenMatrixXd";
    if constexpr (std::is_same_v<T, Eigen::ArrayXXd>) return "EigenArrayXXd";
    if constexpr (std::is_same_v<T, row_major>) return "EigenRowMajor";
    if constexpr (std::is_same_v<T, user::matrix>) return "UserVectorBackend";
    if constexpr (std::is_same_v<T, user::view>) return "UserViewBackend";
#if defined(BRAIN_TEST_XTENSOR)
    if constexpr (std::is_same_v<T, xt::xtensor<double, 2>>) return "Xtensor";
#endif
#if defined(BRAIN_TEST_TORCH)
    if constexpr (std::is_same_v<T, at::Tensor>) return "LibTorch";
#endif
    return "unnamed";
  }
};

/// Conversions between a backend's tensors and the host reference. to_host reads a 2-D tensor,
/// to_host_vector a per-prompt result, to_double a batch loss.
template <class T>
struct io {  // Eigen types
  static T from_host(const host& h) { return T(h); }
  static host to_host(const brain::tensor_t<T>& t) { return host(t.template cast<double>().matrix()); }
  static host_vector to_host_vector(const brain::vector_t<T>& v) { return v.template cast<double>(); }
  static double to_double(const brain::scalar_t<T>& s) { return static_cast<double>(s); }
};
template <>
struct io<Eigen::ArrayXXd> {
  using T = Eigen::ArrayXXd;
  static T from_host(const host& h) { return h.array(); }
  static host to_host(const T& t) { return t.matrix(); }
  static host_vector to_host_vector(const Eigen::VectorXd& v) { return v; }
  static double to_double(double s) { return s; }
};
template <>
struct io<user::matrix> {
  using T = user::matrix;
  static T from_host(const host& h) {
    T m{h.rows(), h.cols(), {}};
    for (brain::index i = 0; i < h.rows(); ++i)
      for (brain::index j = 0; j < h.cols(); ++j) m.data.push_back(h(i, j));
    return m;
  }
  static host to_host(const T& t) {
    host h(t.rows, t.cols);
    for (brain::index i = 0; i < t.rows; ++i)
      for (brain::index j = 0; j < t.cols; ++j) h(i, j) = t(i, j);
    return h;
  }
  static host_vector to_host_vector(const std::vector<double>& v) {
    return Eigen::Map<const host_vector>(v.data(), brain::index(v.size()));
  }
  static double to_double(double s) { return s; }
};
template <>
struct io<user::view> : io<user::matrix> {  // results are user::matrix
  static user::view from_host(const host& h) {
    const user::matrix m = io<user::matrix>::from_host(h);
    return {m.rows, m.cols, std::make_shared<const std::vector<double>>(m.data)};
  }
};
#if defined(BRAIN_TEST_XTENSOR)
template <class S>
struct io<xt::xtensor<S, 2>> {
  using T = xt::xtensor<S, 2>;
  static T from_host(const host& h) {
    T t({std::size_t(h.rows()), std::size_t(h.cols())});
    for (brain::index i = 0; i < h.rows(); ++i)
      for (brain::index j = 0; j < h.cols(); ++j) t(i, j) = S(h(i, j));
    return t;
  }
  static host to_host(const T& t) {
    host h(brain::index(t.shape()[0]), brain::index(t.shape()[1]));
    for (brain::index i = 0; i < h.rows(); ++i)
      for (brain::index j = 0; j < h.cols(); ++j) h(i, j) = double(t(i, j));
    return h;
  }
  static host_vector to_host_vector(const xt::xtensor<S, 1>& v) {
    host_vector h(brain::index(v.size()));
    for (brain::index i = 0; i < h.size(); ++i) h(i) = double(v(i));
    return h;
  }
  static double to_double(S s) { return double(s); }
};
#endif
#if defined(BRAIN_TEST_TORCH)
template <>
struct io<at::Tensor> {
  using T = at::Tensor;
  static at::ScalarType& dtype() {  // what from_host makes: double unless a test says otherwise
    static at::ScalarType type = at::kDouble;
    return type;
  }
  static T from_host(const host& h) {
    const row_major values = h;  // LibTorch is row-major
    return at::from_blob(const_cast<double*>(values.data()), {h.rows(), h.cols()}, at::kDouble).to(dtype()).clone();
  }
  static host to_host(const T& t) {
    const at::Tensor c = t.detach().to(at::kDouble).cpu().contiguous();
    EXPECT_EQ(c.dim(), 2);
    return Eigen::Map<const row_major>(c.data_ptr<double>(), c.size(0), c.size(1));
  }
  static host_vector to_host_vector(const T& v) {
    const at::Tensor c = v.detach().to(at::kDouble).cpu().contiguous();
    EXPECT_EQ(c.dim(), 1);
    return Eigen::Map<const host_vector>(c.data_ptr<double>(), c.size(0));
  }
  static double to_double(const T& s) {
    EXPECT_EQ(s.dim(), 0);
    return s.item<double>();
  }
};
#endif

/// A host matrix as the backend's result type (what parameters typed tensor_t<T> take).
template <class T>
brain::tensor_t<T> tensor_from_host(const host& h) {
  return brain::detail::as_tensor<T>(io<T>::from_host(h));
}

/// samples<T> from host matrices.
template <class T>
brain::samples<T> make_samples(const host& log_policy, const host& log_proposal, const host& log_prior,
                               const host& reward) {
  return {.log_policy = io<T>::from_host(log_policy),
          .log_proposal = io<T>::from_host(log_proposal),
          .log_prior = io<T>::from_host(log_prior),
          .reward = io<T>::from_host(reward)};
}

/// The same samples, as host matrices.
struct host_samples {
  host log_policy, log_proposal, log_prior, reward;
  template <class T>
  brain::samples<T> as() const {
    return make_samples<T>(log_policy, log_proposal, log_prior, reward);
  }
};

/// What `call` throws as std::invalid_argument, or "no exception".
template <class F>
std::string error_message(F&& call) {
  try {
    call();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no exception";
}

/// Max |a - b| over all elements, treating equal infinities as equal.
inline double max_abs_diff(const host& a, const host& b) {
  EXPECT_EQ(a.rows(), b.rows());
  EXPECT_EQ(a.cols(), b.cols());
  double worst = 0.0;
  for (brain::index i = 0; i < a.rows(); ++i)
    for (brain::index j = 0; j < a.cols(); ++j)
      if (a(i, j) != b(i, j)) worst = std::max(worst, std::abs(a(i, j) - b(i, j)));
  return worst;
}

}  // namespace brain_test
