#pragma once
// The LibTorch backend: at::Tensor (= torch::Tensor) of shape [prompts, n], on any device.
//
// - Autograd: the returned loss is a 0-dim tensor whose gradient with respect to log_policy is
//   grad_log_policy; proposal, prior, reward and the target weights are detached.
// - float16 / bfloat16 inputs are computed in float32 (log-softmax in half precision is where
//   users of other libraries get NaNs), and the results are float32.
// - Every new tensor is made with the input's options, so CUDA tensors stay on their device; the
//   only host reads are the scalars of validation (one sync per check) and error messages.
//
// ATen and LibTorch's custom autograd function are included, not torch/torch.h: they are all the
// operations need, and compile faster.

#include <brain/backend.hpp>
#include <brain/backends/torch/detail/device_registry.hpp>
#include <brain/goodness.hpp>
#include <brain/kernels/group_loss.hpp>
#include <brain/options.hpp>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <limits>
#include <optional>
#include <utility>

namespace brain::inline v0 {
namespace detail {

/// The fused loss's outputs are {loss, per_prompt, target, baseline, grad}; `grad` (saved) is
/// (beta-bar - alpha-bar) / prompts (Theorem 4.2), and d per_prompt_i / d log_policy_ij is
/// beta-bar_ij - alpha-bar_ij, so one multiply-add serves both differentiable outputs. Returns
/// the gradient for log_policy, then `inputs - 1` undefined ones.
inline torch::autograd::variable_list fused_group_loss_backward(torch::autograd::AutogradContext* ctx,
                                                                const torch::autograd::variable_list& upstream,
                                                                std::size_t inputs) {
  const at::Tensor grad = ctx->get_saved_variables()[0];
  at::Tensor result;
  if (upstream[0].defined()) result = grad * upstream[0];
  if (upstream[1].defined()) {
    const at::Tensor per_prompt_part = grad * (upstream[1].unsqueeze(1) * static_cast<double>(grad.size(0)));
    result = result.defined() ? result + per_prompt_part : per_prompt_part;
  }
  torch::autograd::variable_list grads(inputs);
  grads[0] = result;
  return grads;
}

/// The fused loss's result tensors, made like log_policy, and the raw views the kernels take; the
/// CPU and the CUDA autograd functions share them.
struct fused_group_loss_tensors {
  at::Tensor loss, per_prompt, target, baseline, grad;
  explicit fused_group_loss_tensors(const at::Tensor& log_policy)
      : loss(at::empty({}, log_policy.options())),
        per_prompt(at::empty({log_policy.size(0)}, log_policy.options())),
        target(at::empty_like(log_policy)),
        baseline(at::empty_like(log_policy)),
        grad(at::empty_like(log_policy)) {}
  template <class S>
  static kernels::group_loss_inputs<S> inputs(const at::Tensor& log_policy, const at::Tensor& log_proposal,
                                              const at::Tensor& log_prior, const at::Tensor& reward) {
    return {log_policy.data_ptr<S>(), log_proposal.data_ptr<S>(), log_prior.data_ptr<S>(),
            reward.data_ptr<S>(),     log_policy.size(0),         log_policy.size(1)};
  }
  template <class S>
  kernels::group_loss_outputs<S> outputs() {
    return {target.data_ptr<S>(), baseline.data_ptr<S>(), grad.data_ptr<S>(), per_prompt.data_ptr<S>(),
            loss.data_ptr<S>()};
  }
  /// The forward's end: the weights and gradient are not differentiable, the gradient is saved for
  /// fused_group_loss_backward, an unused output's gradient stays undefined (no zeros made).
  torch::autograd::variable_list finish(torch::autograd::AutogradContext* ctx) const {
    ctx->set_materialize_grads(false);
    ctx->mark_non_differentiable({target, baseline, grad});
    ctx->save_for_backward({grad});
    return {loss, per_prompt, target, baseline, grad};
  }
};

/// A goodness model of brain/goodness.hpp as data, for device implementations compiled apart
/// (brain::cuda's); other models run the composed path on such devices.
struct builtin_goodness {
  enum class model : int { bradley_terry, logistic, log_goodness } kind;
  double beta = 1.0;
};
template <class G>
std::optional<builtin_goodness> as_builtin(const G& goodness) {
  if constexpr (std::same_as<G, bradley_terry>)
    return builtin_goodness{builtin_goodness::model::bradley_terry, goodness.beta};
  else if constexpr (std::same_as<G, logistic>)
    return builtin_goodness{builtin_goodness::model::logistic};
  else if constexpr (std::same_as<G, log_goodness>)
    return builtin_goodness{builtin_goodness::model::log_goodness};
  else
    return std::nullopt;
}

/// A device's fused group loss: {loss, per_prompt, target, baseline, grad} (autograd as
/// fused_group_loss_backward) from contiguous [prompts, n] tensors of one floating dtype on that
/// device, or an empty list to decline. Sets *bad when validation found a bad group. With
/// `defer`, validation does not wait: a bad group is reported by a later call or by
/// check_deferred (which throws std::invalid_argument naming it).
struct device_group_loss {
  torch::autograd::variable_list (*run)(const at::Tensor& log_policy, const at::Tensor& log_proposal,
                                        const at::Tensor& log_prior, const at::Tensor& reward,
                                        builtin_goodness goodness, bool validate, bool defer, bool* bad);
  /// Waits for this thread's deferred checks on the device and throws if one failed.
  void (*check_deferred)() = nullptr;
};

/// The program-wide registry of device implementations of the fused loss, by device type
/// (brain/backends/torch/detail/device_registry.hpp, whose template the log-prob operations'
/// registry is made of too): one table per program, so no translation unit differs.
using group_loss_registry = device_registry<device_group_loss>;
/// Registers `impl` for tensors of `type` (at static initialisation); returns true.
inline bool register_device_group_loss(c10::DeviceType type, const device_group_loss* impl) {
  return group_loss_registry::add(type, impl);
}

/// brain_loss of CPU tensors as one autograd node. Forward: kernels::cpu_group_loss writes the loss,
/// per-prompt KLs, both weights and the gradient (eqs. 6, 11, 12, 14).
/// Inputs: contiguous tensors of one dtype, float or double.
template <class G>
struct fused_group_loss_function : torch::autograd::Function<fused_group_loss_function<G>> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& log_policy,
                                                const at::Tensor& log_proposal, const at::Tensor& log_prior,
                                                const at::Tensor& reward, const G& goodness,
                                                kernels::group_loss_report* report) {
    fused_group_loss_tensors results(log_policy);
    const auto run = [&]<class S>(S) {
      *report = kernels::cpu_group_loss_unchecked(
          fused_group_loss_tensors::inputs<S>(log_policy, log_proposal, log_prior, reward), results.outputs<S>(),
          goodness);
    };
    if (log_policy.scalar_type() == at::kDouble)
      run(double{});
    else
      run(float{});
    return results.finish(ctx);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list upstream) {
    return fused_group_loss_backward(ctx, upstream, 6);
  }
};

}  // namespace detail

