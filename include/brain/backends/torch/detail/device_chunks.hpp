#pragma once
// brain::libtorch's log-prob operations (backends/torch/log_probs.hpp is the header to include):
// devices other than the CPU. What a device registers (its sequence_log_probs and the row kernels
// of the fused path), the program-wide registry it registers in, and
// fused_linear_sequence_log_probs off the CPU: chunks of tokens times the whole vocabulary.

#include <brain/backends/torch/detail/autograd_common.hpp>
#include <brain/backends/torch/detail/device_registry.hpp>
#include <brain/backends/torch/detail/plain_composition.hpp>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace brain::inline v0::libtorch::detail {

/// A device's per-row kernels for the fused path's token chunks (CUDA: brain::cuda's). forward:
/// lse, log_prob and threshold [R] of logits [R, V] (float or double, contiguous) for labels [R]
/// under the settings; backward: overwrites the logits with the gradient of
/// Σ_r upstream_r · log p(label_r), given the forward's lse and threshold. Either returns false
/// to decline (a dtype it lacks): ATen operations run instead.
struct device_rows {
  bool (*forward)(const at::Tensor& logits, const at::Tensor& labels, const sampling& s, at::Tensor& lse,
                  at::Tensor& log_prob, at::Tensor& threshold);
  bool (*backward)(at::Tensor& logits, const at::Tensor& labels, const sampling& s, const at::Tensor& lse,
                   const at::Tensor& threshold, const at::Tensor& upstream);
};

/// A device's implementation of sequence_log_probs (the reduced result, with autograd), for
/// logits of that device; nullptr `sequence` declines (e.g. an unsupported dtype).
struct device_log_probs {
  at::Tensor (*sequence)(const at::Tensor& logits, const token_selection& s, const log_prob_options& opt);
  const device_rows* rows = nullptr;  ///< for fused_linear_sequence_log_probs; nullptr: ATen operations
};

/// The program-wide registry of the log-prob operations' device implementations
/// (backends/torch/detail/device_registry.hpp), and its two uses.
using log_probs_registry = brain::detail::device_registry<device_log_probs>;

/// Registers `impl` for tensors of `type` (at static initialisation); returns true.
inline bool register_device_log_probs(c10::DeviceType type, const device_log_probs* impl) {
  return log_probs_registry::add(type, impl);
}
/// The implementation registered for tensors of `type`, or nullptr.
inline const device_log_probs* find_device_log_probs(c10::DeviceType type) { return log_probs_registry::find(type); }

/// The fused path on other devices (CUDA): chunks of `chunk` tokens times the whole vocabulary,
/// each chunk's logits one ATen product then the device's row kernels (`rows`; ATen operations
/// when it has none or declines), so at most chunk x V logits exist, forward and backward; the
/// backward recomputes them. Products run in the accumulation dtype (float32 for half and
/// bfloat16), as on the CPU. `eager` as fused_linear_function.
struct chunked_linear_function : ::torch::autograd::Function<chunked_linear_function> {
  // Rows forward: the device's kernels, else log_softmax (under the settings) and gather.
  static void rows_forward(const device_rows* rows, const at::Tensor& logits, const at::Tensor& labels,
                           const sampling& s, at::Tensor lse, at::Tensor log_prob, at::Tensor threshold) {
    if (rows != nullptr && rows->forward(logits, labels, s, lse, log_prob, threshold)) return;
    log_prob.copy_(sampled_log_softmax_unchecked(logits, s).gather(1, labels.unsqueeze(1)).squeeze(1));
  }
  // Rows backward: the gradient of Σ upstream_r log p(label_r) with respect to the logits
  // (in place when the device's kernels run).
  static at::Tensor rows_gradient(const device_rows* rows, at::Tensor& logits, const at::Tensor& labels,
                                  const sampling& s, const at::Tensor& lse, const at::Tensor& threshold,
                                  const at::Tensor& upstream) {
    if (rows != nullptr && rows->backward(logits, labels, s, lse, threshold, upstream)) return logits;
    const at::Tensor log_p = sampled_log_softmax_unchecked(logits, s);
    // ([j == y] - p'_j) / T for a kept label, 0 for one the settings drop (log p' = -inf).
    const at::Tensor kept = log_p.gather(1, labels.unsqueeze(1)) != -std::numeric_limits<double>::infinity();
    const at::Tensor up = upstream.unsqueeze(1) * kept.to(upstream.scalar_type()) / s.temperature;
    return (-log_p.exp() * up).scatter_add_(1, labels.unsqueeze(1), up);
  }

