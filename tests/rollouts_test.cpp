// Samples from an inference engine (rollouts.hpp): the sample mask (a masked batch computes what
// the dense batch without those samples computes, on every backend and estimator), skipped and
// uninformative groups, the sampler correction (none, truncated, masked) against its definition,
// the mismatch diagnostics by hand, and the correction's expectation by exact enumeration.

#include "support/properties.hpp"

#include <brain/loss.hpp>

#include <cmath>
#include <string>
#include <vector>

namespace {

using namespace brain_test;
using brain::estimator;
using brain::index;

template <class T>
class RolloutsTest : public ::testing::Test {};
TYPED_TEST_SUITE(RolloutsTest, double_backends, backend_names);

constexpr estimator every_estimator[] = {estimator::brain, estimator::no_baseline, estimator::gdc_pp,  estimator::dpg,
                                         estimator::rloo,  estimator::grpo,        estimator::ppo_clip};

/// Backends whose dropped positions may hold NaN (they have zero_unless); others need finite values.
template <class T>
constexpr bool reads_no_dropped_value =
    requires(const brain::tensor_t<T>& a) { brain::backend_traits<T>::zero_unless(a, a); };

template <class T>
brain::samples<T> with_members(const host_samples& h, const host* mask, const host* log_sampler) {
  brain::samples<T> s = h.as<T>();
  if (mask) s.mask = tensor_from_host<T>(*mask);
  if (log_sampler) s.log_sampler = tensor_from_host<T>(*log_sampler);
  return s;
}

template <class T>
host coefficients(const brain::samples<T>& s, estimator kind, const brain::policy_gradient_options& pg = {},
                  const brain::options& opt = {}) {
  return io<T>::to_host(brain::gradient_coefficients(s, kind, brain::bradley_terry{}, pg, opt));
}

/// max |a - b| relative to the size of b (importance ratios here reach e^30).
double relative_diff(const host& a, const host& b) {
  return max_abs_diff(a, b) / std::max(1.0, b.cwiseAbs().maxCoeff());
}

/// Row i of m without column `drop[i]`.
host without(const host& m, const std::vector<index>& drop) {
  host out(m.rows(), m.cols() - 1);
  for (index i = 0; i < m.rows(); ++i)
    for (index j = 0, k = 0; j < m.cols(); ++j)
      if (j != drop[std::size_t(i)]) out(i, k++) = m(i, j);
  return out;
}

/// The kept entries of a masked result against the dense result, and 0 at the dropped ones.
void expect_masked_equals_dense(const host& masked, const host& dense, const std::vector<index>& drop,
                                const std::string& what) {
  const double scale = std::max(1.0, dense.cwiseAbs().maxCoeff());
  EXPECT_LT(relative_diff(without(masked, drop), dense), 1e-10 * scale) << what;
  for (index i = 0; i < masked.rows(); ++i) EXPECT_EQ(masked(i, drop[std::size_t(i)]), 0.0) << what << " row " << i;
}

// The property of item 3: one sample dropped per prompt (its reward NaN where the backend never
// reads it) gives, on every estimator and on brain_loss, exactly the dense batch without it.
TYPED_TEST(RolloutsTest, AMaskedBatchEqualsTheDenseBatchWithoutThoseSamples) {
  using T = TypeParam;
  check_property("masked == dense without the dropped samples", [] {
    const index prompts = *rc::gen::inRange<index>(1, 4), n = *rc::gen::inRange<index>(3, 6);
    const host_samples h = random_samples(prompts, n);
    std::vector<index> drop;
    host mask = host::Ones(prompts, n);
    host_samples holes = h;
    for (index i = 0; i < prompts; ++i) {
      drop.push_back(*rc::gen::inRange<index>(0, n));
      mask(i, drop.back()) = 0.0;
      if constexpr (reads_no_dropped_value<T>) holes.reward(i, drop.back()) = NAN;
    }
    const host_samples dense{without(h.log_policy, drop), without(h.log_proposal, drop), without(h.log_prior, drop),
                             without(h.reward, drop)};
    const brain::samples<T> masked = with_members<T>(holes, &mask, nullptr);
    for (const estimator kind : every_estimator)
      for (const auto scaling : {brain::advantage_scaling::group, brain::advantage_scaling::batch}) {
        if (kind != estimator::grpo && scaling == brain::advantage_scaling::batch) continue;
        if ((kind == estimator::rloo || kind == estimator::grpo) && n - 1 < 2) continue;
        const brain::policy_gradient_options pg{.kl_coef = 0.1, .scale_rewards = scaling};
        expect_masked_equals_dense(coefficients<T>(masked, kind, pg), coefficients<T>(dense.as<T>(), kind, pg), drop,
                                   std::string(brain::name_of(kind)));
      }
    const auto m = brain::brain_loss(masked);
    const auto d = brain::brain_loss(dense.as<T>());
    expect_masked_equals_dense(io<T>::to_host(m.grad_log_policy), io<T>::to_host(d.grad_log_policy), drop,
                               "brain_loss");
    expect_masked_equals_dense(io<T>::to_host(m.target_weights), io<T>::to_host(d.target_weights), drop, "targets");
    EXPECT_NEAR(io<T>::to_double(m.loss), io<T>::to_double(d.loss), 1e-10 * std::max(1.0, io<T>::to_double(d.loss)));
  });
}

// Groups of different sizes after filtering: each row equals its own dense group.
TYPED_TEST(RolloutsTest, RaggedGroupsEachEqualTheirOwnDenseGroup) {
  using T = TypeParam;
  const host_samples h = random_samples_host(3, 5, 7);
  host mask(3, 5);
  mask << 1, 1, 1, 1, 1,  //
      1, 0, 1, 0, 1,      // three kept
      0, 1, 1, 0, 0;      // two kept
  for (const estimator kind : {estimator::brain, estimator::no_baseline, estimator::gdc_pp, estimator::dpg,
                               estimator::rloo, estimator::grpo}) {
    const host w = coefficients<T>(with_members<T>(h, &mask, nullptr), kind);
    for (index i = 0; i < 3; ++i) {
      std::vector<index> kept;
      for (index j = 0; j < 5; ++j)
        if (mask(i, j) == 1.0) kept.push_back(j);
      const auto pick = [&](const host& m) {
        host row(1, index(kept.size()));
        for (std::size_t k = 0; k < kept.size(); ++k) row(0, index(k)) = m(i, kept[k]);
        return row;
      };
      const host_samples one{pick(h.log_policy), pick(h.log_proposal), pick(h.log_prior), pick(h.reward)};
      const host want = coefficients<T>(one.as<T>(), kind);
      EXPECT_LT(relative_diff(pick(w), want), 1e-12) << brain::name_of(kind) << " row " << i;
    }
  }
}

TYPED_TEST(RolloutsTest, GroupsWithTooFewSamplesAreSkippedAndCounted) {
  using T = TypeParam;
  const host_samples h = random_samples_host(3, 3, 11);
  host mask(3, 3);
  mask << 1, 1, 1, 0, 1, 0, 0, 0, 0;  // row 1 keeps one sample, row 2 none
  const brain::samples<T> s = with_members<T>(h, &mask, nullptr);
  // rloo needs two samples: rows 1 and 2 skipped; BRAIn needs one: row 2 only.
  const host rloo = coefficients<T>(s, estimator::rloo);
  EXPECT_EQ(rloo.bottomRows(2).cwiseAbs().maxCoeff(), 0.0);
  EXPECT_GT(rloo.row(0).cwiseAbs().maxCoeff(), 0.0);
  EXPECT_EQ(brain::rollout_report(s, estimator::rloo).skipped_groups, 2);
  const auto report = brain::rollout_report(s, estimator::brain);
  EXPECT_EQ(report.skipped_groups, 1);
  EXPECT_EQ(report.used_groups, 2);
  EXPECT_EQ(report.masked_samples, 5);
  // brain_loss averages over the used groups: rows 0 and 1 as a dense batch of two.
  const auto masked = brain::brain_loss(s);
  const auto row0 = brain::brain_loss(
      host_samples{h.log_policy.topRows(1), h.log_proposal.topRows(1), h.log_prior.topRows(1), h.reward.topRows(1)}
          .as<T>());
  // Row 1 keeps one sample: alpha-bar = beta-bar = 1, KL 0, gradient 0.
  EXPECT_NEAR(io<T>::to_double(masked.loss), io<T>::to_double(row0.loss) / 2.0, 1e-12);
  const host grad = io<T>::to_host(masked.grad_log_policy);
  EXPECT_LT(relative_diff(grad.topRows(1), io<T>::to_host(row0.grad_log_policy) / 2.0), 1e-12);
  EXPECT_EQ(grad.bottomRows(2).cwiseAbs().maxCoeff(), 0.0);
  EXPECT_FALSE(std::isnan(io<T>::to_double(masked.loss)));
  // ppo_clip whitens over the batch: one kept sample in the whole batch skips every group (its
  // variance would divide by 0).
  host one = host::Zero(3, 3);
  one(0, 1) = 1.0;
  const brain::samples<T> single = with_members<T>(h, &one, nullptr);
  EXPECT_EQ(coefficients<T>(single, estimator::ppo_clip).cwiseAbs().maxCoeff(), 0.0);
  EXPECT_EQ(brain::rollout_report(single, estimator::ppo_clip).skipped_groups, 3);
}

TYPED_TEST(RolloutsTest, UninformativeGroupsAreKeptOrDropped) {
  using T = TypeParam;
  host_samples h = random_samples_host(2, 4, 13);
  h.reward.row(1).setConstant(0.5);  // no reward signal in group 1
  const brain::samples<T> s = h.as<T>();
  // Kept: BRAIn still pulls group 1 towards the prior (alpha-bar = p/q normalised != beta-bar).
  EXPECT_GT(coefficients<T>(s, estimator::brain).row(1).cwiseAbs().maxCoeff(), 1e-6);
  EXPECT_EQ(brain::rollout_report(s, estimator::brain).uninformative_groups, 1);
  brain::options drop;
  drop.uninformative = brain::uninformative_groups::drop;
  const host w = coefficients<T>(s, estimator::brain, {}, drop);
  EXPECT_EQ(w.row(1).cwiseAbs().maxCoeff(), 0.0);
  EXPECT_LT(relative_diff(w.row(0), coefficients<T>(s, estimator::brain).row(0)), 1e-15);
  EXPECT_EQ(brain::rollout_report(s, estimator::brain, drop).used_groups, 1);
  // brain_loss's mean is over the one group left.
  const host_samples first{h.log_policy.topRows(1), h.log_proposal.topRows(1), h.log_prior.topRows(1),
                           h.reward.topRows(1)};
  EXPECT_NEAR(io<T>::to_double(brain::brain_loss(s, brain::bradley_terry{}, drop).loss),
              io<T>::to_double(brain::brain_loss(first.as<T>()).loss), 1e-12);
}

TYPED_TEST(RolloutsTest, BadMasksAndSamplerLogProbsAreNamed) {
  using T = TypeParam;
  const host_samples h = random_samples_host(2, 3, 17);
  host mask = host::Ones(2, 3);
  mask(1, 2) = 0.5;
  EXPECT_NE(
      error_message([&] { (void)brain::brain_loss(with_members<T>(h, &mask, nullptr)); }).find("mask[1, 2] = 0.5"),
      std::string::npos);
  mask(1, 2) = NAN;
  EXPECT_NE(error_message([&] { (void)brain::brain_loss(with_members<T>(h, &mask, nullptr)); }).find("mask"),
            std::string::npos);
  const host wide = host::Ones(2, 4);
  EXPECT_NE(
      error_message([&] { (void)coefficients<T>(with_members<T>(h, &wide, nullptr), estimator::rloo); }).find("mask"),
      std::string::npos);
  host sampler = h.log_proposal;
  sampler(0, 1) = INFINITY;
  EXPECT_NE(
      error_message([&] { (void)brain::brain_loss(with_members<T>(h, nullptr, &sampler)); }).find("log_sampler[0, 1]"),
      std::string::npos);
  brain::options bad;
  bad.sampler.upper = 0.5;
  EXPECT_NE(error_message([&] {
              (void)brain::brain_loss(with_members<T>(h, nullptr, &h.log_proposal), {}, bad);
            }).find("upper = 0.5"),
            std::string::npos);
}

/// Samples whose sampler differs from the trainer's recomputation by up to `spread` nats.
host sampler_of(const host_samples& h, double spread, unsigned seed) {
  return h.log_proposal +
         ((random_matrix_host(h.log_proposal.rows(), h.log_proposal.cols(), seed).array() - 0.5) * (2 * spread))
             .matrix();
}

TYPED_TEST(RolloutsTest, TheSamplerCorrectionIsItsDefinition) {
  using T = TypeParam;
  const host_samples h = random_samples_host(3, 4, 19);
  const host mu = sampler_of(h, 2.0, 23);
  brain::options exact;
  exact.sampler = {.correction = brain::sampler_correction::truncate, .lower = 0.0, .upper = INFINITY};
  // A matched sampler changes nothing, under every correction.
  for (const auto c :
       {brain::sampler_correction::none, brain::sampler_correction::truncate, brain::sampler_correction::mask}) {
    brain::options o;
    o.sampler.correction = c;
    for (const estimator kind : every_estimator)
      EXPECT_LT(relative_diff(coefficients<T>(with_members<T>(h, nullptr, &h.log_proposal), kind, {}, o),
                              coefficients<T>(h.as<T>(), kind)),
                1e-12)
          << brain::name_of(kind);
  }
  // The exact correction (no bounds) of the distillation estimators and rloo is the samples read
  // as drawn from mu: log_proposal replaced by log_sampler.
  const host_samples from_mu{h.log_policy, mu, h.log_prior, h.reward};
  for (const estimator kind :
       {estimator::brain, estimator::no_baseline, estimator::gdc_pp, estimator::dpg, estimator::rloo})
    EXPECT_LT(relative_diff(coefficients<T>(with_members<T>(h, nullptr, &mu), kind, {}, exact),
                            coefficients<T>(from_mu.as<T>(), kind)),
              1e-12)
        << brain::name_of(kind);
  // Truncation: the exact correction of a sampler moved so every ratio q / mu lies in the bounds.
  brain::options tis;
  tis.sampler = {.correction = brain::sampler_correction::truncate, .lower = 0.5, .upper = 2.0};
  host clipped_mu = mu;
  for (index i = 0; i < mu.size(); ++i) {
    const double log_ratio = std::clamp(h.log_proposal(i) - mu(i), std::log(0.5), std::log(2.0));
    clipped_mu(i) = h.log_proposal(i) - log_ratio;
  }
  ASSERT_GT((clipped_mu - mu).cwiseAbs().maxCoeff(), 0.1);  // some ratios were outside the bounds
  for (const estimator kind : every_estimator)
    EXPECT_LT(relative_diff(coefficients<T>(with_members<T>(h, nullptr, &mu), kind, {}, tis),
                            coefficients<T>(with_members<T>(h, nullptr, &clipped_mu), kind, {}, exact)),
              1e-12)
        << brain::name_of(kind);
  // Masking: for the self-normalised estimators, the exact correction with those samples dropped.
  brain::options mis;
  mis.sampler = {.correction = brain::sampler_correction::mask, .lower = 0.5, .upper = 2.0};
  host outside = host::Ones(3, 4);
  for (index i = 0; i < mu.size(); ++i)
    if (clipped_mu(i) != mu(i)) outside(i) = 0.0;
  for (const estimator kind : {estimator::brain, estimator::no_baseline})
    EXPECT_LT(relative_diff(coefficients<T>(with_members<T>(h, nullptr, &mu), kind, {}, mis),
                            coefficients<T>(with_members<T>(h, &outside, &mu), kind, {}, exact)),
              1e-12)
        << brain::name_of(kind);
}

TYPED_TEST(RolloutsTest, MismatchDiagnosticsByHand) {
  using T = TypeParam;
  host_samples h = random_samples_host(1, 4, 29);
  host mu = h.log_proposal;
  const double d[] = {0.1, -0.2, 1.5, -3.0};  // log q - log mu per sample
  for (index j = 0; j < 4; ++j) mu(0, j) -= d[j];
  host mask(1, 4);
  mask << 1, 1, 1, 0;  // the last sample is not counted
  brain::options o;
  o.sampler = {.correction = brain::sampler_correction::truncate, .lower = 0.0, .upper = 3.0};
  const auto r = brain::rollout_report(with_members<T>(h, &mask, &mu), estimator::brain, o);
  const double k3 = ((std::exp(0.1) - 1 - 0.1) + (std::exp(-0.2) - 1 + 0.2) + (std::exp(1.5) - 1 - 1.5)) / 3;
  EXPECT_NEAR(r.mean_abs_log_ratio, (0.1 + 0.2 + 1.5) / 3, 1e-12);
  EXPECT_NEAR(r.max_abs_log_ratio, 1.5, 1e-12);
  EXPECT_NEAR(r.kl_k3, k3, 1e-12);
  EXPECT_NEAR(r.min_ratio, std::exp(-0.2), 1e-12);
  EXPECT_NEAR(r.max_ratio, std::exp(1.5), 1e-12);
  EXPECT_NEAR(r.mean_ratio, (std::exp(0.1) + std::exp(-0.2) + std::exp(1.5)) / 3, 1e-12);
  EXPECT_NEAR(r.share_truncated, 1.0 / 3, 1e-12);  // exp(1.5) = 4.48 > 3
  EXPECT_EQ(r.share_masked, 0.0);
  EXPECT_EQ(r.masked_samples, 1);
}

// Item 1's exact statement, on 3 outcomes: a batch holding every n-tuple of outcomes, each
// weighted by its probability, gives the estimator's exact expected gradient (in softmax logits). Drawn
// from a sampler mu != q, the corrected estimator's expectation equals the uncorrected one's under
// a matched sampler (q drew them) for the estimators linear in each sample (rloo, dpg and gdc_pp
// with the exact normaliser); the uncorrected one does not. The self-normalised BRAIn is
// consistent, not unbiased: corrected, its expectation approaches the n = infinity gradient
// posterior - q_theta as n grows; uncorrected, it stays away.
struct enumeration {
  Eigen::Vector3d q{0.5, 0.3, 0.2}, mu{0.2, 0.3, 0.5}, q_theta{0.4, 0.4, 0.2}, p{0.3, 0.3, 0.4}, r{1.0, 0.0, 2.0};
  host_samples batch;
  host sampler;
  Eigen::VectorXd weight_mu, weight_q;  // tuple probabilities
  std::vector<std::vector<int>> tuples;

