// Target and baseline weights (weights.hpp, eqs. 6, 11, 21): by hand, the argmax rule, rows that
// are distributions, detached inputs, and overflow reported instead of returned.

#include "support/properties.hpp"
#include "support/reference.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace {

using namespace brain_test;
using brain::index;

template <class T>
class WeightsTest : public ::testing::Test {};
TYPED_TEST_SUITE(WeightsTest, double_backends, backend_names);

// log alpha = r + log p - log q = (0, l2, l2) -> alpha-bar = (1/5, 2/5, 2/5) (eq. 6); log beta =
// log q_theta - log q = (l2, 0, -l2) -> beta-bar = (4/7, 2/7, 1/7) (eq. 11).
TYPED_TEST(WeightsTest, ByHand) {
  using T = TypeParam;
  const double l2 = std::log(2.0);
  host lp(1, 3), lq(1, 3), l0(1, 3), r(1, 3);
  lq << 0, 0, l2;
  l0 << 0, l2, l2;
  r << 0, 0, l2;
  lp << l2, 0, 0;
  const host target =
      io<T>::to_host(brain::target_weights(io<T>::from_host(l0), io<T>::from_host(lq), io<T>::from_host(r)));
  const host log_target =
      io<T>::to_host(brain::log_target_weights(io<T>::from_host(l0), io<T>::from_host(lq), io<T>::from_host(r)));
  const host baseline = io<T>::to_host(brain::baseline_weights(io<T>::from_host(lp), io<T>::from_host(lq)));
  const host log_baseline = io<T>::to_host(brain::log_baseline_weights(io<T>::from_host(lp), io<T>::from_host(lq)));
  const double t[] = {0.2, 0.4, 0.4}, b[] = {4.0 / 7, 2.0 / 7, 1.0 / 7};
  for (index j = 0; j < 3; ++j) {
    EXPECT_NEAR(target(0, j), t[j], 1e-15);
    EXPECT_NEAR(log_target(0, j), std::log(t[j]), 1e-15);
    EXPECT_NEAR(baseline(0, j), b[j], 1e-15);
    EXPECT_NEAR(log_baseline(0, j), std::log(b[j]), 1e-15);
  }
  const host softmax = io<T>::to_host(brain::row_log_softmax(io<T>::from_host(lp)));
  EXPECT_NEAR(softmax(0, 0), std::log(0.5), 1e-15);
}

TYPED_TEST(WeightsTest, ArgmaxPicksTheFirstLargestImportanceWeight) {
  using T = TypeParam;
  host zero = host::Zero(1, 3), l0(1, 3), r(1, 3);
  l0 << 0, -1, 0;
  r << 0, 1, 0;  // log alpha = (0, 0, 0): a tie, the first wins
  const host w = io<T>::to_host(brain::target_weights(io<T>::from_host(l0), io<T>::from_host(zero), io<T>::from_host(r),
                                                      brain::bradley_terry{}, {.target = brain::target_rule::argmax}));
  EXPECT_EQ(w(0, 0), 1.0);
  EXPECT_EQ(w(0, 1) + w(0, 2), 0.0);
}

TYPED_TEST(WeightsTest, RowsAreDistributionsAndMatchTheReference) {
  using T = TypeParam;
  check_property("alpha-bar and beta-bar = reference; rows sum to 1", [] {
    const index prompts = *rc::gen::inRange<index>(1, 5), n = *rc::gen::inRange<index>(1, 12);
    const double beta = *real_in(0.1, 4);
    const host_samples h = random_samples(prompts, n);
    const auto expect = ref::brain_loss_bt(h.log_policy, h.log_proposal, h.log_prior, h.reward, beta);
    const T lq = io<T>::from_host(h.log_proposal);
    const host target = io<T>::to_host(brain::target_weights(
        io<T>::from_host(h.log_prior), lq, io<T>::from_host(h.reward), brain::bradley_terry{.beta = beta}));
    const host baseline = io<T>::to_host(brain::baseline_weights(io<T>::from_host(h.log_policy), lq));
    RC_ASSERT(max_abs_diff(target, expect.target) < 1e-13);
    RC_ASSERT(max_abs_diff(baseline, expect.baseline) < 1e-13);
    RC_ASSERT((target.rowwise().sum().array() - 1).abs().maxCoeff() < 1e-13);
  });
}

TYPED_TEST(WeightsTest, OverflowIsReportedWithItsPosition) {
  using T = TypeParam;
  host lp = host::Zero(2, 2), lq = host::Zero(2, 2);
  lp(0, 1) = 1e308;
  lq(0, 1) = -1e308;
  try {
    brain::baseline_weights(io<T>::from_host(lp), io<T>::from_host(lq));
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("log_baseline_weights: row 0, column 1: log_policy - log_proposal"),
              std::string::npos)
        << e.what();
  }
  host r = host::Zero(2, 2);
  r(1, 1) = 1e308;  // r / beta = +inf
  EXPECT_THROW(brain::target_weights(io<T>::from_host(lq * 0), io<T>::from_host(lq * 0), io<T>::from_host(r),
                                     brain::bradley_terry{.beta = 1e-3}),
               std::invalid_argument);
}

}  // namespace
