// brain_loss (loss.hpp): the public entry point, against hand-computed values and the scalar
// reference, on every backend.

#include "support/properties.hpp"
#include "support/reference.hpp"

#include <cmath>
#include <random>
#include <string>
#include <type_traits>

namespace {

using namespace brain_test;

template <class T>
class LossTest : public ::testing::Test {};
TYPED_TEST_SUITE(LossTest, double_backends, backend_names);

// Two samples, q = p = q_theta uniform, rewards (0, log 3): alpha-bar = (1/4, 3/4) (eq. 21),
// beta-bar = (1/2, 1/2) (eq. 11), KL = 1/4 log(1/2) + 3/4 log(3/2).
TYPED_TEST(LossTest, HandComputedTwoSamples) {
  using T = TypeParam;
  host zero = host::Zero(1, 2), r(1, 2);
  r << 0.0, std::log(3.0);
  const auto out = brain::brain_loss(make_samples<T>(zero, zero, zero, r));
  const double kl = 0.25 * std::log(0.5) + 0.75 * std::log(1.5);
  EXPECT_NEAR(io<T>::to_double(out.loss), kl, 1e-15);
  EXPECT_NEAR(io<T>::to_host_vector(out.per_prompt)(0), kl, 1e-15);
  const host target = io<T>::to_host(out.target_weights), baseline = io<T>::to_host(out.baseline_weights);
  const host grad = io<T>::to_host(out.grad_log_policy);
  EXPECT_NEAR(target(0, 0), 0.25, 1e-15);
  EXPECT_NEAR(target(0, 1), 0.75, 1e-15);
  EXPECT_NEAR(baseline(0, 0), 0.5, 1e-15);
  EXPECT_NEAR(grad(0, 0), 0.25, 1e-15);
  EXPECT_NEAR(grad(0, 1), -0.25, 1e-15);
}

// Two prompts of three samples with a non-trivial proposal, prior and policy; every number
// worked out by hand (see the comments), so a sign or normalisation error shows here.
TYPED_TEST(LossTest, HandComputedTwoPromptsWithImportanceWeights) {
  using T = TypeParam;
  const double l2 = std::log(2.0);
  host lp(2, 3), lq(2, 3), l0(2, 3), r(2, 3);
  // Prompt 0: log alpha = r + l0 - lq = (0, l2, 0) - (0, 0, l2) ... spelled out below.
  lq << 0, 0, l2, /**/ 0, 0, 0;
  l0 << 0, l2, l2, /**/ -INFINITY, 0, 0;
  r << 0, 0, l2, /**/ 5, l2, 0;
  lp << l2, 0, 0, /**/ 0, 0, 0;
  // Prompt 0: log alpha = (0, l2, l2); alpha = (1, 2, 2) -> alpha-bar = (1/5, 2/5, 2/5).
  //           log beta = lp - lq = (l2, 0, -l2); beta = (2, 1, 1/2) -> beta-bar = (4/7, 2/7, 1/7).
  // Prompt 1: alpha = (0, 2, 1) (the prior cannot produce sample 0) -> (0, 2/3, 1/3); beta-bar uniform.
  const double kl0 = 0.2 * std::log(0.2 / (4.0 / 7)) + 0.4 * std::log(0.4 / (2.0 / 7)) + 0.4 * std::log(0.4 / (1.0 / 7));
  const double kl1 = (2.0 / 3) * std::log((2.0 / 3) * 3) + (1.0 / 3) * std::log((1.0 / 3) * 3);
  const auto out = brain::brain_loss(make_samples<T>(lp, lq, l0, r));
  EXPECT_NEAR(io<T>::to_double(out.loss), (kl0 + kl1) / 2, 1e-14);
  const host_vector per_prompt = io<T>::to_host_vector(out.per_prompt);
  EXPECT_NEAR(per_prompt(0), kl0, 1e-14);
  EXPECT_NEAR(per_prompt(1), kl1, 1e-14);
  host target(2, 3), baseline(2, 3);
  target << 0.2, 0.4, 0.4, /**/ 0, 2.0 / 3, 1.0 / 3;
  baseline << 4.0 / 7, 2.0 / 7, 1.0 / 7, /**/ 1.0 / 3, 1.0 / 3, 1.0 / 3;
  EXPECT_LT(max_abs_diff(io<T>::to_host(out.target_weights), target), 1e-15);
  EXPECT_EQ(io<T>::to_host(out.target_weights)(1, 0), 0.0);  // exactly zero, not tiny
  EXPECT_LT(max_abs_diff(io<T>::to_host(out.baseline_weights), baseline), 1e-15);
  EXPECT_LT(max_abs_diff(io<T>::to_host(out.grad_log_policy), (baseline - target) / 2), 1e-15);
}

TYPED_TEST(LossTest, GoodnessModelsChangeTheTarget) {
  using T = TypeParam;
  host zero = host::Zero(1, 2), r(1, 2);
  r << 0.0, std::log(3.0);
  const auto s = make_samples<T>(zero, zero, zero, r);
  // beta = 1/2: alpha-bar proportional to (1, 9).
  const host bt = io<T>::to_host(brain::brain_loss(s, brain::bradley_terry{.beta = 0.5}).target_weights);
  EXPECT_NEAR(bt(0, 1), 0.9, 1e-15);
  // Logistic (eq. 15): proportional to sigmoid(r) = (1/2, 3/4).
  const host lg = io<T>::to_host(brain::brain_loss(s, brain::logistic{}).target_weights);
  EXPECT_NEAR(lg(0, 1), 0.6, 1e-15);
  // The public mapping from rewards to log-goodness, element by element.
  const host lg_bt = io<T>::to_host(brain::log_goodness_of(brain::bradley_terry{.beta = 0.5}, io<T>::from_host(r)));
  const host lg_logistic = io<T>::to_host(brain::log_goodness_of(brain::logistic{}, io<T>::from_host(r)));
  EXPECT_NEAR(lg_bt(0, 1), 2 * std::log(3.0), 1e-15);
  EXPECT_NEAR(lg_logistic(0, 1), std::log(0.75), 1e-15);
  EXPECT_THROW(brain::log_goodness_of(brain::bradley_terry{.beta = -1}, io<T>::from_host(r)), std::invalid_argument);
  // Rewards that are log-goodness already: as Bradley–Terry with beta = 1.
  const host direct = io<T>::to_host(brain::brain_loss(s, brain::log_goodness{}).target_weights);
  EXPECT_NEAR(direct(0, 1), 0.75, 1e-15);
}

TYPED_TEST(LossTest, MatchesScalarReferenceOnRandomBatches) {
  using T = TypeParam;
  check_property("brain_loss equals the scalar reference", [] {
    const auto prompts = *rc::gen::inRange<brain::index>(1, 6);
    const auto n = *rc::gen::inRange<brain::index>(1, 9);
    const double beta = *real_in(0.05, 4.0);
    const host_samples h = random_samples(prompts, n);
    const auto out = brain::brain_loss(h.as<T>(), brain::bradley_terry{.beta = beta});
    const auto expect = ref::brain_loss_bt(h.log_policy, h.log_proposal, h.log_prior, h.reward, beta);
    RC_ASSERT(std::abs(io<T>::to_double(out.loss) - expect.loss) < 1e-12);
    RC_ASSERT((io<T>::to_host_vector(out.per_prompt) - expect.per_prompt).cwiseAbs().maxCoeff() < 1e-12);
    RC_ASSERT(max_abs_diff(io<T>::to_host(out.target_weights), expect.target) < 1e-12);
    RC_ASSERT(max_abs_diff(io<T>::to_host(out.baseline_weights), expect.baseline) < 1e-12);
    RC_ASSERT(max_abs_diff(io<T>::to_host(out.grad_log_policy), expect.grad) < 1e-12);
  });
}

TYPED_TEST(LossTest, WeightsAreDistributionsAndGradientRowsSumToZero) {
  using T = TypeParam;
  check_property("rows of alpha-bar and beta-bar sum to 1, gradient rows to 0", [] {
    const host_samples h = random_samples(*rc::gen::inRange<brain::index>(1, 5), *rc::gen::inRange<brain::index>(1, 17));
    const auto out = brain::brain_loss(h.as<T>());
    const host target = io<T>::to_host(out.target_weights), baseline = io<T>::to_host(out.baseline_weights);
    RC_ASSERT((target.rowwise().sum().array() - 1).abs().maxCoeff() < 1e-12);
    RC_ASSERT((baseline.rowwise().sum().array() - 1).abs().maxCoeff() < 1e-12);
    RC_ASSERT(target.minCoeff() >= 0.0);
    RC_ASSERT(io<T>::to_host(out.grad_log_policy).rowwise().sum().cwiseAbs().maxCoeff() < 1e-14);
  });
}

TYPED_TEST(LossTest, ExtremeButLegalInputsStayFinite) {
  using T = TypeParam;
  host lp(2, 3), lq(2, 3), l0(2, 3), r(2, 3);
  lp << -1e5, -2, -1e5 + 3, /**/ -1, -1e5, -7;
  lq << -3, -1e5, -4, /**/ -1e5, -2, -1e5;
  l0 << -INFINITY, -1e5, -2, /**/ -1, -INFINITY, -1e5;
  r << 1e6, -1e6, 0, /**/ -1e6, 1e6, 1e6;
  for (const auto& out : {brain::brain_loss(make_samples<T>(lp, lq, l0, r)),
                          brain::brain_loss(make_samples<T>(lp, lq, l0, r), brain::bradley_terry{.beta = 0.01}),
                          brain::brain_loss(make_samples<T>(lp, lq, l0, r), brain::logistic{})}) {
    EXPECT_TRUE(std::isfinite(io<T>::to_double(out.loss)));
    EXPECT_TRUE(io<T>::to_host(out.target_weights).allFinite());
    EXPECT_TRUE(io<T>::to_host(out.baseline_weights).allFinite());
    EXPECT_TRUE(io<T>::to_host(out.grad_log_policy).allFinite());
    EXPECT_EQ(io<T>::to_host(out.target_weights)(0, 0), 0.0);  // -inf prior: zero weight
  }
}

TEST(LossApi, EigenResultTypesAreThoseOfTheIssue) {
  using out_t = decltype(brain::brain_loss(std::declval<brain::samples<Eigen::MatrixXd>>()));
  static_assert(std::is_same_v<decltype(out_t::loss), double>);
  static_assert(std::is_same_v<decltype(out_t::per_prompt), Eigen::VectorXd>);
  static_assert(std::is_same_v<decltype(out_t::target_weights), Eigen::MatrixXd>);
  using array_out_t = decltype(brain::brain_loss(std::declval<brain::samples<Eigen::ArrayXXd>>()));
  static_assert(std::is_same_v<decltype(array_out_t::grad_log_policy), Eigen::ArrayXXd>);
  using float_out_t = decltype(brain::brain_loss(std::declval<brain::samples<Eigen::MatrixXf>>()));
  static_assert(std::is_same_v<decltype(float_out_t::loss), float>);
  // Views of existing memory are accepted and give plain results.
  using map_out_t = decltype(brain::brain_loss(std::declval<brain::samples<Eigen::Map<const Eigen::MatrixXd>>>()));
  static_assert(std::is_same_v<decltype(map_out_t::baseline_weights), Eigen::MatrixXd>);
}

TEST(LossApi, MapsOfExistingBuffersGiveTheSameResult) {
  std::vector<double> lp{-1, -2, -3, -4}, lq{-2, -2, -1, -4}, l0{-1, -1, -1, -1}, r{0.5, -0.5, 2, 1};
  using map = Eigen::Map<const Eigen::MatrixXd>;
  const brain::samples<map> s{.log_policy = map(lp.data(), 2, 2), .log_proposal = map(lq.data(), 2, 2),
                              .log_prior = map(l0.data(), 2, 2), .reward = map(r.data(), 2, 2)};
  const auto out = brain::brain_loss(s);
  const auto expect = ref::brain_loss_bt(s.log_policy, s.log_proposal, s.log_prior, s.reward);
  EXPECT_NEAR(out.loss, expect.loss, 1e-15);
  EXPECT_LT(max_abs_diff(out.grad_log_policy, expect.grad), 1e-15);
}

TEST(LossApi, FloatAgreesWithDoubleToFloatPrecision) {
  rc::check("float Eigen matches double within 1e-5", [] {
    const host_samples h = random_samples(*rc::gen::inRange<brain::index>(1, 8), *rc::gen::inRange<brain::index>(2, 33));
    const auto d = brain::brain_loss(h.as<Eigen::MatrixXd>());
    const brain::samples<Eigen::MatrixXf> sf{h.log_policy.cast<float>(), h.log_proposal.cast<float>(),
                                              h.log_prior.cast<float>(), h.reward.cast<float>()};
    const auto f = brain::brain_loss(sf);
    RC_ASSERT(std::abs(double(f.loss) - d.loss) < 1e-5 * std::max(1.0, d.loss));
    RC_ASSERT(max_abs_diff(f.target_weights.cast<double>(), d.target_weights) < 1e-5);
    RC_ASSERT(max_abs_diff(f.grad_log_policy.cast<double>(), d.grad_log_policy) < 1e-5);
  });
}

// Large batches are computed tile by tile on backends with row blocks (Eigen): the result equals
// the reference, reused output tensors are overwritten, and errors name the row in the whole batch.
TYPED_TEST(LossTest, LargeBatchesAreComputedCorrectlyAndReportAbsoluteRows) {
  using T = TypeParam;
  const brain::index prompts = 1999, n = 24;  // several tiles, the last one partial
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> logp(-40, 0), reward(-4, 4);
  host_samples h{host(prompts, n), host(prompts, n), host(prompts, n), host(prompts, n)};
  for (host* m : {&h.log_policy, &h.log_proposal, &h.log_prior})
    for (double& v : m->reshaped()) v = logp(rng);
  for (double& v : h.reward.reshaped()) v = reward(rng);
  h.log_prior(1500, 3) = -INFINITY;
  const auto expect = ref::brain_loss_bt(h.log_policy, h.log_proposal, h.log_prior, h.reward, 0.7);
  brain::loss_result<T> out;
  for (int pass = 0; pass < 2; ++pass) {  // the second pass writes into the first pass's tensors
    brain::brain_loss_into(out, h.as<T>(), brain::bradley_terry{.beta = 0.7});
    EXPECT_NEAR(io<T>::to_double(out.loss), expect.loss, 1e-12);
    EXPECT_LT((io<T>::to_host_vector(out.per_prompt) - expect.per_prompt).cwiseAbs().maxCoeff(), 1e-12);
    EXPECT_LT(max_abs_diff(io<T>::to_host(out.target_weights), expect.target), 1e-12);
    EXPECT_LT(max_abs_diff(io<T>::to_host(out.baseline_weights), expect.baseline), 1e-12);
    EXPECT_LT(max_abs_diff(io<T>::to_host(out.grad_log_policy), expect.grad), 1e-12);
  }
  host_samples bad = h;
  bad.reward(1900, 7) = NAN;
  EXPECT_THROW(
      try { brain::brain_loss(bad.as<T>()); } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("reward[1900, 7]"), std::string::npos) << e.what();
        throw;
      },
      std::invalid_argument);
  bad = h;
  bad.log_prior.row(1800).setConstant(-INFINITY);
  EXPECT_THROW(
      try { brain::brain_loss(bad.as<T>()); } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("row 1800"), std::string::npos) << e.what();
        throw;
      },
      std::invalid_argument);
}

TYPED_TEST(LossTest, ValidationOffGivesTheSameResultOnGoodInput) {
  using T = TypeParam;
  host_samples h{host::Random(3, 4).array() - 2, host::Random(3, 4).array() - 2, host::Random(3, 4).array() - 2,
                 host::Random(3, 4)};
  const auto on = brain::brain_loss(h.as<T>());
  const auto off = brain::brain_loss(h.as<T>(), brain::bradley_terry{}, {.validate = false});
  EXPECT_EQ(io<T>::to_double(on.loss), io<T>::to_double(off.loss));
  EXPECT_EQ(io<T>::to_host(on.grad_log_policy), io<T>::to_host(off.grad_log_policy));
}

}  // namespace
