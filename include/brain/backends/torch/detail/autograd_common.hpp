#pragma once
// brain::libtorch's log-prob operations (backends/torch/log_probs.hpp is the header to include):
// what the autograd functions share. Every function takes the token settings (shift, reduction,
// sampling) as scalars and saves them for its backward; sequence_log_probs's two functions (CPU,
// CUDA) share their inputs, their forward's end and their backward's start and end;
// fused_linear_sequence_log_probs's two (CPU tiles, device chunks) share their forward's inputs
// and end and their backward's start and end.

#include <brain/backends/torch/detail/selection.hpp>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace brain::inline v0::libtorch::detail {

using autograd_context = ::torch::autograd::AutogradContext;
using variable_list = ::torch::autograd::variable_list;

/// The settings every log-prob autograd function takes (as scalars: apply takes no struct) and
/// saves for its backward: the label shift, the reduction and the sampler's settings.
struct token_settings {
  int64_t shift = 0;
  reduction reduce = reduction::sum;
  sampling sample = {};

  /// From a forward's scalar arguments.
  static token_settings of(int64_t shift, int64_t reduce, double temperature, int64_t top_k, double top_p) {
    return {shift, static_cast<reduction>(reduce), {temperature, top_k, top_p}};
  }
  void save(autograd_context* ctx) const {
    ctx->saved_data["shift"] = shift;
    ctx->saved_data["reduce"] = static_cast<int64_t>(reduce);
    ctx->saved_data["temperature"] = sample.temperature;
    ctx->saved_data["top_k"] = sample.top_k;
    ctx->saved_data["top_p"] = sample.top_p;
  }
  static token_settings load(autograd_context* ctx) {
    return of(ctx->saved_data["shift"].toInt(), ctx->saved_data["reduce"].toInt(),
              ctx->saved_data["temperature"].toDouble(), ctx->saved_data["top_k"].toInt(),
              ctx->saved_data["top_p"].toDouble());
  }
};

// ---- sequence_log_probs: sequence_log_probs_function (CPU), cuda_sequence_log_probs_function ----

/// The inputs of every sequence_log_probs autograd function F: logits [B, T, V], labels [B, T]
/// (per label position on the CPU, per logits row on CUDA), active [B, T], then the settings.
template <class F>
at::Tensor apply_sequence_function(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& active,
                                   int64_t shift, const log_prob_options& opt) {
  return F::apply(logits.contiguous(), labels.contiguous(), active.contiguous(), shift,
                  static_cast<int64_t>(opt.reduce), opt.validate, opt.sample.temperature, opt.sample.top_k,
                  opt.sample.top_p);
}
inline constexpr std::size_t sequence_function_inputs = 9;  // of apply_sequence_function's F::forward

/// The end of every sequence_log_probs forward: the per-token log-probs `token` [B, T] (per label
/// position) checked, the tensors backward needs saved with the settings, and the result reduced.
inline at::Tensor finish_sequence_forward(autograd_context* ctx, const token_settings& settings, bool validate,
                                          const at::Tensor& token, const at::Tensor& logits, const at::Tensor& labels,
                                          const at::Tensor& active, const at::Tensor& lse,
                                          const at::Tensor& threshold) {
  if (validate) check_finite_tokens("sequence_log_probs", token, active, settings.shift, settings.sample);
  ctx->save_for_backward({logits, labels, active, lse, threshold});
  settings.save(ctx);
  return reduce_tokens(token, active, settings.reduce);
}

/// What every sequence_log_probs backward starts from: finish_sequence_forward's tensors and
/// settings, and the upstream gradient per label position [B, T] in lse's dtype.
struct sequence_backward_inputs {
  at::Tensor logits, labels, active, lse, threshold, upstream;
  token_settings settings;
  sequence_backward_inputs(autograd_context* ctx, const variable_list& grad_outputs)
      : settings(token_settings::load(ctx)) {
    const auto saved = ctx->get_saved_variables();
    logits = saved[0], labels = saved[1], active = saved[2], lse = saved[3], threshold = saved[4];
    upstream = upstream_per_token(grad_outputs[0].to(lse.scalar_type()), active, settings.reduce);
  }
  /// The backward's result: the logits' gradient, none for the other inputs.
  static variable_list gradients(at::Tensor grad_logits) {
    variable_list grads(sequence_function_inputs);
    grads[0] = std::move(grad_logits);
    return grads;
  }
};

// ---- fused_linear_sequence_log_probs: fused_linear_function (CPU), chunked_linear_function ----

/// Chunks of at most this many of one sequence's tokens keep at most chunk x V logits alive: a
/// default from the vocabulary alone (about 16M logits, within [64, 2048]), so that how a
/// sequence is chunked never depends on the batch.
inline int64_t default_chunk_tokens(int64_t vocabulary) {
  const auto chunk = std::bit_floor(static_cast<uint64_t>(std::max<int64_t>(1, (int64_t{1} << 24) / vocabulary)));
  return std::clamp<int64_t>(static_cast<int64_t>(chunk), 64, 2048);
}

