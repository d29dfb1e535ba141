// Exact quantities on enumerable spaces (exact.hpp): the posterior of eq. 23, exact KL with its
// conventions for zero probabilities, and expectations.

#include "support/properties.hpp"

#include <cmath>

namespace {

using namespace brain_test;
using brain::index;

template <class T>
class ExactTest : public ::testing::Test {};
TYPED_TEST_SUITE(ExactTest, double_backends, backend_names);

TYPED_TEST(ExactTest, PosteriorIsPriorTimesExpRewardOverBetaNormalised) {
  using T = TypeParam;
  host l0(1, 3), r(1, 3);
  l0 << std::log(0.5), std::log(0.25), std::log(0.25);
  r << 0, std::log(2.0), std::log(4.0);  // p * exp(r) = (0.5, 0.5, 1) -> (1/4, 1/4, 1/2)
  const host post = io<T>::to_host(brain::exact_log_posterior(io<T>::from_host(l0), io<T>::from_host(r)));
  EXPECT_NEAR(std::exp(post(0, 0)), 0.25, 1e-15);
  EXPECT_NEAR(std::exp(post(0, 2)), 0.5, 1e-15);
  // beta = 2: p * exp(r / 2) = (0.5, 0.25 sqrt 2, 0.5).
  const host post2 = io<T>::to_host(
      brain::exact_log_posterior(io<T>::from_host(l0), io<T>::from_host(r), brain::bradley_terry{.beta = 2.0}));
  EXPECT_NEAR(std::exp(post2(0, 1)), 0.25 * std::sqrt(2.0) / (1 + 0.25 * std::sqrt(2.0)), 1e-15);
}

TYPED_TEST(ExactTest, KlHandlesZeroProbabilitiesByConvention) {
  using T = TypeParam;
  host p(3, 3), q(3, 3);
  p << std::log(0.5), std::log(0.5), -INFINITY, /**/ std::log(0.5), std::log(0.5), -INFINITY, /**/ 0, -INFINITY,
      -INFINITY;
  q << std::log(0.25), std::log(0.25), std::log(0.5), /**/ std::log(0.5), -INFINITY, std::log(0.5), /**/ 0, -INFINITY,
      -INFINITY;
  const host_vector kl = io<T>::to_host_vector(brain::exact_kl(io<T>::from_host(p), io<T>::from_host(q)));
  EXPECT_NEAR(kl(0), std::log(2.0), 1e-15);  // 0 log 0 = 0 for the third output
  EXPECT_EQ(kl(1), INFINITY);                // p puts mass where q has none
  EXPECT_EQ(kl(2), 0.0);                     // both zero on two outputs
}

TYPED_TEST(ExactTest, KlIsNonNegativeAndZeroOnlyForEqualDistributions) {
  using T = TypeParam;
  check_property("KL(p || q) >= 0 with equality iff p = q", [] {
    const index rows = *rc::gen::inRange<index>(1, 4), k = *rc::gen::inRange<index>(2, 20);
    const auto p = brain::row_log_softmax(io<T>::from_host(random_matrix(rows, k, -5, 5)));
    const auto q = brain::row_log_softmax(io<T>::from_host(random_matrix(rows, k, -5, 5)));
    RC_ASSERT(io<T>::to_host_vector(brain::exact_kl(p, q)).minCoeff() >= 0.0);
    RC_ASSERT(io<T>::to_host_vector(brain::exact_kl(p, p)).cwiseAbs().maxCoeff() < 1e-14);
  });
}

TYPED_TEST(ExactTest, ExpectationWeighsValuesByTheDistribution) {
  using T = TypeParam;
  host p(1, 3), v(1, 3);
  p << std::log(0.2), std::log(0.8), -INFINITY;
  v << 10, 5, 1e300;  // the impossible output's value does not matter
  EXPECT_NEAR(io<T>::to_host_vector(brain::exact_expectation(io<T>::from_host(p), io<T>::from_host(v)))(0), 6.0, 1e-14);
}

}  // namespace
