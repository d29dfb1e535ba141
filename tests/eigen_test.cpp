// What only the Eigen backend (backends/eigen.hpp) has: its result types, views of existing
// memory (Map, Ref) as inputs, float precision, and integer types rejected.

#include "support/properties.hpp"
#include "support/reference.hpp"

#include <cmath>
#include <type_traits>
#include <vector>

namespace {

using namespace brain_test;

static_assert(brain::Backend<Eigen::MatrixXd>);
static_assert(brain::Backend<Eigen::MatrixXf>);
static_assert(brain::Backend<Eigen::ArrayXXd>);
static_assert(brain::Backend<row_major>);
static_assert(brain::Backend<Eigen::Map<const Eigen::MatrixXd>>);
static_assert(brain::Backend<Eigen::Ref<const Eigen::MatrixXd>>);
static_assert(!brain::Backend<Eigen::MatrixXi>);  // integer tensors hold no log-probabilities
static_assert(std::is_same_v<brain::tensor_t<Eigen::Map<const Eigen::MatrixXd>>, Eigen::MatrixXd>);

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
  const brain::samples<map> s{.log_policy = map(lp.data(), 2, 2),
                              .log_proposal = map(lq.data(), 2, 2),
                              .log_prior = map(l0.data(), 2, 2),
                              .reward = map(r.data(), 2, 2)};
  const auto out = brain::brain_loss(s);
  const auto expect = ref::brain_loss_bt(s.log_policy, s.log_proposal, s.log_prior, s.reward);
  EXPECT_NEAR(out.loss, expect.loss, 1e-15);
  EXPECT_LT(max_abs_diff(out.grad_log_policy, expect.grad), 1e-15);
}

TEST(LossApi, FloatAgreesWithDoubleToFloatPrecision) {
  rc::check("float Eigen matches double within 1e-5", [] {
    const host_samples h =
        random_samples(*rc::gen::inRange<brain::index>(1, 8), *rc::gen::inRange<brain::index>(2, 33));
    const auto d = brain::brain_loss(h.as<Eigen::MatrixXd>());
    const brain::samples<Eigen::MatrixXf> sf{h.log_policy.cast<float>(), h.log_proposal.cast<float>(),
                                             h.log_prior.cast<float>(), h.reward.cast<float>()};
    const auto f = brain::brain_loss(sf);
    RC_ASSERT(std::abs(double(f.loss) - d.loss) < 1e-5 * std::max(1.0, d.loss));
    RC_ASSERT(max_abs_diff(f.target_weights.cast<double>(), d.target_weights) < 1e-5);
    RC_ASSERT(max_abs_diff(f.grad_log_policy.cast<double>(), d.grad_log_policy) < 1e-5);
  });
}

// Every public function accepts Maps (converted to a plain matrix once, at entry).
TEST(LossApi, MapsWorkWithEveryPublicFunction) {
  const host_samples h = random_samples_host(3, 4);
  using map = Eigen::Map<const Eigen::MatrixXd>;
  const map lp(h.log_policy.data(), 3, 4), lq(h.log_proposal.data(), 3, 4), l0(h.log_prior.data(), 3, 4),
      r(h.reward.data(), 3, 4);
  const brain::samples<map> s{lp, lq, l0, r};
  const auto plain = h.as<Eigen::MatrixXd>();
  EXPECT_EQ(brain::row_log_softmax(lp), brain::row_log_softmax(h.log_policy));
  EXPECT_EQ(brain::effective_sample_size(brain::baseline_weights(lp, lq)),
            brain::effective_sample_size(brain::baseline_weights(h.log_policy, h.log_proposal)));
  EXPECT_EQ(brain::exact_expectation(map(brain::row_log_softmax(h.reward).data(), 3, 4), lp),
            brain::exact_expectation(brain::row_log_softmax(h.reward), h.log_policy));
  EXPECT_EQ(brain::surrogate_loss(s, brain::estimator::rloo).loss,
            brain::surrogate_loss(plain, brain::estimator::rloo).loss);
  EXPECT_EQ(brain::pairwise(s).reward, brain::pairwise(plain).reward);
}

}  // namespace

// options::defer_validation is for asynchronous backends; Eigen validates in its one pass, so a
// bad group throws at once with the message it always has (row-major and column-major).
TEST(LossApi, DeferredValidationChangesNothingOnEigen) {
  for (const bool row_major : {true, false}) {
    Eigen::MatrixXd good = Eigen::MatrixXd::Zero(3, 4), bad = good;
    bad(2, 1) = std::nan("");
    const brain::options deferred{.defer_validation = true};
    const auto message = [&](const brain::options& opt) {
      return brain_test::error_message([&] {
        if (row_major) {
          using M = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
          (void)brain::brain_loss(brain::samples<M>{good, bad, good, good}, brain::bradley_terry{}, opt);
        } else {
          (void)brain::brain_loss(brain::samples<Eigen::MatrixXd>{good, bad, good, good}, brain::bradley_terry{}, opt);
        }
      });
    };
    EXPECT_EQ(message(deferred), message({}));
    EXPECT_NE(message(deferred).find("log_proposal[2, 1] is NaN"), std::string::npos) << message(deferred);
  }
}
