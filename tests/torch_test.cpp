// What only the LibTorch backend has: autograd through the loss, half-precision inputs, dtypes
// and agreement with the Eigen reference backend in double and float.

#include "support/properties.hpp"
#include "support/reference.hpp"

#include <torch/csrc/autograd/autograd.h>

#include <cmath>

namespace {

using namespace brain_test;
using brain::index;

at::Tensor from_host(const host& h, at::ScalarType type) { return io<at::Tensor>::from_host(h).to(type); }

// The autograd gradient of out.loss with respect to log_policy equals grad_log_policy, and no
// gradient reaches the proposal, prior or reward even when they require one.
TEST(TorchBackend, AutogradGradientEqualsAnalyticGradient) {
  check_property("d loss / d log_policy by autograd = grad_log_policy", [] {
    const index prompts = *rc::gen::inRange<index>(1, 6), n = *rc::gen::inRange<index>(1, 17);
    const double beta = *real_in(0.1, 3.0);
    const host_samples h = random_samples(prompts, n);
    brain::samples<at::Tensor> s = h.as<at::Tensor>();
    for (at::Tensor* t : {&s.log_policy, &s.log_proposal, &s.log_prior, &s.reward}) t->requires_grad_(true);
    for (const auto rule : {brain::target_rule::softmax, brain::target_rule::argmax}) {
      const auto out = brain::brain_loss(s, brain::bradley_terry{.beta = beta}, {.target = rule});
      RC_ASSERT(out.loss.requires_grad());
      RC_ASSERT(!out.target_weights.requires_grad());
      RC_ASSERT(!out.grad_log_policy.requires_grad());
      const auto grads = torch::autograd::grad({out.loss}, {s.log_policy, s.log_proposal, s.log_prior, s.reward},
                                               /*grad_outputs=*/{}, /*retain_graph=*/false, /*create_graph=*/false,
                                               /*allow_unused=*/true);
      RC_ASSERT(max_abs_diff(io<at::Tensor>::to_host(grads[0]), io<at::Tensor>::to_host(out.grad_log_policy)) < 1e-14);
      for (std::size_t k = 1; k < 4; ++k)  // (RC_ASSERT does not short-circuit ||)
        if (grads[k].defined()) RC_ASSERT(grads[k].abs().max().item<double>() == 0.0);
    }
  });
}

// On-policy sampling: the proposal is the policy's own (graph-connected) log-probs; the target
// must not be differentiated, so the gradient is still beta-bar - alpha-bar over prompts.
TEST(TorchBackend, ProposalSharingThePolicyGraphIsDetached) {
  const host h = random_matrix_host(3, 5);
  at::Tensor theta = from_host(h, at::kDouble).requires_grad_(true);
  const at::Tensor log_policy = theta * 1.0;
  const brain::samples<at::Tensor> s{log_policy, log_policy, from_host(h * 0.5, at::kDouble),
                                     from_host(h, at::kDouble)};
  const auto out = brain::brain_loss(s);
  out.loss.backward();
  EXPECT_LT(max_abs_diff(io<at::Tensor>::to_host(theta.grad()), io<at::Tensor>::to_host(out.grad_log_policy)), 1e-15);
}

// CPU tensors take the fused path (one autograd node over kernels/group_loss.hpp's loops). Its
// results equal brain_loss composed from backend operations (the user backend, which has no
// fused path) in double; per_prompt is differentiable too: d sum_i c_i per_prompt_i / d
// log_policy_ij = c_i (beta-bar_ij - alpha-bar_ij), alone and together with the loss.
TEST(TorchBackend, FusedPathEqualsTheComposedLossAndDifferentiatesBothOutputs) {
  check_property("fused LibTorch CPU = composed user backend; gradients of loss and per_prompt", [] {
    const index prompts = *rc::gen::inRange<index>(1, 7), n = *rc::gen::inRange<index>(1, 40);
    const host_samples h = random_samples(prompts, n);
    const auto composed = brain::brain_loss(h.as<user::matrix>(), brain::logistic{});
    brain::samples<at::Tensor> s = h.as<at::Tensor>();
    s.log_policy.requires_grad_(true);
    const auto out = brain::brain_loss(s, brain::logistic{});
    RC_ASSERT(std::abs(out.loss.item<double>() - composed.loss) <= 1e-13 * std::max(1.0, composed.loss));
    RC_ASSERT(max_abs_diff(io<at::Tensor>::to_host(out.target_weights),
                           io<user::matrix>::to_host(composed.target_weights)) < 1e-13);
    RC_ASSERT(max_abs_diff(io<at::Tensor>::to_host(out.baseline_weights),
                           io<user::matrix>::to_host(composed.baseline_weights)) < 1e-13);
    RC_ASSERT(max_abs_diff(io<at::Tensor>::to_host(out.grad_log_policy),
                           io<user::matrix>::to_host(composed.grad_log_policy)) < 1e-13);
    for (index i = 0; i < prompts; ++i)
      RC_ASSERT(std::abs(out.per_prompt[i].item<double>() - composed.per_prompt[static_cast<std::size_t>(i)]) < 1e-13);
    const at::Tensor c = at::rand({prompts}, at::kDouble) - 0.5;
    const at::Tensor difference = out.grad_log_policy * static_cast<double>(prompts);  // beta-bar - alpha-bar
    const auto only_per_prompt = torch::autograd::grad({(out.per_prompt * c).sum()}, {s.log_policy}, {}, true);
    RC_ASSERT((only_per_prompt[0] - difference * c.unsqueeze(1)).abs().max().item<double>() < 1e-15);
    const auto both = torch::autograd::grad({out.loss * 3.0 + (out.per_prompt * c).sum()}, {s.log_policy});
    RC_ASSERT((both[0] - out.grad_log_policy * 3.0 - difference * c.unsqueeze(1)).abs().max().item<double>() < 1e-15);
  });
}

// Transposed (non-contiguous) views and mixed dtypes (float policy, double rest) give what the
// contiguous double inputs give, in double; a bad value is named as the composed path names it.
TEST(TorchBackend, FusedPathTakesViewsMixedDtypesAndNamesBadInput) {
  const host_samples h = random_samples_host(4, 6, 3);
  const brain::samples<at::Tensor> plain = h.as<at::Tensor>();
  const auto transposed = [](const host& m) { return io<at::Tensor>::from_host(m.transpose()).t(); };
  const brain::samples<at::Tensor> views{transposed(h.log_policy).to(at::kFloat), transposed(h.log_proposal),
                                         transposed(h.log_prior), transposed(h.reward)};
  ASSERT_FALSE(views.log_proposal.is_contiguous());
  const auto want = brain::brain_loss(plain), got = brain::brain_loss(views);
  EXPECT_EQ(got.target_weights.scalar_type(), at::kDouble);
  EXPECT_LT(max_abs_diff(io<at::Tensor>::to_host(got.target_weights), io<at::Tensor>::to_host(want.target_weights)),
            1e-15);
  EXPECT_LT(max_abs_diff(io<at::Tensor>::to_host(got.baseline_weights), io<at::Tensor>::to_host(want.baseline_weights)),
            1e-6);

  host_samples bad = h;
  bad.reward(2, 3) = NAN;
  const std::string composed = error_message([&] { brain::brain_loss(bad.as<user::matrix>()); });
  EXPECT_EQ(composed, "brain::brain_loss: reward[2, 3] is NaN (must be finite)");
  EXPECT_EQ(error_message([&] { brain::brain_loss(bad.as<at::Tensor>()); }), composed);
  // Unvalidated, the bad group gives NaN and the others are right.
  const auto unchecked = brain::brain_loss(bad.as<at::Tensor>(), brain::bradley_terry{}, {.validate = false});
  EXPECT_TRUE(std::isnan(unchecked.per_prompt[2].item<double>()));
  EXPECT_NEAR(unchecked.per_prompt[1].item<double>(), want.per_prompt[1].item<double>(), 1e-15);
}

// The device registry of the fused loss, which CUDA tensors reach through brain::cuda's
// registration: a stand-in registered for meta tensors is run for the goodness models of
// goodness.hpp (its parameters passed on), may decline (an empty list: the composed path runs),
// and is never asked for another goodness model.
namespace meta_device {
int calls = 0, deferred_checks = 0;
bool last_validate = false, last_defer = false;
torch::autograd::variable_list group_loss(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                          brain::detail::builtin_goodness goodness, bool validate, bool defer, bool*) {
  ++calls;
  last_validate = validate;
  last_defer = defer;
  if (goodness.kind == brain::detail::builtin_goodness::model::log_goodness) return {};
  const at::Tensor beta = at::full({}, goodness.beta, at::kDouble);  // recognisable, on the CPU
  return {beta, beta, beta, beta, beta};
}
void check_deferred() { ++deferred_checks; }
const brain::detail::device_group_loss entry{&group_loss, &check_deferred};
const bool registered = brain::detail::register_device_group_loss(c10::DeviceType::Meta, &entry);

struct doubled_reward {  // a goodness model outside goodness.hpp
  void validate() const {}
  template <class T, class X>
  brain::tensor_t<T> to_log_goodness(const X& reward) const {
    return brain::backend_traits<T>::affine(reward, 2.0, 0.0);
  }
  double operator()(double reward) const { return 2 * reward; }
};
}  // namespace meta_device

TEST(TorchBackend, OtherDevicesRunTheirRegisteredFusedLoss) {
  ASSERT_TRUE(meta_device::registered);
  const auto meta = [] { return at::empty({3, 4}, at::TensorOptions().dtype(at::kFloat).device(at::kMeta)); };
  const brain::samples<at::Tensor> s{meta(), meta(), meta(), meta()};
  const brain::options unchecked{.validate = false};  // meta tensors hold no values to check
  meta_device::calls = 0;
  const auto run = brain::brain_loss(s, brain::bradley_terry{.beta = 2.5}, unchecked);
  EXPECT_EQ(meta_device::calls, 1);
  EXPECT_EQ(run.loss.item<double>(), 2.5);
  // Declined, or a goodness model the registry cannot carry: the composed path runs, and stops at
  // ATen's where(), which has no meta kernel in LibTorch 1.13 (a c10::Error, not a result).
  EXPECT_THROW(brain::brain_loss(s, brain::log_goodness{}, unchecked), c10::Error);
  EXPECT_EQ(meta_device::calls, 2);
  EXPECT_THROW(brain::brain_loss(s, meta_device::doubled_reward{}, unchecked), c10::Error);
  EXPECT_EQ(meta_device::calls, 2);
  // options::defer_validation reaches the device (only with validate), and
  // check_deferred_validation() asks every registered device to read its pending checks.
  EXPECT_FALSE(meta_device::last_validate);
  EXPECT_FALSE(meta_device::last_defer);
  (void)brain::brain_loss(s, brain::bradley_terry{}, {.validate = true, .defer_validation = true});
  EXPECT_TRUE(meta_device::last_validate);
  EXPECT_TRUE(meta_device::last_defer);
  (void)brain::brain_loss(s, brain::bradley_terry{}, {.validate = false, .defer_validation = true});
  EXPECT_FALSE(meta_device::last_defer);
  (void)brain::brain_loss(s, brain::bradley_terry{});
  EXPECT_TRUE(meta_device::last_validate);
  EXPECT_FALSE(meta_device::last_defer);
  meta_device::deferred_checks = 0;
  brain::check_deferred_validation();
  EXPECT_EQ(meta_device::deferred_checks, 1);
}

// On the CPU validation is synchronous anyway: defer_validation changes nothing, a bad group
// throws at once with the usual message.
TEST(TorchBackend, DeferredValidationOnTheCpuThrowsAtOnce) {
  const at::Tensor good = at::zeros({2, 3}, at::kDouble);
  at::Tensor bad = good.clone();
  bad[1][2] = NAN;
  const brain::samples<at::Tensor> s{good, good, good, bad};
  const brain::options deferred{.defer_validation = true};
  EXPECT_EQ(brain_test::error_message([&] { (void)brain::brain_loss(s, brain::bradley_terry{}, deferred); }),
            brain_test::error_message([&] { (void)brain::brain_loss(s, brain::bradley_terry{}); }));
  EXPECT_NE(brain_test::error_message([&] {
              (void)brain::brain_loss(s, brain::bradley_terry{}, deferred);
            }).find("reward[1, 2]"),
            std::string::npos);
  EXPECT_NO_THROW(brain::check_deferred_validation());
}

TEST(TorchBackend, FloatAgreesWithEigenDoubleTo1e5) {
  check_property("LibTorch float32 vs Eigen double", [] {
    const host_samples h = random_samples(*rc::gen::inRange<index>(1, 8), *rc::gen::inRange<index>(1, 33));
    const auto expect = brain::brain_loss(h.as<Eigen::MatrixXd>(), brain::logistic{});
    const brain::samples<at::Tensor> s{from_host(h.log_policy, at::kFloat), from_host(h.log_proposal, at::kFloat),
                                       from_host(h.log_prior, at::kFloat), from_host(h.reward, at::kFloat)};
    const auto out = brain::brain_loss(s, brain::logistic{});
    RC_ASSERT(out.loss.scalar_type() == at::kFloat);
    RC_ASSERT(std::abs(out.loss.item<double>() - expect.loss) < 1e-5 * std::max(1.0, expect.loss));
    RC_ASSERT(max_abs_diff(io<at::Tensor>::to_host(out.target_weights), expect.target_weights) < 1e-5);
    RC_ASSERT(max_abs_diff(io<at::Tensor>::to_host(out.grad_log_policy), expect.grad_log_policy) < 1e-5);
  });
}

// float16 / bfloat16 inputs are computed in float32: the results equal the float32 computation
// on the same (rounded) inputs, and stay finite where a half-precision log-softmax would not.
TEST(TorchBackend, HalfPrecisionInputsAreComputedInFloat32) {
  host_samples h = {random_matrix_host(4, 16) * 40 - host::Constant(4, 16, 60),
                    random_matrix_host(4, 16) * 40 - host::Constant(4, 16, 60),
                    random_matrix_host(4, 16) * 40 - host::Constant(4, 16, 60), random_matrix_host(4, 16) * 20};
  for (const auto type : {at::kHalf, at::kBFloat16}) {
    const brain::samples<at::Tensor> low{from_host(h.log_policy, type), from_host(h.log_proposal, type),
                                         from_host(h.log_prior, type), from_host(h.reward, type)};
    const brain::samples<at::Tensor> widened{low.log_policy.to(at::kFloat), low.log_proposal.to(at::kFloat),
                                             low.log_prior.to(at::kFloat), low.reward.to(at::kFloat)};
    const auto out = brain::brain_loss(low, brain::bradley_terry{.beta = 0.1});
    const auto expect = brain::brain_loss(widened, brain::bradley_terry{.beta = 0.1});
    EXPECT_EQ(out.loss.scalar_type(), at::kFloat);
    EXPECT_EQ(out.grad_log_policy.scalar_type(), at::kFloat);
    EXPECT_TRUE(std::isfinite(out.loss.item<double>()));
    EXPECT_EQ(out.loss.item<double>(), expect.loss.item<double>());
    EXPECT_TRUE(at::equal(out.grad_log_policy, expect.grad_log_policy));
    // Autograd still reaches the half-precision policy, in its own dtype.
    at::Tensor policy = low.log_policy.clone().requires_grad_(true);
    brain::brain_loss(brain::samples<at::Tensor>{policy, low.log_proposal, low.log_prior, low.reward}).loss.backward();
    EXPECT_EQ(policy.grad().scalar_type(), type);
    EXPECT_TRUE(at::isfinite(policy.grad()).all().item<bool>());
  }
}

TEST(TorchBackend, ResultsKeepTheInputsDeviceAndShapes) {
  const brain::samples<at::Tensor> s = host_samples{random_matrix_host(3, 4), random_matrix_host(3, 4),
                                                    random_matrix_host(3, 4), random_matrix_host(3, 4)}
                                           .as<at::Tensor>();
  const auto out = brain::brain_loss(s);
  EXPECT_EQ(out.loss.dim(), 0);
  EXPECT_EQ(out.per_prompt.sizes(), (std::vector<int64_t>{3}));
  EXPECT_EQ(out.target_weights.sizes(), (std::vector<int64_t>{3, 4}));
  for (const at::Tensor& t : {out.loss, out.per_prompt, out.target_weights, out.baseline_weights, out.grad_log_policy})
    EXPECT_EQ(t.device(), s.log_policy.device());
}

// Every estimator's surrogate is differentiable: autograd's gradient with respect to log_policy is
// -coefficients / prompts, and nothing reaches the proposal, prior or reward.
TEST(TorchBackend, SurrogateAutogradGradientIsMinusTheCoefficients) {
  check_property("d surrogate_loss / d log_policy by autograd = -w / prompts, every estimator", [] {
    const index prompts = *rc::gen::inRange<index>(1, 5), n = *rc::gen::inRange<index>(2, 9);
    host_samples h = random_samples(prompts, n);
    h.log_policy = h.log_proposal + random_matrix(prompts, n, -1, 1);
    brain::samples<at::Tensor> s = h.as<at::Tensor>();
    for (at::Tensor* t : {&s.log_policy, &s.log_proposal, &s.log_prior, &s.reward}) t->requires_grad_(true);
    for (const auto e :
         {brain::estimator::brain, brain::estimator::no_baseline, brain::estimator::gdc_pp, brain::estimator::dpg,
          brain::estimator::rloo, brain::estimator::grpo, brain::estimator::ppo_clip}) {
      const auto out = brain::surrogate_loss(s, e, brain::bradley_terry{.beta = 0.5},
                                             brain::policy_gradient_options{.kl_coef = 0.2});
      RC_ASSERT(out.loss.requires_grad());
      RC_ASSERT(!out.coefficients.requires_grad());
      const auto grads = torch::autograd::grad({out.loss}, {s.log_policy, s.log_proposal, s.log_prior, s.reward}, {},
                                               false, false, /*allow_unused=*/true);
      RC_ASSERT(max_abs_diff(io<at::Tensor>::to_host(grads[0]), io<at::Tensor>::to_host(out.grad_log_policy)) < 1e-15);
      for (std::size_t k = 1; k < 4; ++k)
        if (grads[k].defined()) RC_ASSERT(grads[k].abs().max().item<double>() == 0.0);
    }
  });
}

TEST(TorchBackend, NonMatrixInputIsNamed) {
  const at::Tensor flat = at::zeros({6}, at::kDouble), m = at::zeros({2, 3}, at::kDouble);
  try {
    brain::brain_loss(brain::samples<at::Tensor>{flat, m, m, m});
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("log_policy has 1 dimensions"), std::string::npos) << e.what();
  }
}

}  // namespace
