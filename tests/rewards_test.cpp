// Several rewards made one (rewards.hpp): hand-computed sums at each scale, the group scale's
// standardisation as a property, equal rewards giving 0 (never NaN), and every rejected input
// named by its index.

#include "support/properties.hpp"

#include <brain/rewards.hpp>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace brain_test;
using brain::index;

template <class T>
class RewardsTest : public ::testing::Test {};
TYPED_TEST_SUITE(RewardsTest, double_backends, backend_names);

template <class T>
host combined(const std::vector<host>& rewards, const brain::reward_mix& mix) {
  std::vector<T> in;
  for (const host& r : rewards) in.push_back(io<T>::from_host(r));
  return io<T>::to_host(brain::combine_rewards(in, mix));
}

template <class T>
std::string rejection(const std::vector<host>& rewards, const brain::reward_mix& mix) {
  try {
    (void)combined<T>(rewards, mix);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TYPED_TEST(RewardsTest, UnscaledRewardsAreTheirWeightedSum) {
  using T = TypeParam;
  host a(2, 3), b(2, 3);
  a << 1, 2, 3, -1, 0, 4;
  b << 0, 0, 6, 2, 2, 2;
  host want(2, 3);
  want << 2, 4, 9, -1, 1, 9;  // 2a + 0.5b
  EXPECT_LT((combined<T>({a, b}, {.weights = {2.0, 0.5}}) - want).cwiseAbs().maxCoeff(), 1e-14);
  EXPECT_LT((combined<T>({a, b}, {}) - (a + b)).cwiseAbs().maxCoeff(), 1e-14);  // no weights: all 1
}

TYPED_TEST(RewardsTest, GroupScaleStandardisesEachPromptsSamples) {
  using T = TypeParam;
  host a(2, 3), b(2, 3);
  a << 1, 2, 3, 5, 5, 5;  // row 2: equal rewards, an uninformative group
  b << 0, 0, 6, 1, 2, 3;
  const double eps = 1e-4;
  // Unbiased stds (n - 1): row 1 of a, mean 2, std sqrt(2 / 2) = 1; of b, mean 2, std sqrt(24 / 2);
  // row 2 of b as row 1 of a. (Population stds, sqrt(2/3) and sqrt(8), would fail.)
  const double sa = 1.0 + eps, sb = std::sqrt(12.0) + eps, s2 = 1.0 + eps;
  host want(2, 3);
  want << 1.0 * -1 / sa + 3.0 * -2 / sb, 0.0 + 3.0 * -2 / sb, 1.0 * 1 / sa + 3.0 * 4 / sb,  //
      3.0 * -1 / s2, 0.0, 3.0 * 1 / s2;                                                     // a's row adds 0
  const host got = combined<T>({a, b}, {.weights = {1.0, 3.0}, .scale = brain::reward_scale::group});
  EXPECT_LT((got - want).cwiseAbs().maxCoeff(), 1e-12) << got;
  EXPECT_TRUE(got.allFinite());
}

TYPED_TEST(RewardsTest, BatchScaleStandardisesOverEverySample) {
  using T = TypeParam;
  host a(2, 2);
  a << 1, 3, 5, 7;  // mean 4, unbiased variance (9 + 1 + 1 + 9) / 3
  const host got = combined<T>({a}, {.weights = {}, .scale = brain::reward_scale::batch, .epsilon = 1e-300});
  host want(2, 2);
  want << -3, -1, 1, 3;
  want /= std::sqrt(20.0 / 3.0);
  EXPECT_LT((got - want).cwiseAbs().maxCoeff(), 1e-14) << got;
}

TYPED_TEST(RewardsTest, GroupScaledRowsHaveMeanZeroAndUnitSpread) {
  using T = TypeParam;
  check_property("group scale: each row mean 0, unbiased std 1", [] {
    const index rows = *rc::gen::inRange<index>(1, 4), cols = *rc::gen::inRange<index>(2, 7);
    const host r = random_matrix(rows, cols, -100, 100);
    for (index i = 0; i < rows; ++i) RC_PRE((r.row(i).array() - r.row(i).mean()).abs().maxCoeff() > 1e-3);
    const host z = combined<T>({r}, {.weights = {}, .scale = brain::reward_scale::group, .epsilon = 1e-12});
    for (index i = 0; i < rows; ++i) {
      RC_ASSERT(std::abs(z.row(i).mean()) < 1e-9);
      RC_ASSERT(std::abs(z.row(i).squaredNorm() / double(cols - 1) - 1.0) < 1e-8);
    }
  });
}

TYPED_TEST(RewardsTest, RejectionsNameTheRewardAndTheSetting) {
  using T = TypeParam;
  host a(1, 3), b(1, 2), bad(1, 3);
  a << 1, 2, 3;
  b << 1, 2;
  bad << 1, 2, std::nan("");
  EXPECT_NE(rejection<T>({}, {}).find("no rewards"), std::string::npos);
  EXPECT_NE(rejection<T>({a, b}, {}).find("rewards[1] is 1x2 but rewards[0] is 1x3"), std::string::npos)
      << rejection<T>({a, b}, {});
  EXPECT_NE(rejection<T>({a, bad}, {}).find("rewards[1][0, 2]"), std::string::npos) << rejection<T>({a, bad}, {});
  EXPECT_NE(rejection<T>({a, a}, {.weights = {1.0}}).find("weights has 1 entries for 2 rewards"), std::string::npos);
  EXPECT_NE(rejection<T>({a}, {.weights = {INFINITY}}).find("weights[0] = +inf"), std::string::npos)
      << rejection<T>({a}, {.weights = {INFINITY}});
  EXPECT_NE(rejection<T>({a}, {.weights = {}, .scale = brain::reward_scale::group, .epsilon = 0.0}).find("epsilon = 0"),
            std::string::npos);
  host single(3, 1);
  single << 1, 2, 3;
  EXPECT_NE(rejection<T>({single}, {.weights = {}, .scale = brain::reward_scale::group})
                .find("at least 2 samples per prompt"),
            std::string::npos);
  EXPECT_EQ(rejection<T>({single}, {.weights = {}, .scale = brain::reward_scale::batch}),
            "");  // 3 samples in the batch
  const host one = host::Constant(1, 1, 2.0);
  EXPECT_NE(rejection<T>({one}, {.weights = {}, .scale = brain::reward_scale::batch}).find("the rewards have 1"),
            std::string::npos);
}

}  // namespace