template <>
struct backend_traits<at::Tensor> {
  using tensor = at::Tensor;
  using vector = at::Tensor;  ///< 1-D, [prompts]
  using scalar = at::Tensor;  ///< 0-dim

  /// The dtype brain computes in: float32 for float16 and bfloat16, else the input's own.
  static at::ScalarType compute_type(const at::Tensor& a) {
    const auto type = a.scalar_type();
    return type == at::kHalf || type == at::kBFloat16 ? at::kFloat : type;
  }
  static at::Tensor in(const at::Tensor& a) { return a.scalar_type() == compute_type(a) ? a : a.to(compute_type(a)); }

  static index dims(const at::Tensor& a) { return a.dim(); }
  static index rows(const at::Tensor& a) { return a.defined() && a.dim() > 0 ? a.size(0) : 0; }
  static index cols(const at::Tensor& a) { return a.defined() && a.dim() > 1 ? a.size(1) : 0; }
  static at::Tensor full(const at::Tensor& like, index rows, index cols, double value) {
    return at::full({rows, cols}, value, like.options().dtype(compute_type(like)));
  }

  static at::Tensor add(const at::Tensor& a, const at::Tensor& b) { return in(a) + in(b); }
  static at::Tensor sub(const at::Tensor& a, const at::Tensor& b) { return in(a)-in(b); }
  static at::Tensor mul(const at::Tensor& a, const at::Tensor& b) { return in(a)*in(b); }
  static at::Tensor affine(const at::Tensor& a, double scale, double shift) { return in(a)*scale + shift; }
  static at::Tensor exp(const at::Tensor& a) { return at::exp(in(a)); }
  static at::Tensor log(const at::Tensor& a) { return at::log(in(a)); }
  static at::Tensor clamp_min(const at::Tensor& a, double lo) { return at::clamp_min(in(a), lo); }

