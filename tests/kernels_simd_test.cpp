// The kernels' values (kernels/simd.hpp): SIMD packs and scalars behave alike lane by lane, and
// the one exponential and logarithm are within 2 ulp (exp) and 1 ulp (log) of libm's over their
// whole range, with exact edges.

#include <brain/kernels/simd.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace {

namespace s = brain::kernels::simd;

template <class T>
class SimdTest : public ::testing::Test {};
using element_types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(SimdTest, element_types);

// The compile flags choose the width: 64 bytes under AVX-512, 32 under AVX, 16 otherwise; a
// compiler without vector extensions gets scalars.
TEST(Simd, WidthFollowsTheCompileFlags) {
#if BRAIN_SIMD
#if defined(__AVX512F__)
  EXPECT_EQ(s::register_bytes, 64u);
#elif defined(__AVX__)
  EXPECT_EQ(s::register_bytes, 32u);
#else
  EXPECT_EQ(s::register_bytes, 16u);
#endif
  EXPECT_EQ(s::width<float>, static_cast<int>(s::register_bytes / 4));
  EXPECT_EQ(s::width<double>, static_cast<int>(s::register_bytes / 8));
#else
  EXPECT_EQ(s::width<float>, 1);
#endif
}

TYPED_TEST(SimdTest, LoadStoreSelectLargerAndReductions) {
  using T = TypeParam;
  using P = s::pack<T>;
  constexpr int W = s::width<T>;
  std::vector<T> x(W), y(W), out(W);
  for (int l = 0; l < W; ++l) x[l] = T(l * 3 % 7) - T(2.5), y[l] = T(l) - T(1);
  x[W / 2] = std::numeric_limits<T>::quiet_NaN();
  const P a = s::load<P>(x.data()), b = s::load<P>(y.data());
  s::store(out.data(), s::select<P>(a < b, a, b));
  for (int l = 0; l < W; ++l) {
    EXPECT_TRUE(s::lane(a, l) == x[l] || (std::isnan(x[l]) && std::isnan(s::lane(a, l)))) << l;
    const T want = x[l] < y[l] ? x[l] : y[l];
    EXPECT_EQ(out[l], want) << l;  // NaN < y is false: y
    // larger: NaN in b never wins, NaN in a stays.
    const T big = s::lane(s::larger(b, a), l);
    if (std::isnan(x[l]))
      EXPECT_EQ(big, y[l]);
    else
      EXPECT_EQ(big, std::max(x[l], y[l]));
  }
  EXPECT_EQ(s::lane(s::broadcast<P>(T(4.5)), W - 1), T(4.5));
  T sum = 0, largest = -INFINITY;
  for (int l = 0; l < W; ++l) sum += y[l], largest = std::max(largest, y[l]);
  EXPECT_EQ(s::sum_lanes(b), sum);  // small integers: exact in any order
  EXPECT_EQ(s::max_lanes(b), largest);
  T largest_number = -INFINITY;  // of x, with y where x is NaN
  for (int l = 0; l < W; ++l) largest_number = std::max(largest_number, std::isnan(x[l]) ? y[l] : x[l]);
  EXPECT_EQ(s::max_lanes(s::select<P>(a == a, a, b)), largest_number);
  EXPECT_TRUE(s::any<P>(a != a));  // the NaN lane
  EXPECT_FALSE(s::any<P>(b != b));
  EXPECT_EQ(s::select<T>(true, T(1), T(2)), T(1));
  EXPECT_EQ(s::select<T>(false, T(1), T(2)), T(2));
}

