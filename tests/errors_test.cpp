// Error reporting (errors.hpp): the message format every check uses, and values printed so they
// read back exactly.

#include <brain/errors.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace {

TEST(Errors, FailThrowsInvalidArgumentNamingTheFunction) {
  try {
    brain::detail::fail("where", "x[", 1, ", ", 2, "] is ", brain::detail::describe_value(0.1));
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "brain::where: x[1, 2] is 0.10000000000000001");
  }
}

TEST(Errors, ValuesAreDescribedExactly) {
  EXPECT_EQ(brain::detail::describe_value(NAN), "NaN");
  EXPECT_EQ(brain::detail::describe_value(INFINITY), "+inf");
  EXPECT_EQ(brain::detail::describe_value(-INFINITY), "-inf");
  const double v = 1.0 / 3;
  EXPECT_EQ(std::stod(brain::detail::describe_value(v)), v);  // round trip
}

}  // namespace