  // The device's row kernels travel through apply as an integer (a pointer is no autograd argument).
  static int64_t address(const device_rows* rows) {
    return static_cast<int64_t>(reinterpret_cast<std::intptr_t>(rows));
  }
  static const device_rows* rows_at(int64_t value) {
    return reinterpret_cast<const device_rows*>(static_cast<std::intptr_t>(value));
  }

  static at::Tensor forward(autograd_context* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& labels, const at::Tensor& active, int64_t shift, int64_t reduce,
                            int64_t chunk, bool validate, bool eager, double temperature, int64_t top_k, double top_p,
                            int64_t rows_address) {
    const token_settings settings = token_settings::of(shift, reduce, temperature, top_k, top_p);
    const sampling& sample = settings.sample;
    const device_rows* rows = rows_at(rows_address);
    const fused_forward_inputs in(hidden, weight, labels, active, shift);
    const at::Tensor &token_labels = in.labels, &h = in.h, &w = in.w;
    const int64_t count = in.count;
    const auto options = in.options;
    at::Tensor lse = at::zeros({count}, options), threshold = at::zeros({count}, options);
    at::Tensor token = at::empty({count}, options);
    at::Tensor unit_grad_hidden = eager ? at::empty({count, hidden.size(2)}, options) : at::Tensor();
    for (int64_t begin = 0; begin < count; begin += chunk) {
      const int64_t end = std::min(count, begin + chunk);
      at::Tensor logits = at::mm(h.slice(0, begin, end), w.t());
      const at::Tensor chunk_labels = token_labels.slice(0, begin, end);
      rows_forward(rows, logits, chunk_labels, sample, lse.slice(0, begin, end), token.slice(0, begin, end),
                   threshold.slice(0, begin, end));
      if (eager)
        unit_grad_hidden.slice(0, begin, end)
            .copy_(at::mm(rows_gradient(rows, logits, chunk_labels, sample, lse.slice(0, begin, end),
                                        threshold.slice(0, begin, end), at::ones({end - begin}, options)),
                          w));
    }
    ctx->saved_data["rows"] = rows_address;
    return finish_fused_forward(ctx, settings, hidden, weight, active, in, token, lse, threshold, unit_grad_hidden,
                                chunk, validate, eager);
  }

  static variable_list backward(autograd_context* ctx, variable_list grad_outputs) {
    const fused_backward_inputs in(ctx, grad_outputs);
    constexpr std::size_t inputs = 13;  // of forward
    if (in.eager || (!in.need_hidden && !in.need_weight)) return in.forward_gradients(inputs);
    const device_rows* rows = rows_at(ctx->saved_data["rows"].toInt());
    const at::Tensor &upstream = in.upstream, &token_labels = in.labels, &lse = in.lse, &threshold = in.threshold;
    const sampling& sample = in.sample;
    const bool need_hidden = in.need_hidden, need_weight = in.need_weight;
    const int64_t chunk = in.chunk, count = in.positions.size(0);
    const at::Tensor h = scoring_rows(in.hidden, in.positions, in.shift, in.acc_type);
    const at::Tensor w = in.weight.to(in.acc_type).contiguous();
    at::Tensor grad_rows = need_hidden ? at::empty_like(h) : at::Tensor();
    at::Tensor grad_weight = need_weight ? at::zeros_like(w) : at::Tensor();
    for (int64_t begin = 0; begin < count; begin += chunk) {
      const int64_t end = std::min(count, begin + chunk);
      at::Tensor logits = at::mm(h.slice(0, begin, end), w.t());  // recomputed
      const at::Tensor g =
          rows_gradient(rows, logits, token_labels.slice(0, begin, end), sample, lse.slice(0, begin, end),
                        threshold.slice(0, begin, end), upstream.slice(0, begin, end));
      if (need_hidden) {
        at::Tensor out = grad_rows.slice(0, begin, end);
        at::mm_out(out, g, w);
      }
      if (need_weight) grad_weight.addmm_(g.t(), h.slice(0, begin, end));
    }
    return in.gradients(inputs, grad_rows, grad_weight);
  }
};

/// fused_linear_sequence_log_probs off the CPU: chunked_linear_function with the device's row
/// kernels.
inline at::Tensor chunked_linear_log_probs(const at::Tensor& hidden, const at::Tensor& weight, const token_selection& s,
                                           int64_t chunk, const log_prob_options& opt, const device_rows* rows) {
  const bool eager = at::GradMode::is_enabled() && hidden.requires_grad() && !weight.requires_grad();
  const sampling& sample = opt.sample;
  return chunked_linear_function::apply(
      hidden, weight, s.labels.contiguous(), s.active.contiguous(), s.shift, static_cast<int64_t>(opt.reduce), chunk,
      opt.validate, eager, sample.temperature, sample.top_k, sample.top_p, chunked_linear_function::address(rows));
}

}  // namespace brain::inline v0::libtorch::detail
