// Each core header compiles on its own (no missing includes), and both translation units agree.

#include <brain/backend.hpp>
#include <brain/config.hpp>
#include <brain/diagnostics.hpp>
#include <brain/divergence.hpp>
#include <brain/errors.hpp>
#include <brain/estimators.hpp>
#include <brain/exact.hpp>
#include <brain/goodness.hpp>
#include <brain/loss.hpp>
#include <brain/options.hpp>
#include <brain/reductions.hpp>
#include <brain/samples.hpp>
#include <brain/validate.hpp>
#include <brain/weights.hpp>

#include <gtest/gtest.h>

double second_translation_unit_loss(const brain::samples<Eigen::MatrixXd>& s);

TEST(Odr, BothTranslationUnitsComputeTheSameLoss) {
  const Eigen::MatrixXd a = Eigen::MatrixXd::Random(3, 5) - Eigen::MatrixXd::Ones(3, 5);
  const brain::samples<Eigen::MatrixXd> s{.log_policy = a, .log_proposal = a.reverse(), .log_prior = a, .reward = a * 2};
  EXPECT_EQ(second_translation_unit_loss(s), brain::brain_loss(s).loss);
  EXPECT_GT(brain::brain_loss(s).loss, 0.0);
}
