// Reductions of §5 (reductions.hpp): regrouping into pairs, argmax weights, the standalone DPO
// loss (with beta and label smoothing) and RSO's rejection sampling.

#include "support/properties.hpp"
#include "support/reference.hpp"

#include <cmath>
#include <random>

namespace {

using namespace brain_test;
using brain::index;

template <class T>
class ReductionTest : public ::testing::Test {};
TYPED_TEST_SUITE(ReductionTest, double_backends, backend_names);

TYPED_TEST(ReductionTest, PairwiseGroupsConsecutiveSamplesOfEachPrompt) {
  using T = TypeParam;
  host m(2, 4);
  m << 0, 1, 2, 3, /**/ 10, 11, 12, 13;
  const auto paired = brain::pairwise(make_samples<T>(m, m, m, m));
  const host r = io<brain::tensor_t<T>>::to_host(paired.reward);
  host expect(4, 2);
  expect << 0, 1, /**/ 2, 3, /**/ 10, 11, /**/ 12, 13;
  EXPECT_EQ(r, expect);
  const auto by_four = brain::regroup(make_samples<T>(m, m, m, m), 4);
  EXPECT_EQ(io<brain::tensor_t<T>>::to_host(by_four.log_prior), m);
}

TYPED_TEST(ReductionTest, ArgmaxTargetPutsAllWeightOnTheFirstBest) {
  using T = TypeParam;
  host zero = host::Zero(2, 3), r(2, 3);
  r << 1, 3, 3, /**/ -1, -2, -5;
  const host w =
      io<T>::to_host(brain::target_weights(io<T>::from_host(zero), io<T>::from_host(zero), io<T>::from_host(r),
                                           brain::bradley_terry{}, {.target = brain::target_rule::argmax}));
  host expect(2, 3);
  expect << 0, 1, 0, /**/ 1, 0, 0;
  EXPECT_EQ(w, expect);
}

// The standalone DPO loss against -log sigmoid written independently, for any beta and label
// smoothing, and its gradient against finite differences.
TYPED_TEST(ReductionTest, DpoLossMatchesTheFormulaAndItsGradient) {
  using T = TypeParam;
  check_property("dpo_loss = -(1-e) log s(b h) - e log s(-b h); gradients by finite differences", [] {
    const index rows = *rc::gen::inRange<index>(1, 4), cols = *rc::gen::inRange<index>(1, 4);
    const double beta = *real_in(0.01, 5.0), eps = *real_in(0.0, 0.5);
    const host cw = random_matrix(rows, cols, -20, 0), cl = random_matrix(rows, cols, -20, 0);
    const host rw = random_matrix(rows, cols, -20, 0), rl = random_matrix(rows, cols, -20, 0);
    const auto loss = [&](const host& chosen, const host& rejected) {
      return brain::dpo_loss(io<T>::from_host(chosen), io<T>::from_host(rejected), io<T>::from_host(rw),
                             io<T>::from_host(rl), {.beta = beta, .label_smoothing = eps});
    };
    const auto out = loss(cw, cl);
    const host per_pair = io<T>::to_host(out.per_pair);
    for (index i = 0; i < rows; ++i)
      for (index j = 0; j < cols; ++j) {
        const double h = beta * ((cw(i, j) - rw(i, j)) - (cl(i, j) - rl(i, j)));
        const double expect = (1 - eps) * ref::dpo_pair_loss(h) + eps * ref::dpo_pair_loss(-h);
        RC_ASSERT(std::abs(per_pair(i, j) - expect) < 1e-12 * std::max(1.0, expect));
      }
    RC_ASSERT(std::abs(io<T>::to_double(out.loss) - per_pair.mean()) < 1e-12);
    const host grad_chosen = io<T>::to_host(out.grad_chosen), grad_rejected = io<T>::to_host(out.grad_rejected);
    const double step = 1e-6;
    for (index i = 0; i < rows; ++i)
      for (index j = 0; j < cols; ++j) {
        host plus = cw, minus = cw;
        plus(i, j) += step, minus(i, j) -= step;
        const double fd = (io<T>::to_double(loss(plus, cl).loss) - io<T>::to_double(loss(minus, cl).loss)) / (2 * step);
        RC_ASSERT(std::abs(grad_chosen(i, j) - fd) < 1e-7 * std::max(1.0, beta));
        RC_ASSERT(grad_rejected(i, j) == -grad_chosen(i, j));
      }
  });
}

TYPED_TEST(ReductionTest, RsoAcceptanceIsTheRewardGapOverBeta) {
  using T = TypeParam;
  host r(1, 3);
  r << 1, 3, 2;
  const host a = io<T>::to_host(brain::rso_log_acceptance(io<T>::from_host(r), 0.5));
  host expect(1, 3);
  expect << -4, 0, -2;
  EXPECT_LT(max_abs_diff(a, expect), 1e-15);
}

// Over many prompts with the same rewards, each sample is accepted with frequency
// exp((r - max r) / beta) when no cap stops the scan.
TYPED_TEST(ReductionTest, RsoSelectAcceptsWithTheStatedProbability) {
  using T = TypeParam;
  const index rows = 20000;
  host r(rows, 4);
  r.rowwise() = Eigen::RowVector4d(0.0, -0.5, -1.0, -3.0);
  std::mt19937_64 rng(12345);
  const auto accepted = brain::rso_select(io<T>::from_host(r), 1.0, 4, rng);
  Eigen::Vector4d count = Eigen::Vector4d::Zero();
  for (const auto& row : accepted)
    for (index j : row) count(j) += 1;
  for (index j = 0; j < 4; ++j) {
    const double p = std::exp(r(0, j)), sd = std::sqrt(p * (1 - p) / rows);
    EXPECT_NEAR(count(j) / rows, p, 5 * sd + 1e-12) << "column " << j;
  }
}

TYPED_TEST(ReductionTest, RsoPairsRankAcceptedSamplesByReward) {
  using T = TypeParam;
  host r(2, 4);
  r << 0.1, 0.9, 0.5, 0.3, /**/ 2, 1, 0, 3;
  const std::vector<std::vector<index>> accepted{{2, 1, 0}, {0, 3, 2, 1}};
  const auto pairs = brain::rso_pairs(io<T>::from_host(r), accepted);
  const std::vector<brain::preference_pair> expect{{0, 1, 2}, {1, 3, 0}, {1, 1, 2}};
  EXPECT_EQ(pairs, expect);
  std::mt19937_64 rng(7);
  for (const auto& row : brain::rso_select(io<T>::from_host(r), 0.1, 2, rng)) EXPECT_LE(row.size(), 2u);
}

}  // namespace