// exp_branchless in double: within 2 ulp of std::exp over the whole range, denormal results
// included; exactly 0 at and below log(denorm_min) and for -inf, +inf above log(max), NaN for NaN.
// A wrong coefficient, reduction or power-of-two split fails it.
TEST(Simd, ExpIsWithinTwoUlpOfStdExpInDouble) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> wide(-746.0, 710.0), narrow(-1.0, 1.0);
  const auto check = [](double x) {
    const double got = s::exp_branchless(x), want = std::exp(x);
    if (want == 0.0 || std::isinf(want)) {
      EXPECT_EQ(got, want) << x;
      return;
    }
    const double ulp = std::nextafter(want, INFINITY) - want;
    EXPECT_LE(std::abs(got - want), 2 * ulp) << "x = " << x << ": " << got << " vs " << want;
  };
  for (int k = 0; k < 200000; ++k) check(k % 2 ? wide(rng) : narrow(rng));
  for (double x : {0.0, -0.0, 1.0, -1.0, 0.5 * std::log(2.0), -708.4, -708.39641853226408, -720.0, -744.0, -745.0,
                   -745.13321910194110, 709.0, 709.78, 709.782712893384})
    check(x);
  EXPECT_EQ(s::exp_branchless(-INFINITY), 0.0);
  EXPECT_EQ(s::exp_branchless(-746.0), 0.0);
  EXPECT_EQ(s::exp_branchless(static_cast<double>(INFINITY)), INFINITY);
  EXPECT_EQ(s::exp_branchless(710.0), INFINITY);
  EXPECT_TRUE(std::isnan(s::exp_branchless(static_cast<double>(NAN))));
}

// log_branchless: within 1 ulp of std::log (computed in double for float) over normal and
// denormal inputs of every magnitude; log(0) = -inf, log(x < 0) = NaN, log(+inf) = +inf, log(1) = 0.
TYPED_TEST(SimdTest, LogIsWithinOneUlpOfStdLog) {
  using T = TypeParam;
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> mantissa(0.5, 2.0), near_one(0.9, 1.1);
  const int min_exp = std::numeric_limits<T>::min_exponent - std::numeric_limits<T>::digits;
  std::uniform_int_distribution<int> exponent(min_exp, std::numeric_limits<T>::max_exponent - 2);
  double worst = 0;
  for (int k = 0; k < 300000; ++k) {
    const T x = k % 3 == 0 ? T(near_one(rng)) : T(std::ldexp(mantissa(rng), exponent(rng)));
    if (!(x > 0) || std::isinf(x)) continue;
    const double want = std::log(static_cast<double>(x));
    const T rounded = static_cast<T>(want);
    const double ulp = std::abs(double(std::nextafter(rounded, T(INFINITY))) - double(rounded));
    worst = std::max(worst, std::abs(double(s::log_branchless(x)) - want) / ulp);
  }
  EXPECT_LE(worst, 1.0);
  EXPECT_EQ(s::log_branchless(T(0)), -std::numeric_limits<T>::infinity());
  EXPECT_TRUE(std::isnan(s::log_branchless(T(-1))));
  EXPECT_TRUE(std::isnan(s::log_branchless(std::numeric_limits<T>::quiet_NaN())));
  EXPECT_EQ(s::log_branchless(std::numeric_limits<T>::infinity()), std::numeric_limits<T>::infinity());
  EXPECT_EQ(s::log_branchless(T(1)), T(0));
  EXPECT_NEAR(double(s::log_branchless(std::numeric_limits<T>::denorm_min())),
              std::log(double(std::numeric_limits<T>::denorm_min())), 1e-5);
}

// Packs compute, lane by lane, bit for bit what scalars compute: the kernels' loop bodies and
// their scalar tails (and the CUDA threads) agree.
TYPED_TEST(SimdTest, PacksComputeWhatScalarsCompute) {
  using T = TypeParam;
  using P = s::pack<T>;
  constexpr int W = s::width<T>;
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> any(-120.0, 90.0), positive(1e-30, 1e30);
  std::vector<T> x(W), e(W), l(W);
  for (int round = 0; round < 2000; ++round) {
    for (int k = 0; k < W; ++k) x[k] = T(round % 2 ? any(rng) : positive(rng));
    if (round == 0) x[0] = -std::numeric_limits<T>::infinity(), x[W - 1] = std::numeric_limits<T>::quiet_NaN();
    s::store(e.data(), s::exp_branchless(s::load<P>(x.data())));
    s::store(l.data(), s::log_branchless(s::load<P>(x.data())));
    for (int k = 0; k < W; ++k) {
      const T want_e = s::exp_branchless(x[k]), want_l = s::log_branchless(x[k]);
      EXPECT_TRUE(e[k] == want_e || (std::isnan(e[k]) && std::isnan(want_e))) << x[k];
      EXPECT_TRUE(l[k] == want_l || (std::isnan(l[k]) && std::isnan(want_l))) << x[k];
    }
  }
}

}  // namespace
