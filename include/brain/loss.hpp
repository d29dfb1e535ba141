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
#include <brain/goodness.hpp>
#include <brain/reductions.hpp>
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
  vector_t<T> per_prompt;      ///< KL(alpha-bar || beta-bar) of each prompt's group, [prompts]
  tensor_t<T> target_weights;  ///< alpha-bar (eqs. 6, 21); each row sums to 1
  tensor_t<T> baseline_weights;  ///< beta-bar (eq. 11); each row sums to 1
  /// d loss / d log_policy = (beta-bar - alpha-bar) / prompts: minus the BRAIn gradient
  /// coefficients of eq. 12, scaled for the mean over prompts. Feed it to a backward pass.
  tensor_t<T> grad_log_policy;
};

namespace detail {

/// Everything brain_loss computes for a block of rows; `prompts` is the batch's row count (for
/// the 1 / prompts of the mean) and `row_offset` the block's first row (for error messages).
template <class T>
struct group_loss_parts {
  tensor_t<T> per_prompt;  // [rows, 1]
  tensor_t<T> target_weights, baseline_weights, grad_log_policy;
};

template <class T, class S, class G>
group_loss_parts<T> group_loss(const S& s, const G& goodness, const options& opt, index prompts, index row_offset) {
  constexpr std::string_view where = "brain_loss";
  if (opt.validate) check_sample_values<T>(where, s, row_offset);
  const tensor_t<T> log_alpha =
      log_importance_weights<T>(where, s.log_prior, s.log_proposal, s.reward, goodness, opt.validate, row_offset);
  // alpha-bar (eqs. 6, 21) and beta-bar (eq. 11), each in both domains.
  row_softmax_result<T> target = normalize_target<T>(log_alpha, opt.target);
  const row_softmax_result<T> baseline =
      row_softmax<T>(log_baseline_importance<T>(where, s.log_policy, s.log_proposal, opt.validate, row_offset));
  tensor_t<T> baseline_weights = detach<T>(baseline.p);
  // d KL(alpha-bar || beta-bar) / d log q_theta(y_i) = beta-bar_i - alpha-bar_i (Theorem 4.2),
  // with alpha-bar the target actually used (one-hot under target_rule::argmax).
  tensor_t<T> grad =
      ops<T>::affine(ops<T>::sub(baseline_weights, target.p), 1.0 / static_cast<double>(prompts), 0.0);
  tensor_t<T> kl = row_kl<T>(target.p, target.log_p, baseline.log_p);  // eq. 14
  return {std::move(kl), std::move(target.p), std::move(baseline_weights), std::move(grad)};
}

/// Backends whose row blocks are cheap views: brain_loss then works tile by tile, so that its
/// temporaries stay in cache instead of streaming the whole batch through memory once per step.
template <class T>
concept RowBlockBackend = requires(tensor_t<T>& dst, const tensor_t<T>& src) {
  backend_traits<T>::row_block(src, index{}, index{});
  backend_traits<T>::assign_rows(dst, index{}, src);
};

/// Samples per tile: 8192 values per temporary (64 KiB in double) keep a tile's dozen live
/// temporaries in a core's L2 cache; measured best of 2048..32768 on the benchmark's sizes.
inline constexpr index tile_samples = 8192;

/// (Re)allocates t as rows x cols unless it already has that shape.
template <class T>
void ensure_shape(tensor_t<T>& t, const tensor_t<T>& like, index rows, index cols) {
  if (backend_traits<T>::rows(t) != rows || backend_traits<T>::cols(t) != cols)
    t = backend_traits<T>::full(like, rows, cols, 0.0);
}

template <class T, class G>
void tiled_brain_loss(loss_result<T>& out, const samples<tensor_t<T>>& s, const G& goodness, const options& opt) {
  using ops = backend_traits<T>;
  const index prompts = ops::rows(s.log_policy), n = ops::cols(s.log_policy);
  const index tile_rows = std::max<index>(1, tile_samples / n);
  tensor_t<T> per_prompt = ops::full(s.log_policy, prompts, 1, 0.0);
  ensure_shape<T>(out.target_weights, s.log_policy, prompts, n);
  ensure_shape<T>(out.baseline_weights, s.log_policy, prompts, n);
  ensure_shape<T>(out.grad_log_policy, s.log_policy, prompts, n);
  for (index begin = 0; begin < prompts; begin += tile_rows) {
    const index count = std::min(tile_rows, prompts - begin);
    // A tile of row views; the backend's operations accept them as they accept tensors.
    using block = decltype(ops::row_block(s.log_policy, begin, count));
    struct {
      block log_policy, log_proposal, log_prior, reward;
    } const tile{ops::row_block(s.log_policy, begin, count), ops::row_block(s.log_proposal, begin, count),
                 ops::row_block(s.log_prior, begin, count), ops::row_block(s.reward, begin, count)};
    const auto parts = group_loss<T>(tile, goodness, opt, prompts, begin);
    ops::assign_rows(per_prompt, begin, parts.per_prompt);
    ops::assign_rows(out.target_weights, begin, parts.target_weights);
    ops::assign_rows(out.baseline_weights, begin, parts.baseline_weights);
    ops::assign_rows(out.grad_log_policy, begin, parts.grad_log_policy);
  }
  out.loss = ops::mean(per_prompt);
  out.per_prompt = ops::to_vector(per_prompt);
}

/// Backends with a fused group loss for goodness model G (backend.hpp's optional group_loss).
template <class T, class G>
concept FusedGroupLossBackend = requires(loss_result<T>& out, const samples<tensor_t<T>>& s, const G& goodness) {
  { backend_traits<T>::group_loss(out, s, goodness, options{}) } -> std::same_as<fused_result>;
};

}  // namespace detail

/// brain_loss writing into `out`, whose tensors are reused when their shapes already match (no
/// allocation of the [prompts, n] results in a training loop, on backends with row blocks).
template <Backend T, GoodnessModel<T> G = bradley_terry>
void brain_loss_into(loss_result<T>& out, const samples<T>& input, const G& goodness = {}, const options& opt = {}) {
  using ops = backend_traits<T>;
  const auto& s = detail::as_tensors(input);
  goodness.validate();
  if (opt.validate) detail::check_sample_shapes<T>("brain_loss", s);
  const index prompts = ops::rows(s.log_policy), n = ops::cols(s.log_policy);
  if constexpr (detail::FusedGroupLossBackend<T, G>) {
    if (opt.target == target_rule::softmax) {  // the fused kernels implement the softmax target
      const fused_result fused = ops::group_loss(out, s, goodness, opt);
      if (fused == fused_result::done) return;
      if (fused == fused_result::bad_input) {
        // Name the bad input as the composed path does: it throws on the first bad value.
        (void)detail::group_loss<T>(s, goodness, opt, prompts, 0);
        detail::fail("brain_loss", "the fused kernel found a bad group that validation does not name");
      }
    }
  }
  if constexpr (detail::RowBlockBackend<T>) {
    if (prompts * n > 2 * detail::tile_samples) return detail::tiled_brain_loss<T>(out, s, goodness, opt);
  }
  auto parts = detail::group_loss<T>(s, goodness, opt, prompts, 0);
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