  explicit enumeration(int n) {
    const int count = int(std::pow(3, n));
    batch = {host(count, n), host(count, n), host(count, n), host(count, n)};
    sampler = host(count, n);
    weight_mu = weight_q = Eigen::VectorXd::Ones(count);
    for (int t = 0; t < count; ++t) {
      std::vector<int> y;
      for (int i = 0, code = t; i < n; ++i, code /= 3) {
        const int k = code % 3;
        y.push_back(k);
        batch.log_policy(t, i) = std::log(q_theta[k]);
        batch.log_proposal(t, i) = std::log(q[k]);
        batch.log_prior(t, i) = std::log(p[k]);
        batch.reward(t, i) = r[k];
        sampler(t, i) = std::log(mu[k]);
        weight_mu[t] *= mu[k];
        weight_q[t] *= q[k];
      }
      tuples.push_back(y);
    }
  }
  /// The expected ascent direction in softmax logits theta (q_theta = softmax(theta), so
  /// grad log q_theta(y) = e_y - q_theta): with m = E[sum_i w_i e_{y_i}] (coefficients w of the
  /// tuples, tuple probabilities `weight`), m - q_theta sum(m).
  Eigen::Vector3d expectation(const host& w, const Eigen::VectorXd& weight) const {
    Eigen::Vector3d m = Eigen::Vector3d::Zero();
    for (std::size_t t = 0; t < tuples.size(); ++t)
      for (std::size_t i = 0; i < tuples[t].size(); ++i) m[tuples[t][i]] += weight[index(t)] * w(index(t), index(i));
    return m - q_theta * m.sum();
  }
  /// log Z = log sum_y p(y) g(y) for each tuple (Bradley-Terry, beta = 1: g = exp(r), eq. 21).
  host log_partition() const {
    double z = 0;
    for (int k = 0; k < 3; ++k) z += p[k] * std::exp(r[k]);
    return host::Constant(batch.log_policy.rows(), 1, std::log(z));
  }
};

TEST(RolloutsExact, TheCorrectedEstimatorUnderAMismatchedSamplerHasTheMatchedExpectation) {
  using T = Eigen::MatrixXd;
  brain::options exact;
  exact.sampler = {.correction = brain::sampler_correction::truncate, .lower = 0.0, .upper = INFINITY};
  for (const int n : {2, 3, 4}) {
    const enumeration e(n);
    const brain::samples<T> matched = e.batch.as<T>();
    brain::samples<T> drawn_from_mu = e.batch.as<T>();
    drawn_from_mu.log_sampler = e.sampler;
    const host log_z = e.log_partition();
    const auto coefficients_of = [&](const brain::samples<T>& s, estimator kind, const brain::options& o) {
      if (kind == estimator::rloo)
        return brain::gradient_coefficients(s, kind, brain::bradley_terry{}, brain::policy_gradient_options{}, o);
      return brain::gradient_coefficients(s, kind, brain::bradley_terry{}, log_z, o);
    };
    for (const estimator kind : {estimator::rloo, estimator::dpg, estimator::gdc_pp}) {
      const Eigen::Vector3d want = e.expectation(coefficients_of(matched, kind, {}), e.weight_q);
      const Eigen::Vector3d corrected = e.expectation(coefficients_of(drawn_from_mu, kind, exact), e.weight_mu);
      brain::options none;
      none.sampler.correction = brain::sampler_correction::none;
      const Eigen::Vector3d uncorrected = e.expectation(coefficients_of(drawn_from_mu, kind, none), e.weight_mu);
      EXPECT_LT((corrected - want).cwiseAbs().maxCoeff(), 1e-14) << brain::name_of(kind) << " n = " << n;
      EXPECT_GT((uncorrected - want).cwiseAbs().maxCoeff(), 1e-2) << brain::name_of(kind) << " n = " << n;
    }
  }
}

TEST(RolloutsExact, CorrectedBrainApproachesItsLimitAndUncorrectedDoesNot) {
  using T = Eigen::MatrixXd;
  brain::options exact, none;
  exact.sampler = {.correction = brain::sampler_correction::truncate, .lower = 0.0, .upper = INFINITY};
  none.sampler.correction = brain::sampler_correction::none;
  const enumeration e1(1);
  // The n = infinity gradient alpha-bar - beta-bar -> posterior - q_theta (posterior = p g / Z,
  // Bradley-Terry g = exp(r)); uncorrected, the weights tend to mu p g / q and mu q_theta / q
  // normalised instead.
  const Eigen::Vector3d ratio = e1.mu.cwiseQuotient(e1.q);
  Eigen::Vector3d pg;
  for (int k = 0; k < 3; ++k) pg[k] = e1.p[k] * std::exp(e1.r[k]);
  const Eigen::Vector3d limit = pg / pg.sum() - e1.q_theta;
  const Eigen::Vector3d wrong_target = pg.cwiseProduct(ratio), wrong_baseline = e1.q_theta.cwiseProduct(ratio);
  const double wrong_limit_error =
      (wrong_target / wrong_target.sum() - wrong_baseline / wrong_baseline.sum() - limit).cwiseAbs().maxCoeff();
  std::vector<double> corrected_error, uncorrected_error;
  for (const int n : {2, 4, 8}) {
    const enumeration e(n);
    brain::samples<T> s = e.batch.as<T>();
    s.log_sampler = e.sampler;
    const auto error = [&](const brain::options& o) {
      const host w = brain::gradient_coefficients(s, estimator::brain, brain::bradley_terry{}, o);
      return (e.expectation(w, e.weight_mu) - limit).cwiseAbs().maxCoeff();
    };
    corrected_error.push_back(error(exact));
    uncorrected_error.push_back(error(none));
  }
  // Computed with an independent enumeration in Python: corrected 0.254, 0.107, 0.047 (bias about
  // 0.37 / n); uncorrected 0.305, 0.157, 0.103, above its limit 0.0895.
  EXPECT_LT(corrected_error[2], corrected_error[0] / 4.0);
  EXPECT_GT(wrong_limit_error, 0.08);
  for (const double u : uncorrected_error) EXPECT_GT(u, wrong_limit_error);
  EXPECT_LT(corrected_error[2], 0.6 * wrong_limit_error);  // below anything the uncorrected one reaches
}

}  // namespace
