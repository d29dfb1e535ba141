// The self-normalised KL divergence (divergence.hpp, eqs. 13-14): by hand, against brain_loss,
// its conventions for zero weights, and its expectation D_SN by enumeration vanishing only at the
// posterior (Theorem 4.3 is in theorems_test).

#include "support/properties.hpp"
#include "support/reference.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace {

using namespace brain_test;
using brain::index;

template <class T>
class DivergenceTest : public ::testing::Test {};
TYPED_TEST_SUITE(DivergenceTest, double_backends, backend_names);

// alpha-bar = (1/4, 3/4), beta-bar = (1/2, 1/2): KL = 1/4 log(1/2) + 3/4 log(3/2); a row whose
// target has a zero keeps 0 log 0 = 0; a baseline zero under target mass gives +inf.
TYPED_TEST(DivergenceTest, SelfNormalizedKlByHand) {
  using T = TypeParam;
  host target(3, 2), baseline(3, 2);
  target << std::log(0.25), std::log(0.75), /**/ -INFINITY, 0, /**/ 0, -INFINITY;
  baseline << std::log(0.5), std::log(0.5), /**/ std::log(0.5), std::log(0.5), /**/ -INFINITY, 0;
  const host_vector kl =
      io<T>::to_host_vector(brain::self_normalized_kl(io<T>::from_host(target), io<T>::from_host(baseline)));
  EXPECT_NEAR(kl(0), 0.25 * std::log(0.5) + 0.75 * std::log(1.5), 1e-15);
  EXPECT_NEAR(kl(1), std::log(2.0), 1e-15);
  EXPECT_EQ(kl(2), INFINITY);
}

// From the public weight functions it is brain_loss's per-prompt value, and the reference's.
TYPED_TEST(DivergenceTest, EqualsTheLossOfTheSameWeights) {
  using T = TypeParam;
  check_property("self_normalized_kl(log alpha-bar, log beta-bar) = brain_loss per_prompt = reference", [] {
    const index prompts = *rc::gen::inRange<index>(1, 5), n = *rc::gen::inRange<index>(1, 9);
    const double beta = *real_in(0.1, 3);
    const host_samples h = random_samples(prompts, n);
    const brain::bradley_terry bt{.beta = beta};
    const T lq = io<T>::from_host(h.log_proposal);
    const auto target = brain::log_target_weights(io<T>::from_host(h.log_prior), lq, io<T>::from_host(h.reward), bt);
    const auto baseline = brain::log_baseline_weights(io<T>::from_host(h.log_policy), lq);
    const host_vector kl = io<T>::to_host_vector(brain::self_normalized_kl(target, baseline));
    const auto expect = ref::brain_loss_bt(h.log_policy, h.log_proposal, h.log_prior, h.reward, beta);
    RC_ASSERT((kl - expect.per_prompt).cwiseAbs().maxCoeff() < 1e-12);
    RC_ASSERT((kl - io<T>::to_host_vector(brain::brain_loss(h.as<T>(), bt).per_prompt)).cwiseAbs().maxCoeff() < 1e-13);
    RC_ASSERT(kl.minCoeff() >= -1e-15);
    const host_vector self = io<T>::to_host_vector(brain::self_normalized_kl(target, target));
    RC_ASSERT(self.cwiseAbs().maxCoeff() == 0.0);
  });
}

TYPED_TEST(DivergenceTest, BadInputIsNamed) {
  using T = TypeParam;
  host a = host::Zero(2, 2), nan = a;
  nan(1, 0) = NAN;
  try {
    brain::self_normalized_kl(io<T>::from_host(a), io<T>::from_host(nan));
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("self_normalized_kl: log_baseline[1, 0] is NaN"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(brain::self_normalized_kl(io<T>::from_host(a), io<T>::from_host(host::Zero(2, 3))),
               std::invalid_argument);
}

}  // namespace
