#pragma once
// The public entry point: brain_loss(samples, goodness, options) returns the BRAIn loss, its
// gradient with respect to the policy's sequence log-probs, and the weights behind it.
//
//   #include <brain/loss.hpp>
//   brain::samples<Eigen::MatrixXd> s{.log_policy = lp, .log_proposal = lq, .log_prior = l0, .reward = r};
//   auto out = brain::brain_loss(s);   // Bradley–Terry goodness, beta = 1
//
// Including this header brings in every core header, and the backend headers of the CMake
// targets you link (brain::eigen, brain::xtensor, brain::torch define BRAIN_WITH_EIGEN, ...).
// Without CMake, define those macros or include <brain/backends/NAME.hpp> yourself.

#include <brain/backend.hpp>
#include <brain/diagnostics.hpp>
#include <brain/divergence.hpp>
#include <brain/estimators.hpp>
#include <brain/exact.hpp>
#include <brain/formula.hpp>
#include <brain/goodness.hpp>
#include <brain/reductions.hpp>
#include <brain/rewards.hpp>
#include <brain/rollouts.hpp>
#include <brain/samples.hpp>
#include <brain/surrogate.hpp>
#include <brain/weights.hpp>

#include <algorithm>
#include <string_view>
#include <utility>

#if defined(BRAIN_WITH_EIGEN)
#include <brain/backends/eigen.hpp>
#endif
#if defined(BRAIN_WITH_XTENSOR)
#include <brain/backends/xtensor.hpp>
#endif
#if defined(BRAIN_WITH_TORCH)
#include <brain/backends/torch.hpp>
#endif

namespace brain::inline v0 {

/// What brain_loss returns. Per-sample members are [prompts, n] tensors of the backend.
template <Backend T>
struct loss_result {
  /// Mean over prompts of KL(alpha-bar || beta-bar) (eqs. 13-14). With autograd backends it is
  /// differentiable with respect to log_policy, and the target weights are detached.
  scalar_t<T> loss;
  vector_t<T> per_prompt;        ///< KL(alpha-bar || beta-bar) of each prompt's group, [prompts]
  tensor_t<T> target_weights;    ///< alpha-bar (eqs. 6, 21); each row sums to 1
  tensor_t<T> baseline_weights;  ///< beta-bar (eq. 11); each row sums to 1
  /// d loss / d log_policy = (beta-bar - alpha-bar) / prompts: minus the BRAIn gradient
  /// coefficients of eq. 12, scaled for the mean over prompts. Feed it to a backward pass.
  tensor_t<T> grad_log_policy;
};

namespace detail {

/// Backends with a fused group loss for goodness model G (backend.hpp's optional fused_group_loss).
template <class T, class G>
concept FusedGroupLossBackend = requires(loss_result<T>& out, const samples<tensor_t<T>>& s, const G& goodness) {
  { backend_traits<T>::fused_group_loss(out, s, goodness, options{}) } -> std::same_as<fused_result>;
};

}  // namespace detail

namespace detail {

/// brain_loss on selected samples: log c added to log alpha and log beta, the mean over the used
/// groups only (loss and gradient 0 when every group is skipped).
template <class T, class G>
void selected_group_loss(loss_result<T>& out, const selection<T>& sel, const G& goodness, const options& opt) {
  using ops = backend_traits<T>;
  const double used = std::max(sel.used_groups, 1.0);
  const tensor_t<T> log_factor = ops::log(sel.factor);
  auto parts = composed_group_loss<T>("brain_loss", sel.filled, goodness, opt, 1.0 / used, false, &log_factor);
  const tensor_t<T> per_prompt = mul_per_row<T>(parts.per_prompt, sel.used);
  // mean over all rows times rows / used: the mean over the used ones (skipped rows are 0).
  out.loss = ops::mean(ops::affine(per_prompt, static_cast<double>(ops::rows(per_prompt)) / used, 0.0));
  out.per_prompt = ops::to_vector(per_prompt);
  out.target_weights = mul_per_row<T>(parts.target_weights, sel.used);
  out.baseline_weights = mul_per_row<T>(parts.baseline_weights, sel.used);
  out.grad_log_policy = mul_per_row<T>(parts.grad_log_policy, sel.used);
}

}  // namespace detail

/// brain_loss writing into `out`, whose tensors are reused when their shapes already match (no
/// allocation of the [prompts, n] results in a training loop, on backends with a fused group loss).
template <Backend T, GoodnessModel<T> G = bradley_terry>
void brain_loss_into(loss_result<T>& out, const samples<T>& input, const G& goodness = {}, const options& opt = {}) {
  using ops = backend_traits<T>;
  const auto& s = detail::as_tensors(input);
  goodness.validate();
  if (opt.validate) detail::check_sample_shapes<T>("brain_loss", s);
  // A mask, a sampler's log-probs or dropped uninformative groups: the composed path on the
  // selected samples (rollouts.hpp); the fused kernels take dense groups drawn from q.
  if (const auto sel = detail::select_samples<T>("brain_loss", s, {}, opt); sel.active)
    return detail::selected_group_loss<T>(out, sel, goodness, opt);
  // BRAIN_NO_FUSED_GROUP_LOSS: always compose backend operations (for comparisons, and to show
  // that benchmarks/performance_guard.cpp catches a slow path).
#if !defined(BRAIN_NO_FUSED_GROUP_LOSS)
  if constexpr (detail::FusedGroupLossBackend<T, G>) {
    if (opt.target == target_rule::softmax) {  // the fused kernels implement the softmax target
      const fused_result fused = ops::fused_group_loss(out, s, goodness, opt);
      if (fused == fused_result::done) return;
      if (fused == fused_result::bad_input) {
        // Name the bad input as the composed path does: it throws on the first bad value.
        (void)detail::composed_group_loss<T>("brain_loss", s, goodness, opt, 1.0);
        detail::fail("brain_loss", "the fused kernel found a bad group that validation does not name");
      }
    }
  }
#endif
  auto parts = detail::composed_group_loss<T>("brain_loss", s, goodness, opt,
                                              1.0 / static_cast<double>(ops::rows(s.log_policy)));
  out.loss = ops::mean(parts.per_prompt);
  out.per_prompt = ops::to_vector(parts.per_prompt);
  out.target_weights = std::move(parts.target_weights);
  out.baseline_weights = std::move(parts.baseline_weights);
  out.grad_log_policy = std::move(parts.grad_log_policy);
}

/// The BRAIn loss of a batch of groups (paper §3): the mean over prompts of KL(alpha-bar ||
/// beta-bar), whose gradient with respect to log_policy is minus the BRAIn estimate of eq. 12.
/// Throws std::invalid_argument on bad input (see options::validate).
template <Backend T, GoodnessModel<T> G = bradley_terry>
loss_result<T> brain_loss(const samples<T>& s, const G& goodness = {}, const options& opt = {}) {
  loss_result<T> out{};
  brain_loss_into(out, s, goodness, opt);
  return out;
}

}  // namespace brain::inline v0
