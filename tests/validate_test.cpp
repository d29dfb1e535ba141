// Bad input gets std::invalid_argument naming the argument, row and column (validate.hpp), on
// every backend; legal edge cases do not throw.

#include "support/typed.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace {

using namespace brain_test;

template <class T>
class ValidationTest : public ::testing::Test {
 protected:
  host_samples good{host::Constant(3, 4, -1.0), host::Constant(3, 4, -2.0), host::Constant(3, 4, -1.5),
                    host::Constant(3, 4, 0.5)};
};
TYPED_TEST_SUITE(ValidationTest, double_backends, backend_names);

/// Runs f, expects std::invalid_argument, and checks its message contains every fragment.
template <class F>
void expect_invalid(F&& f, std::initializer_list<std::string> fragments) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning " << *fragments.begin();
  } catch (const std::invalid_argument& e) {
    const std::string message = e.what();
    for (const auto& fragment : fragments)
      EXPECT_NE(message.find(fragment), std::string::npos) << "message: " << message << "\nmissing: " << fragment;
  }
}

TYPED_TEST(ValidationTest, NanAnywhereIsNamedWithItsPosition) {
  using T = TypeParam;
  for (int which = 0; which < 4; ++which) {
    host_samples h = this->good;
    host* fields[] = {&h.log_policy, &h.log_proposal, &h.log_prior, &h.reward};
    (*fields[which])(2, 1) = NAN;
    const char* names[] = {"log_policy[2, 1]", "log_proposal[2, 1]", "log_prior[2, 1]", "reward[2, 1]"};
    expect_invalid([&] { brain::brain_loss(h.as<T>()); }, {"brain::brain_loss", names[which], "NaN"});
  }
}

TYPED_TEST(ValidationTest, PlusInfinityIsRejectedMinusInfinityOnlyInThePrior) {
  using T = TypeParam;
  host_samples h = this->good;
  h.log_proposal(1, 3) = INFINITY;
  expect_invalid([&] { brain::brain_loss(h.as<T>()); }, {"log_proposal[1, 3]", "+inf"});
  h = this->good;
  h.log_prior(0, 2) = INFINITY;
  expect_invalid([&] { brain::brain_loss(h.as<T>()); }, {"log_prior[0, 2]", "+inf"});
  h = this->good;
  h.log_policy(0, 0) = -INFINITY;
  expect_invalid([&] { brain::brain_loss(h.as<T>()); }, {"log_policy[0, 0]", "-inf"});
  h = this->good;
  h.reward(2, 3) = -INFINITY;
  expect_invalid([&] { brain::brain_loss(h.as<T>()); }, {"reward[2, 3]", "-inf"});
  h = this->good;
  h.log_prior(0, 2) = -INFINITY;  // legal: that sample gets zero target weight
  EXPECT_NO_THROW(brain::brain_loss(h.as<T>()));
}

TYPED_TEST(ValidationTest, ShapeMismatchNamesBothShapes) {
  using T = TypeParam;
  host_samples h = this->good;
  h.reward = host::Zero(3, 5);
  expect_invalid([&] { brain::brain_loss(h.as<T>()); }, {"shape mismatch", "reward is 3x5", "log_policy is 3x4"});
  h = this->good;
  h.log_prior = host::Zero(2, 4);
  expect_invalid([&] { brain::brain_loss(h.as<T>()); }, {"log_prior is 2x4"});
}

TYPED_TEST(ValidationTest, EmptyBatchesAreRejected) {
  using T = TypeParam;
  const host none(3, 0);
  expect_invalid([&] { brain::brain_loss(make_samples<T>(none, none, none, none)); },
                 {"no columns", "sample per prompt"});
  const host no_rows(0, 4);
  expect_invalid([&] { brain::brain_loss(make_samples<T>(no_rows, no_rows, no_rows, no_rows)); }, {"no rows"});
}

TYPED_TEST(ValidationTest, ImpossibleGroupNamesTheRow) {
  using T = TypeParam;
  host_samples h = this->good;
  h.log_prior.row(1).setConstant(-INFINITY);
  expect_invalid([&] { brain::brain_loss(h.as<T>()); }, {"row 1", "every target weight is zero"});
  expect_invalid([&] { brain::target_weights(h.as<T>().log_prior, h.as<T>().log_proposal, h.as<T>().reward); },
                 {"brain::log_target_weights", "row 1"});
}

TYPED_TEST(ValidationTest, BadBetaIsRejected) {
  using T = TypeParam;
  const auto s = this->good.template as<T>();
  for (double beta : {0.0, -1.0, double(NAN), double(INFINITY)})
    expect_invalid([&] { brain::brain_loss(s, brain::bradley_terry{.beta = beta}); }, {"beta"});
  expect_invalid([&] { brain::dpo_loss(s.log_policy, s.log_policy, s.log_prior, s.log_prior, {.beta = 0}); },
                 {"dpo_loss", "beta"});
}

TYPED_TEST(ValidationTest, OverflowingGoodnessIsReportedNotPropagated) {
  using T = TypeParam;
  host_samples h = this->good;
  h.reward(2, 0) = 1e308;
  expect_invalid([&] { brain::brain_loss(h.as<T>(), brain::bradley_terry{.beta = 1e-3}); },
                 {"log goodness of reward[2, 0]", "+inf"});
}

TYPED_TEST(ValidationTest, OtherEntryPointsValidateToo) {
  using T = TypeParam;
  host bad = this->good.log_policy;
  bad(1, 1) = NAN;
  const T b = io<T>::from_host(bad), g = io<T>::from_host(this->good.log_policy);
  expect_invalid([&] { brain::baseline_weights(b, g); }, {"log_baseline_weights", "log_policy[1, 1]"});
  expect_invalid([&] { brain::effective_sample_size(b); }, {"effective_sample_size", "weights[1, 1]"});
  expect_invalid([&] { brain::exact_kl(g, g); }, {"exact_kl", "not a normalised distribution"});
  expect_invalid(
      [&] { brain::pairwise(make_samples<T>(host::Zero(2, 3), host::Zero(2, 3), host::Zero(2, 3), host::Zero(2, 3))); },
      {"regroup", "must divide the 3 samples"});
  expect_invalid([&] { brain::effective_sample_size(io<T>::from_host(-this->good.reward)); },
                 {"weights[0, 0]", "must be >= 0"});
}

}  // namespace
