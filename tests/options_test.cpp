// Options (options.hpp): the defaults every public function relies on.

#include <brain/options.hpp>

#include <gtest/gtest.h>

namespace {

TEST(Options, DefaultsValidateAndUseTheSoftmaxTarget) {
  constexpr brain::options opt{};
  static_assert(opt.validate);
  static_assert(opt.target == brain::target_rule::softmax);
  constexpr brain::options argmax{.target = brain::target_rule::argmax, .validate = false};
  static_assert(argmax.target == brain::target_rule::argmax && !argmax.validate);
  SUCCEED();
}

}  // namespace