  static at::Tensor row_max(const at::Tensor& a) { return at::amax(in(a), {1}, /*keepdim=*/true); }
  static at::Tensor row_sum(const at::Tensor& a) { return in(a).sum({1}, /*keepdim=*/true); }
  static at::Tensor row_weighted_sum(const at::Tensor& w, const at::Tensor& a) {
    // where() rather than a product alone: 0 * inf must contribute 0. Its backward sends zero
    // gradient to the masked products, so no NaN reaches autograd either.
    const at::Tensor weights = in(w), product = weights * in(a);
    return at::where(weights == 0, at::zeros_like(product), product).sum({1}, /*keepdim=*/true);
  }
  static at::Tensor argmax_one_hot(const at::Tensor& a) {
    const at::Tensor x = in(a);
    return at::zeros_like(x).scatter_(1, x.argmax(1, /*keepdim=*/true), 1.0);
  }
  static at::Tensor sub_per_row(const at::Tensor& a, const at::Tensor& v) { return in(a)-in(v); }
  static at::Tensor regroup(const at::Tensor& a, index k) { return in(a).reshape({-1, k}); }

  static double value_at(const at::Tensor& a, index i, index j) { return a.select(0, i).select(0, j).item<double>(); }
  static at::Tensor to_vector(const at::Tensor& v) { return v.reshape({-1}); }
  static at::Tensor mean(const at::Tensor& v) { return v.mean(); }

