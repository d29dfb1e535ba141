// The backend concept (backend.hpp): which types model it, every public function compiling and
// running on every backend (the user's under 80 lines and its view input type included), and the
// optional operations' fallbacks agreeing with direct formulas, edge values included.

#include "support/properties.hpp"

#include <cmath>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

namespace {

using namespace brain_test;
using brain::index;

static_assert(brain::Backend<user::matrix>);
static_assert(brain::Backend<user::view>);  // an input type whose results are user::matrix
static_assert(std::is_same_v<brain::tensor_t<user::view>, user::matrix>);
static_assert(!brain::Backend<int>);
static_assert(!brain::Backend<std::vector<double>>);

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

// Every public function of the core, called once with inputs of type T: the test that the
// concept asks for what the code needs (a view type with only the concept's operations among
// the backends). Values are checked elsewhere; here only that the results have the right shape.
TYPED_TEST(BackendTest, EveryPublicFunctionCompilesAndRuns) {
  using T = TypeParam;
  const host_samples h = random_samples_host(2, 4);
  const auto s = h.as<T>();
  const T lp = io<T>::from_host(h.log_policy), lq = io<T>::from_host(h.log_proposal);
  const T l0 = io<T>::from_host(h.log_prior), r = io<T>::from_host(h.reward);
  const auto rows = [](const auto& t) { return io<T>::to_host(t).rows(); };
  brain::loss_result<T> into;
  brain::brain_loss_into(into, s);
  EXPECT_EQ(io<T>::to_host_vector(brain::brain_loss(s, brain::logistic{}).per_prompt).size(), 2);
  for (const auto e :
       {brain::estimator::brain, brain::estimator::no_baseline, brain::estimator::gdc_pp, brain::estimator::dpg,
        brain::estimator::rloo, brain::estimator::grpo, brain::estimator::ppo_clip}) {
    EXPECT_EQ(rows(brain::gradient_coefficients(s, e)), 2);
    EXPECT_EQ(rows(brain::gradient_coefficients(s, e, brain::bradley_terry{}, brain::options{})), 2);
    EXPECT_EQ(rows(brain::gradient_coefficients(s, e, brain::bradley_terry{}, brain::policy_gradient_options{})), 2);
    EXPECT_EQ(rows(brain::surrogate_loss(s, e).grad_log_policy), 2);
    EXPECT_EQ(rows(brain::surrogate_loss(s, e, brain::log_goodness{}, brain::options{}).coefficients), 2);
  }
  const auto log_z = tensor_from_host<T>(host::Zero(2, 1));
  EXPECT_EQ(rows(brain::gradient_coefficients(s, brain::estimator::dpg, brain::bradley_terry{}, log_z)), 2);
  EXPECT_EQ(rows(brain::surrogate_loss(s, brain::estimator::gdc_pp, brain::bradley_terry{}, log_z).coefficients), 2);
  EXPECT_EQ(rows(brain::target_weights(l0, lq, r)), 2);
  EXPECT_EQ(rows(brain::log_target_weights(l0, lq, r, brain::logistic{})), 2);
  EXPECT_EQ(rows(brain::baseline_weights(lp, lq)), 2);
  EXPECT_EQ(rows(brain::log_baseline_weights(lp, lq)), 2);
  EXPECT_EQ(rows(brain::row_log_softmax(lp)), 2);
  EXPECT_EQ(rows(brain::log_goodness_of(brain::bradley_terry{.beta = 2}, r)), 2);
  EXPECT_EQ(io<T>::to_host_vector(brain::self_normalized_kl(lp, lq)).size(), 2);
  EXPECT_EQ(io<T>::to_host_vector(brain::effective_sample_size(io<T>::from_host(host(h.reward.array().exp())))).size(),
            2);
  const T log_pi = io<T>::from_host(io<T>::to_host(brain::row_log_softmax(lp)));
  const T log_p = io<T>::from_host(io<T>::to_host(brain::row_log_softmax(l0)));
  EXPECT_EQ(rows(brain::exact_log_posterior(log_p, r)), 2);
  EXPECT_EQ(io<T>::to_host_vector(brain::exact_kl(log_pi, log_p)).size(), 2);
  EXPECT_EQ(io<T>::to_host_vector(brain::exact_expectation(log_pi, r)).size(), 2);
  EXPECT_EQ(io<T>::to_host_vector(brain::kl_regularized_reward(log_pi, log_p, r, 0.5)).size(), 2);
  EXPECT_EQ(rows(brain::pairwise(s).log_policy), 4);
  EXPECT_EQ(rows(brain::regroup(s, 4).reward), 2);
  EXPECT_EQ(rows(brain::dpo_loss(lp, lq, l0, l0).grad_chosen), 2);
  EXPECT_EQ(rows(brain::rso_log_acceptance(r, 0.5)), 2);
  std::mt19937_64 rng(1);
  const auto accepted = brain::rso_select(r, 0.5, 2, rng);
  EXPECT_EQ(accepted.size(), 2u);
  EXPECT_LE(brain::rso_pairs(r, accepted).size(), 2u);
}

TYPED_TEST(BackendTest, LogSumExpOfRowsWithInfinities) {
  using T = TypeParam;
  host a(3, 3);
  a << -INFINITY, -INFINITY, -INFINITY, /**/ -INFINITY, 0, std::log(3.0), /**/ 1000, 1000, -1000;
  const host lse = io<T>::to_host(brain::detail::row_logsumexp<T>(tensor_from_host<T>(a)));
  EXPECT_EQ(lse(0, 0), -INFINITY);
  EXPECT_NEAR(lse(1, 0), std::log(4.0), 1e-15);
  EXPECT_NEAR(lse(2, 0), 1000 + std::log(2.0), 1e-12);
}

TYPED_TEST(BackendTest, LogSigmoidIsStableAtExtremes) {
  using T = TypeParam;
  host x(1, 7);
  x << -1e308, -1e6, -30, 0, 30, 1e6, 1e308;
  const host y = io<T>::to_host(brain::detail::log_sigmoid<T>(tensor_from_host<T>(x)));
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
  const host s =
      io<T>::to_host(brain::backend_traits<T>::row_weighted_sum(tensor_from_host<T>(w), tensor_from_host<T>(a)));
  EXPECT_EQ(s(0, 0), 3.0);
}

TYPED_TEST(BackendTest, ValidityCheckSeesNanAndInfinities) {
  using T = TypeParam;
  host a = host::Zero(2, 2);
  EXPECT_TRUE(brain::detail::all_valid<T>(tensor_from_host<T>(a), false));
  a(1, 0) = -INFINITY;
  EXPECT_FALSE(brain::detail::all_valid<T>(tensor_from_host<T>(a), false));
  EXPECT_TRUE(brain::detail::all_valid<T>(tensor_from_host<T>(a), true));
  a(0, 1) = NAN;
  EXPECT_FALSE(brain::detail::all_valid<T>(tensor_from_host<T>(a), true));
}

// The fallbacks of the optional operations the estimators use, on backends with and without them.
TYPED_TEST(BackendTest, IsPositiveIsExactEvenForDenormals) {
  using T = TypeParam;
  host a(1, 8);
  a << -INFINITY, -1, -4.9e-324, 0, 4.9e-324, 1e-300, 1, 1e308;
  const host m = io<T>::to_host(brain::detail::is_positive<T>(tensor_from_host<T>(a)));
  host expect(1, 8);
  expect << 0, 0, 0, 0, 1, 1, 1, 1;
  EXPECT_EQ(m, expect);
}

TYPED_TEST(BackendTest, ProductsQuotientsAndTotals) {
  using T = TypeParam;
  host a(2, 3), v(2, 1);
  a << 1, -2, 3, /**/ 4, 5, -6;
  v << 2, 0.5;
  const auto ta = tensor_from_host<T>(a), tv = tensor_from_host<T>(v);
  EXPECT_EQ(io<T>::to_host(brain::backend_traits<T>::mul(ta, ta)), host(a.array().square()));
  EXPECT_LT(
      max_abs_diff(io<T>::to_host(brain::detail::div_per_row<T>(ta, tv)), host(a.array().colwise() / v.col(0).array())),
      1e-15);
  EXPECT_EQ(io<T>::to_host(brain::detail::broadcast_column<T>(ta, tv)), host(v.replicate(1, 3)));
  EXPECT_EQ(io<T>::to_host(brain::detail::total<T>(ta))(0, 0), 5.0);
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
