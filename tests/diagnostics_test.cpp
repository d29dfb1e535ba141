// Effective sample size (diagnostics.hpp).

#include "support/properties.hpp"

namespace {

using namespace brain_test;
using brain::index;

template <class T>
class DiagnosticsTest : public ::testing::Test {};
TYPED_TEST_SUITE(DiagnosticsTest, double_backends, backend_names);

TYPED_TEST(DiagnosticsTest, EffectiveSampleSizeOfKnownWeights) {
  using T = TypeParam;
  host w(4, 4);
  w << 0.25, 0.25, 0.25, 0.25, /**/ 1, 0, 0, 0, /**/ 0.5, 0.5, 0, 0, /**/ 3, 1, 0, 0;
  const host_vector ess = io<T>::to_host_vector(brain::effective_sample_size(io<T>::from_host(w)));
  EXPECT_NEAR(ess(0), 4.0, 1e-14);
  EXPECT_NEAR(ess(1), 1.0, 1e-14);
  EXPECT_NEAR(ess(2), 2.0, 1e-14);
  EXPECT_NEAR(ess(3), 16.0 / 10.0, 1e-14);  // unnormalised: (3 + 1)^2 / (9 + 1)
}

TYPED_TEST(DiagnosticsTest, EffectiveSampleSizeIsBetweenOneAndN) {
  using T = TypeParam;
  check_property("1 <= ESS(alpha-bar) <= n", [] {
    const index prompts = *rc::gen::inRange<index>(1, 5), n = *rc::gen::inRange<index>(1, 20);
    const auto out = brain::brain_loss(random_samples(prompts, n).as<T>());
    for (const auto& w : {out.target_weights, out.baseline_weights}) {
      const host_vector ess = io<T>::to_host_vector(brain::effective_sample_size(w));
      RC_ASSERT(ess.minCoeff() >= 1.0 - 1e-12);
      RC_ASSERT(ess.maxCoeff() <= double(n) + 1e-12);
    }
  });
}

}  // namespace