  // Optional operations: fused or autograd-aware versions.
  static at::Tensor detach(const at::Tensor& a) { return a.detach(); }
  static at::Tensor row_logsumexp(const at::Tensor& a) { return at::logsumexp(in(a), {1}, /*keepdim=*/true); }
  static at::Tensor row_log_softmax(const at::Tensor& a) { return at::log_softmax(in(a), 1); }
  static at::Tensor log_sigmoid(const at::Tensor& a) { return at::log_sigmoid(in(a)); }
  static at::Tensor div_per_row(const at::Tensor& a, const at::Tensor& v) { return in(a) / in(v); }
  static at::Tensor is_positive(const at::Tensor& a) { return (in(a).detach() > 0).to(compute_type(a)); }
  /// x where keep > 0, else 0 (NaN too); gradients reach x at kept positions only.
  static at::Tensor zero_unless(const at::Tensor& keep, const at::Tensor& x) {
    const at::Tensor v = in(x);
    return at::where(in(keep).detach() > 0, v, at::zeros_like(v));
  }
  /// Optional: the fused loss as one autograd node: on CPU tensors kernels::cpu_group_loss
  /// (detail::fused_group_loss_function); on other devices the implementation registered for
  /// them (brain::cuda's kernel for CUDA tensors, below), for the goodness models of
  /// brain/goodness.hpp. Otherwise it declines and brain_loss composes ATen operations.
  template <class Out, class S, class G>
  static fused_result fused_group_loss(Out& out, const S& s, const G& goodness, const options& opt) {
    const at::Tensor* inputs[] = {&s.log_policy, &s.log_proposal, &s.log_prior, &s.reward};
    at::ScalarType type = compute_type(s.log_policy);
    const c10::Device device = s.log_policy.device();
    for (const at::Tensor* t : inputs) {
      if (t->device() != device || t->dim() != 2) return fused_result::declined;
      type = at::promote_types(type, compute_type(*t));
    }
    if (type != at::kFloat && type != at::kDouble) return fused_result::declined;
    const auto prepare = [&](const at::Tensor& t) { return t.to(type).contiguous(); };
    bool bad = false;
    torch::autograd::variable_list results;
    if (device.is_cpu()) {
      kernels::group_loss_report report;
      results = detail::fused_group_loss_function<G>::apply(prepare(s.log_policy), prepare(s.log_proposal).detach(),
                                                            prepare(s.log_prior).detach(), prepare(s.reward).detach(),
                                                            goodness, &report);
      bad = report.row >= 0;
    } else {
      const detail::device_group_loss* impl = detail::group_loss_registry::find(device.type());
      const std::optional<detail::builtin_goodness> model = detail::as_builtin(goodness);
      if (impl == nullptr || !model) return fused_result::declined;
      results = impl->run(prepare(s.log_policy), prepare(s.log_proposal).detach(), prepare(s.log_prior).detach(),
                          prepare(s.reward).detach(), *model, opt.validate, opt.validate && opt.defer_validation, &bad);
      if (results.empty()) return fused_result::declined;
    }
    out.loss = std::move(results[0]);
    out.per_prompt = std::move(results[1]);
    out.target_weights = std::move(results[2]);
    out.baseline_weights = std::move(results[3]);
    out.grad_log_policy = std::move(results[4]);
    return opt.validate && bad ? fused_result::bad_input : fused_result::done;
  }

  // One reduction and one host read per check: max propagates NaN and +inf; a sum is finite only
  // without NaN and infinities (or on overflow, which the exact check below then clears).
  static bool all_valid(const at::Tensor& a, bool allow_negative_infinity) {
    const at::Tensor x = in(a).detach();
    if (x.numel() == 0) return true;
    if (allow_negative_infinity) return at::amax(x).item<double>() < std::numeric_limits<double>::infinity();
    return std::isfinite(x.sum().item<double>()) || at::isfinite(x).all().item<bool>();
  }
  /// Position of the first NaN / +inf (/ -inf unless allowed), read in one transfer.
  static std::optional<std::pair<index, index>> first_invalid(const at::Tensor& a, bool allow_negative_infinity) {
    const at::Tensor x = in(a).detach();
    at::Tensor bad = at::isnan(x) | at::isposinf(x);
    if (!allow_negative_infinity) bad = bad | at::isneginf(x);
    const at::Tensor where = at::nonzero(bad);
    if (where.size(0) == 0) return std::nullopt;
    const at::Tensor first = where.select(0, 0).cpu();
    return std::pair<index, index>{first[0].item<int64_t>(), first[1].item<int64_t>()};
  }
};

/// Waits for the checks that brain_loss calls with options::defer_validation left pending on this
/// thread (CUDA tensors), and throws std::invalid_argument for the first bad group they found,
/// naming its row and check. Does nothing where nothing is pending or nothing runs asynchronously.
inline void check_deferred_validation() {
  for (const detail::device_group_loss* impl : detail::group_loss_registry::all())
    if (impl != nullptr && impl->check_deferred != nullptr) impl->check_deferred();
}

}  // namespace brain::inline v0

