// The backend concept (backend.hpp): which types model it, and the optional operations' fallbacks
// agreeing with direct formulas on every backend, edge values included.

#include "support/properties.hpp"

#include <cmath>
#include <limits>

namespace {

using namespace brain_test;
using brain::index;

static_assert(brain::Backend<Eigen::MatrixXd>);
static_assert(brain::Backend<Eigen::MatrixXf>);
static_assert(brain::Backend<Eigen::ArrayXXd>);
static_assert(brain::Backend<row_major>);
static_assert(brain::Backend<Eigen::Map<const Eigen::MatrixXd>>);
static_assert(brain::Backend<Eigen::Ref<const Eigen::MatrixXd>>);
static_assert(brain::Backend<user::matrix>);
static_assert(!brain::Backend<int>);
static_assert(!brain::Backend<std::vector<double>>);
static_assert(!brain::Backend<Eigen::MatrixXi>);  // integer tensors hold no log-probabilities

// A type whose traits miss one required operation is rejected by the named sub-concept.
struct incomplete {};
}  // namespace
template <>
struct brain::backend_traits<incomplete> : brain::backend_traits<user::matrix> {
  using tensor = incomplete;
};
namespace {
static_assert(brain::BackendTypes<incomplete>);
static_assert(!brain::ElementwiseBackend<incomplete>);
static_assert(!brain::Backend<incomplete>);

template <class T>
class BackendTest : public ::testing::Test {};
TYPED_TEST_SUITE(BackendTest, double_backends, backend_names);

TYPED_TEST(BackendTest, LogSumExpOfRowsWithInfinities) {
  using T = TypeParam;
  host a(3, 3);
  a << -INFINITY, -INFINITY, -INFINITY, /**/ -INFINITY, 0, std::log(3.0), /**/ 1000, 1000, -1000;
  const host lse = io<T>::to_host(brain::detail::row_logsumexp<T>(io<T>::from_host(a)));
  EXPECT_EQ(lse(0, 0), -INFINITY);
  EXPECT_NEAR(lse(1, 0), std::log(4.0), 1e-15);
  EXPECT_NEAR(lse(2, 0), 1000 + std::log(2.0), 1e-12);
}

TYPED_TEST(BackendTest, LogSigmoidIsStableAtExtremes) {
  using T = TypeParam;
  host x(1, 7);
  x << -1e308, -1e6, -30, 0, 30, 1e6, 1e308;
  const host y = io<T>::to_host(brain::detail::log_sigmoid<T>(io<T>::from_host(x)));
  const brain::logistic scalar;
  for (index j = 0; j < 7; ++j) {
    EXPECT_TRUE(std::isfinite(y(0, j))) << x(0, j);
    EXPECT_NEAR(y(0, j), scalar(x(0, j)), 1e-15 * std::max(1.0, std::abs(x(0, j)))) << x(0, j);
  }
  EXPECT_NEAR(y(0, 3), -std::log(2.0), 1e-16);
  EXPECT_NEAR(y(0, 2), -30 - std::log1p(std::exp(-30.0)), 1e-14);
}

TYPED_TEST(BackendTest, WeightedRowSumIgnoresZeroWeightsEvenAtInfinity) {
  using T = TypeParam;
  host w(1, 3), a(1, 3);
  w << 0, 0.5, 0.5;
  a << -INFINITY, 2, 4;
  const host s = io<T>::to_host(brain::backend_traits<T>::row_weighted_sum(io<T>::from_host(w), io<T>::from_host(a)));
  EXPECT_EQ(s(0, 0), 3.0);
}

TYPED_TEST(BackendTest, ValidityCheckSeesNanAndInfinities) {
  using T = TypeParam;
  host a = host::Zero(2, 2);
  EXPECT_TRUE(brain::detail::all_valid<T>(io<T>::from_host(a), false));
  a(1, 0) = -INFINITY;
  EXPECT_FALSE(brain::detail::all_valid<T>(io<T>::from_host(a), false));
  EXPECT_TRUE(brain::detail::all_valid<T>(io<T>::from_host(a), true));
  a(0, 1) = NAN;
  EXPECT_FALSE(brain::detail::all_valid<T>(io<T>::from_host(a), true));
}

// The user backend provides no optional operation and Eigen provides all_valid; both go through
// the same generic algorithms and agree to the last bits that matter.
TEST(BackendAgreement, EigenAndUserBackendAgree) {
  check_property("Eigen and the user backend give the same brain_loss", [] {
    const host_samples h = random_samples(*rc::gen::inRange<index>(1, 6), *rc::gen::inRange<index>(1, 33));
    const auto e = brain::brain_loss(h.as<Eigen::MatrixXd>(), brain::logistic{});
    const auto u = brain::brain_loss(h.as<user::matrix>(), brain::logistic{});
    RC_ASSERT(std::abs(e.loss - u.loss) < 1e-12);
    RC_ASSERT(max_abs_diff(e.grad_log_policy, io<user::matrix>::to_host(u.grad_log_policy)) < 1e-12);
  });
}

}  // namespace
