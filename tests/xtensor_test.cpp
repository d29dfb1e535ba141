// What only the xtensor backend needs beyond the typed suite: float32 agreement with the Eigen
// reference backend in double.

#include "support/properties.hpp"

#include <cmath>

namespace {

using namespace brain_test;
using brain::index;

TEST(XtensorBackend, FloatAgreesWithEigenDoubleTo1e5) {
  check_property("xtensor float vs Eigen double", [] {
    const host_samples h = random_samples(*rc::gen::inRange<index>(1, 8), *rc::gen::inRange<index>(1, 33));
    const auto expect = brain::brain_loss(h.as<Eigen::MatrixXd>());
    using X = xt::xtensor<float, 2>;
    const brain::samples<X> s{io<X>::from_host(h.log_policy), io<X>::from_host(h.log_proposal),
                              io<X>::from_host(h.log_prior), io<X>::from_host(h.reward)};
    const auto out = brain::brain_loss(s);
    RC_ASSERT(std::abs(double(out.loss) - expect.loss) < 1e-5 * std::max(1.0, expect.loss));
    RC_ASSERT(max_abs_diff(io<X>::to_host(out.target_weights), expect.target_weights) < 1e-5);
    RC_ASSERT(max_abs_diff(io<X>::to_host(out.grad_log_policy), expect.grad_log_policy) < 1e-5);
  });
}

}  // namespace
