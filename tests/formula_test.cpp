// BRAIn's per-sample formulas (formula.hpp) against hand-computed values, on every kind of value
// they are instantiated with: float and double scalars, SIMD packs, and whole backend tensors
// (Eigen, through detail::tensor_value). A formula changed in formula.hpp (say, target and
// baseline swapped in loss_gradient) fails here, and also in every path that calls it:
// kernels_group_loss_test (the CPU kernel), loss_test on the user backend (the composed path)
// and estimators_test (estimator::brain); the CUDA kernel compiles the same functions.

#include <brain/formula.hpp>
#include <brain/loss.hpp>  // detail::tensor_value and the Eigen backend

#include <Eigen/Core>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace {

namespace f = brain::formula;
namespace s = brain::kernels::simd;

template <class T>
class FormulaTest : public ::testing::Test {};
using element_types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(FormulaTest, element_types);

// eq. 6: log alpha = log g + log p - log q; eq. 11: log beta = log q_theta - log q.
TYPED_TEST(FormulaTest, LogWeightsByHand) {
  using T = TypeParam;
  EXPECT_EQ(f::log_target_weight(T(1.0), T(-2.0), T(-0.5)), T(-0.5));
  EXPECT_EQ(f::log_baseline_weight(T(-3.0), T(-0.5)), T(-2.5));
  constexpr T inf = std::numeric_limits<T>::infinity();
  EXPECT_EQ(f::log_target_weight(T(1.0), -inf, T(-0.5)), -inf);  // a sample the prior cannot produce
}

// eq. 12 as a loss gradient: (beta-bar - alpha-bar) * scale; estimator::brain's ascent
// coefficients are scale = -1.
TYPED_TEST(FormulaTest, LossGradientByHand) {
  using T = TypeParam;
  EXPECT_EQ(f::loss_gradient(T(0.75), T(0.5), T(0.5)), T(-0.125));
  EXPECT_EQ(f::loss_gradient(T(0.25), T(0.5), T(-1)), T(-0.25));  // alpha-bar - beta-bar
}

// eq. 14's summand and 0 log 0 = 0, even against an infinite or NaN log ratio.
TYPED_TEST(FormulaTest, KlSummandByHand) {
  using T = TypeParam;
  const T quarter = T(0.25);
  EXPECT_NEAR(double(f::kl_summand(quarter, std::log(quarter), std::log(T(0.5)))), 0.25 * std::log(0.5), 1e-7);
  constexpr T inf = std::numeric_limits<T>::infinity();
  EXPECT_EQ(f::kl_summand(T(0), -inf, T(-1)), T(0));
  EXPECT_EQ(f::kl_summand(T(0), T(0), std::numeric_limits<T>::quiet_NaN()), T(0));
  EXPECT_EQ(f::kl_summand(T(0.5), T(0), -inf), inf);  // alpha-bar > 0 where beta-bar = 0
}

// eq. 14 from unnormalised weights: alpha = (1, 3) / 4, beta = (1, 1) / 2 (rewards 0 and log 3,
// q = p = q_theta), shifted by their maxima (log 3 and 0): KL = 1/4 log(1/2) + 3/4 log(3/2).
TYPED_TEST(FormulaTest, GroupKlFromShiftedWeightsByHand) {
  using T = TypeParam;
  const T a[2] = {-std::log(T(3)), T(0)}, b[2] = {T(0), T(0)};
  T summands = 0, sum_a = 0, sum_b = 0;
  for (int i = 0; i < 2; ++i) {
    const T e = std::exp(a[i]), g = std::exp(b[i]);
    summands += f::kl_summand(e, a[i], b[i]), sum_a += e, sum_b += g;
  }
  EXPECT_NEAR(double(f::group_kl(summands, sum_a, sum_b)), 0.25 * std::log(0.5) + 0.75 * std::log(1.5), 1e-7);
}

// Packs: every lane gets what the scalar formula gives, bit for bit.
TYPED_TEST(FormulaTest, PacksAgreeWithScalars) {
  using T = TypeParam;
  using P = s::pack<T>;
  constexpr int W = s::width<T>;
  std::vector<T> w(W), x(W), y(W), out(W);
  for (int l = 0; l < W; ++l) w[l] = l % 3 == 0 ? T(0) : T(1) / T(l + 1), x[l] = T(l) - T(3), y[l] = T(2) - T(l);
  const P pw = s::load<P>(w.data()), px = s::load<P>(x.data()), py = s::load<P>(y.data());
  s::store(out.data(), f::kl_summand(pw, px, py));
  for (int l = 0; l < W; ++l) EXPECT_EQ(out[l], f::kl_summand(w[l], x[l], y[l])) << l;
  s::store(out.data(), f::loss_gradient(pw, px, s::broadcast<P>(T(0.125))));
  for (int l = 0; l < W; ++l) EXPECT_EQ(out[l], f::loss_gradient(w[l], x[l], T(0.125))) << l;
  s::store(out.data(), f::log_target_weight(pw, px, py));
  for (int l = 0; l < W; ++l) EXPECT_EQ(out[l], f::log_target_weight(w[l], x[l], y[l])) << l;
  s::store(out.data(), f::group_kl(px, s::broadcast<P>(T(2)), s::broadcast<P>(T(3)) + pw));
  for (int l = 0; l < W; ++l) EXPECT_EQ(out[l], f::group_kl(x[l], T(2), T(3) + w[l])) << l;
}

// Whole tensors (the composed path): the formulas apply elementwise through the backend's
// operations, and the KL's row sum is the backend's row_weighted_sum (0 where the weight is 0).
TEST(Formula, TensorsThroughBackendOperations) {
  namespace d = brain::detail;
  using M = Eigen::MatrixXd;
  M target(2, 2), baseline(2, 2), log_target(2, 2), log_baseline(2, 2);
  target << 0.25, 0.75, 0.0, 1.0;
  baseline << 0.5, 0.5, 0.5, 0.5;
  log_target = target.array().log();
  log_baseline = baseline.array().log();
  const M grad = f::loss_gradient(d::value_of<M>(target), d::value_of<M>(baseline), 0.5).t;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) EXPECT_DOUBLE_EQ(grad(i, j), f::loss_gradient(target(i, j), baseline(i, j), 0.5));
  const M kl =
      d::row_sum(f::kl_summand(d::value_of<M>(target), d::value_of<M>(log_target), d::value_of<M>(log_baseline)));
  EXPECT_NEAR(kl(0, 0), 0.25 * std::log(0.5) + 0.75 * std::log(1.5), 1e-15);
  EXPECT_NEAR(kl(1, 0), std::log(2.0), 1e-15);  // the 0 log 0 term is 0, not NaN
  const M log_alpha =
      f::log_target_weight(d::value_of<M>(target), d::value_of<M>(log_target), d::value_of<M>(baseline)).t;
  EXPECT_DOUBLE_EQ(log_alpha(0, 1), 0.75 + std::log(0.75) - 0.5);
}

}  // namespace
