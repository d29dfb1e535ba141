// Goodness models (goodness.hpp, eqs. 15-21): element by element, the scalar (host and device)
// form against the tensor form, extremes, and parameter validation.

#include "support/properties.hpp"

#include <cmath>
#include <stdexcept>

namespace {

using namespace brain_test;
using brain::index;

static_assert(brain::GoodnessModel<brain::bradley_terry, Eigen::MatrixXd>);
static_assert(brain::GoodnessModel<brain::logistic, user::view>);
static_assert(!brain::GoodnessModel<int, Eigen::MatrixXd>);

template <class T>
class GoodnessTest : public ::testing::Test {};
TYPED_TEST_SUITE(GoodnessTest, double_backends, backend_names);

TYPED_TEST(GoodnessTest, EachModelMapsRewardsAsItsEquationSays) {
  using T = TypeParam;
  host r(1, 3);
  r << 0.0, std::log(3.0), -2.0;
  const host bt = io<T>::to_host(brain::log_goodness_of(brain::bradley_terry{.beta = 0.5}, io<T>::from_host(r)));
  const host logistic = io<T>::to_host(brain::log_goodness_of(brain::logistic{}, io<T>::from_host(r)));
  const host direct = io<T>::to_host(brain::log_goodness_of(brain::log_goodness{}, io<T>::from_host(r)));
  EXPECT_NEAR(bt(0, 1), 2 * std::log(3.0), 1e-15);     // r / beta (eqs. 16-21)
  EXPECT_NEAR(logistic(0, 1), std::log(0.75), 1e-15);  // log sigmoid(r) (eq. 15)
  EXPECT_NEAR(logistic(0, 2), -std::log1p(std::exp(2.0)), 1e-15);
  EXPECT_EQ(direct, r);
  EXPECT_THROW(brain::log_goodness_of(brain::bradley_terry{.beta = -1}, io<T>::from_host(r)), std::invalid_argument);
}

// The scalar operator() (what the raw-memory and CUDA kernels use) equals the tensor form.
TYPED_TEST(GoodnessTest, ScalarAndTensorFormsAgreeAtAnyMagnitude) {
  using T = TypeParam;
  check_property("g(r) element by element = to_log_goodness", [] {
    const double m = random_magnitude();
    const host r = random_matrix(2, 5, -m, m);
    const double beta = std::pow(10.0, *real_in(-3, 3));
    const host bt = io<T>::to_host(brain::log_goodness_of(brain::bradley_terry{.beta = beta}, io<T>::from_host(r)));
    const host lg = io<T>::to_host(brain::log_goodness_of(brain::logistic{}, io<T>::from_host(r)));
    for (index j = 0; j < 5; ++j) {
      RC_ASSERT(std::abs(bt(0, j) - brain::bradley_terry{.beta = beta}(r(0, j))) <= 1e-15 * std::abs(bt(0, j)));
      RC_ASSERT(std::abs(lg(0, j) - brain::logistic{}(r(0, j))) <= 1e-15 * std::max(1.0, std::abs(lg(0, j))));
    }
  });
}

}  // namespace