/// The rows of `hidden` [B, T, d] that score the label positions, in the accumulation dtype,
/// contiguous: each chunk of tokens is then one block.
inline at::Tensor scoring_rows(const at::Tensor& hidden, const at::Tensor& positions, int64_t shift,
                               at::ScalarType type) {
  return hidden.reshape({-1, hidden.size(2)}).index_select(0, positions - shift).to(type).contiguous();
}

/// What both fused forwards (CPU tiles, device chunks) start from: the scored label positions
/// (flat), their labels, the hidden rows scoring them and the weight, in the accumulation dtype.
struct fused_forward_inputs {
  at::ScalarType type;  // the accumulation dtype
  at::TensorOptions options;
  at::Tensor positions, labels, h, w;
  int64_t count;
  fused_forward_inputs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& all_labels,
                       const at::Tensor& active, int64_t shift)
      : type(accumulate_type(hidden.scalar_type())),
        options(hidden.options().dtype(type)),
        positions(at::nonzero(active.reshape({-1})).reshape({-1})),
        labels(all_labels.reshape({-1}).index_select(0, positions).contiguous()),
        h(scoring_rows(hidden, positions, shift, type)),
        w(weight.to(type).contiguous()),
        count(positions.size(0)) {}
};

/// The end both fused forwards share: the per-token log-probs [count] as [B, T], checked, saved
/// for backward (hidden, weight, active, positions, labels, lse, threshold, unit_grad_hidden,
/// token) with the settings, and reduced.
inline at::Tensor finish_fused_forward(autograd_context* ctx, const token_settings& settings, const at::Tensor& hidden,
                                       const at::Tensor& weight, const at::Tensor& active,
                                       const fused_forward_inputs& in, const at::Tensor& token, const at::Tensor& lse,
                                       const at::Tensor& threshold, const at::Tensor& unit_grad_hidden, int64_t chunk,
                                       bool validate, bool eager) {
  at::Tensor per_token = at::zeros({hidden.size(0) * hidden.size(1)}, in.options);
  per_token.index_copy_(0, in.positions, token);
  per_token = per_token.view({hidden.size(0), hidden.size(1)});
  if (validate)
    check_finite_tokens("fused_linear_sequence_log_probs", per_token, active, settings.shift, settings.sample);
  ctx->save_for_backward({hidden, weight, active, in.positions, in.labels, lse, threshold, unit_grad_hidden, token});
  settings.save(ctx);
  ctx->saved_data["chunk"] = chunk;
  ctx->saved_data["eager"] = eager;
  return reduce_tokens(per_token, active, settings.reduce);
}

/// What both fused backwards start from: finish_fused_forward's saved tensors and settings, and
/// the upstream gradient per scored token.
struct fused_backward_inputs {
  at::Tensor hidden, weight, active, positions, labels, lse, threshold, unit_grad_hidden, token, upstream;
  int64_t shift, chunk;
  sampling sample;
  bool need_hidden, need_weight, eager;
  at::ScalarType acc_type;
  fused_backward_inputs(autograd_context* ctx, const variable_list& grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    hidden = saved[0], weight = saved[1], active = saved[2], positions = saved[3], labels = saved[4];
    lse = saved[5], threshold = saved[6], unit_grad_hidden = saved[7], token = saved[8];
    const token_settings settings = token_settings::load(ctx);
    shift = settings.shift;
    sample = settings.sample;
    chunk = ctx->saved_data["chunk"].toInt();
    need_hidden = ctx->needs_input_grad(0);
    need_weight = ctx->needs_input_grad(1);
    eager = ctx->saved_data["eager"].toBool();
    acc_type = lse.scalar_type();
    upstream = upstream_per_token(grad_outputs[0].to(acc_type), active, settings.reduce)
                   .reshape({-1})
                   .index_select(0, positions)
                   .contiguous();
  }
  /// A gradient per scored token [count, d] as hidden's [B, T, d], in hidden's dtype.
  at::Tensor hidden_gradient(const at::Tensor& per_row) const {
    at::Tensor g = at::zeros({hidden.size(0) * hidden.size(1), hidden.size(2)}, per_row.options());
    g.index_add_(0, positions - shift, per_row);
    return g.view(hidden.sizes()).to(hidden.scalar_type());
  }
  /// The gradients forward already formed: hidden's on the frozen-head (eager) path; none when
  /// nothing needs one.
  variable_list forward_gradients(std::size_t inputs) const {
    variable_list grads(inputs);
    if (need_hidden) grads[0] = hidden_gradient(unit_grad_hidden * upstream.unsqueeze(1));
    return grads;
  }
  /// The backward's result from the gradients it accumulated: per scored token for hidden
  /// ([count, d]; used only if hidden needs one) and the weight's in the accumulation dtype (used
  /// only if it needs one); none for the other inputs.
  variable_list gradients(std::size_t inputs, const at::Tensor& grad_rows, const at::Tensor& grad_weight) const {
    variable_list grads(inputs);
    if (need_hidden) grads[0] = hidden_gradient(grad_rows);
    if (need_weight) grads[1] = grad_weight.to(weight.scalar_type());
    return grads;
  }
};

}  // namespace brain::inline v0::libtorch::detail