// brain::cuda's group-loss kernel for CUDA tensors, registered from every translation unit that
// can see it (as brain/backends/torch/detail/cuda_registration.hpp registers the log-prob kernels).
// c10/cuda/impl/cuda_cmake_macros.h exists only in CUDA builds of LibTorch.
#if defined(BRAIN_WITH_CUDA) && __has_include(<c10/cuda/impl/cuda_cmake_macros.h>)
#include <brain/backends/cuda.hpp>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <map>
#include <stdexcept>

namespace brain::inline v0::detail {

/// This thread's deferred checks of the fused loss, one per CUDA device (options::defer_validation).
inline std::map<int, brain::cuda::deferred_check>& deferred_group_loss_checks() {
  thread_local std::map<int, brain::cuda::deferred_check> checks;
  return checks;
}
inline void cuda_check_deferred() {
  for (auto& [device, check] : deferred_group_loss_checks()) check.check("brain_loss");
}

/// The fused loss on CUDA tensors: one launch_group_loss on the tensors' stream. With
/// validation, the one device-to-host read of the call is the kernel's status word; a bad group
/// sets *bad, and brain_loss names it. With `defer`, nothing waits: the status is read by the next
/// deferred call on this device and thread (first thing, so an earlier bad group throws before
/// anything else runs) or by check_deferred_validation().
struct cuda_group_loss_function : torch::autograd::Function<cuda_group_loss_function> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& log_policy,
                                                const at::Tensor& log_proposal, const at::Tensor& log_prior,
                                                const at::Tensor& reward, int64_t model, double beta, bool validate,
                                                bool defer, bool* bad) {
    const c10::cuda::CUDAGuard guard(log_policy.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(log_policy.device().index()).stream();
    brain::cuda::deferred_check* deferred =
        defer ? &deferred_group_loss_checks()[log_policy.device().index()] : nullptr;
    if (deferred != nullptr) deferred->check("brain_loss");  // an earlier call's bad group throws here
    fused_group_loss_tensors results(log_policy);
    const auto launch = [&]<class S, class G>(S, const G& goodness) {
      const auto inputs = fused_group_loss_tensors::inputs<S>(log_policy, log_proposal, log_prior, reward);
      if (deferred != nullptr)
        return brain::cuda::launch_group_loss<S, G>(inputs, results.outputs<S>(), goodness, stream, *deferred);
      try {
        brain::cuda::launch_group_loss<S, G>(inputs, results.outputs<S>(), goodness, stream, validate);
      } catch (const std::invalid_argument&) {  // a bad group: brain_loss names it in its own words
        *bad = true;
      }
    };
    const auto with_model = [&]<class S>(S zero) {
      switch (static_cast<builtin_goodness::model>(model)) {
        case builtin_goodness::model::bradley_terry:
          return launch(zero, bradley_terry{.beta = beta});
        case builtin_goodness::model::logistic:
          return launch(zero, logistic{});
        case builtin_goodness::model::log_goodness:
          return launch(zero, log_goodness{});
      }
    };
    if (log_policy.scalar_type() == at::kDouble)
      with_model(double{});
    else
      with_model(float{});
    return results.finish(ctx);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list upstream) {
    return fused_group_loss_backward(ctx, upstream, 9);
  }
};

inline torch::autograd::variable_list cuda_group_loss(const at::Tensor& log_policy, const at::Tensor& log_proposal,
                                                      const at::Tensor& log_prior, const at::Tensor& reward,
                                                      builtin_goodness goodness, bool validate, bool defer, bool* bad) {
  return cuda_group_loss_function::apply(log_policy, log_proposal, log_prior, reward,
                                         static_cast<int64_t>(goodness.kind), goodness.beta, validate, defer, bad);
}

inline const device_group_loss cuda_group_loss_entry{&cuda_group_loss, &cuda_check_deferred};
inline const bool cuda_group_loss_registered =
    register_device_group_loss(c10::DeviceType::CUDA, &cuda_group_loss_entry);

}  // namespace brain::inline v0::detail
#endif
