// samples<T> (samples.hpp): the one conversion at entry (a reference when T is the result type,
// a copy for a view), and the shared checks of shapes and values.

#include "support/typed.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace {

using namespace brain_test;

TEST(Samples, ConversionAtEntryCopiesOnlyViews) {
  const host_samples h{host::Zero(2, 3), host::Zero(2, 3), host::Zero(2, 3), host::Ones(2, 3)};
  const auto plain = h.as<Eigen::MatrixXd>();
  const auto& same = brain::detail::as_tensors(plain);
  EXPECT_EQ(&same, &plain);  // no copy
  const auto views = h.as<user::view>();
  const auto converted = brain::detail::as_tensors(views);
  static_assert(std::is_same_v<decltype(converted), const brain::samples<user::matrix>>);
  EXPECT_EQ(converted.reward.data, std::vector<double>(6, 1.0));
}

TEST(Samples, ChecksNameFunctionArgumentRowAndColumn) {
  host_samples h{host::Zero(2, 3), host::Zero(2, 3), host::Zero(2, 3), host::Zero(2, 3)};
  h.log_prior(1, 2) = -INFINITY;  // legal by default, not when the caller forbids it
  const auto s = h.as<Eigen::MatrixXd>();
  EXPECT_NO_THROW(brain::detail::check_samples<Eigen::MatrixXd>("f", s));
  try {
    brain::detail::check_samples<Eigen::MatrixXd>("f", s, brain::detail::allow_negative_infinity::no);
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "brain::f: log_prior[1, 2] is -inf (must be finite)");
  }
}

}  // namespace
