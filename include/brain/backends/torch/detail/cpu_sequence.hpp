#pragma once
// brain::libtorch's log-prob operations (backends/torch/log_probs.hpp is the header to include):
// sequence_log_probs's autograd function on CPU tensors, brain's row kernels over
// at::parallel_for.

#include <brain/backends/torch/detail/autograd_common.hpp>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace brain::inline v0::libtorch::detail {

/// Forward of one token row under the settings: its normaliser (lse, threshold) and log-prob.
template <class In, class Acc = kernels::accumulate_t<In>>
Acc token_forward(const In* row, int64_t vocabulary, int64_t label, const sampling& s, std::vector<Acc>& scratch,
                  Acc& lse, Acc& threshold) {
  threshold = kernels::truncation_threshold(row, vocabulary, s, scratch);
  const kernels::sampled_row<Acc> normaliser = kernels::sampled_row_logsumexp(row, vocabulary, s, threshold);
  lse = normaliser.lse;
  return kernels::sampled_token_log_prob(row, label, s, normaliser);
}

/// sequence_log_probs on CPU tensors (apply_sequence_function's inputs): every token row alone,
/// in parallel over rows.
struct sequence_log_probs_function : ::torch::autograd::Function<sequence_log_probs_function> {
  // logits [B, T, V] contiguous; returns per-token log-probs [B, T] reduced by `reduce`.
  static at::Tensor forward(autograd_context* ctx, const at::Tensor& logits, const at::Tensor& labels,
                            const at::Tensor& active, int64_t shift, int64_t reduce, bool validate, double temperature,
                            int64_t top_k, double top_p) {
    const token_settings settings = token_settings::of(shift, reduce, temperature, top_k, top_p);
    const sampling& sample = settings.sample;
    const int64_t batch = logits.size(0), time = logits.size(1), vocabulary = logits.size(2);
    const auto acc_type = accumulate_type(logits.scalar_type());
    at::Tensor lse = at::zeros({batch, time}, logits.options().dtype(acc_type));
    at::Tensor threshold = at::zeros({batch, time}, logits.options().dtype(acc_type));
    at::Tensor token = at::zeros({batch, time}, logits.options().dtype(acc_type));
    const int64_t* label_ptr = labels.data_ptr<int64_t>();
    const bool* active_ptr = active.data_ptr<bool>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "brain::sequence_log_probs", [&] {
      using acc = kernels::accumulate_t<scalar_t>;
      const scalar_t* x = logits.data_ptr<scalar_t>();
      acc* lse_ptr = lse.data_ptr<acc>();
      acc* threshold_ptr = threshold.data_ptr<acc>();
      acc* token_ptr = token.data_ptr<acc>();
      at::parallel_for(0, batch * time, 1, [&](int64_t begin, int64_t end) {
        std::vector<acc> scratch;
        for (int64_t i = begin; i < end; ++i) {  // i = b * time + t, a label position
          if (!active_ptr[i] || i % time < shift) continue;
          token_ptr[i] = token_forward(x + (i - shift) * vocabulary, vocabulary, label_ptr[i], sample, scratch,
                                       lse_ptr[i], threshold_ptr[i]);
        }
      });
    });
    return finish_sequence_forward(ctx, settings, validate, token, logits, labels, active, lse, threshold);
  }

  static variable_list backward(autograd_context* ctx, variable_list grad_outputs) {
    const sequence_backward_inputs in(ctx, grad_outputs);
    const at::Tensor &logits = in.logits, &lse = in.lse, &threshold = in.threshold;
    const int64_t shift = in.settings.shift;
    const sampling& sample = in.settings.sample;
    const int64_t batch = logits.size(0), time = logits.size(1), vocabulary = logits.size(2);
    const at::Tensor upstream = in.upstream.contiguous();
    at::Tensor grad = at::empty_like(logits);  // every row is written below: one pass, no zero-fill
    const int64_t* label_ptr = in.labels.data_ptr<int64_t>();
    const bool* active_ptr = in.active.data_ptr<bool>();
    constexpr const char* name = "brain::sequence_log_probs_backward";
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), name, [&] {
      using acc = kernels::accumulate_t<scalar_t>;
      const scalar_t* x = logits.data_ptr<scalar_t>();
      scalar_t* g = grad.data_ptr<scalar_t>();
      const acc* lse_ptr = lse.data_ptr<acc>();
      const acc* threshold_ptr = threshold.data_ptr<acc>();
      const acc* up = upstream.data_ptr<acc>();
      at::parallel_for(0, batch * time, 1, [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {  // row = b * time + s, a logits position
          const int64_t i = row + shift;               // the label position it scores
          if (row % time + shift < time && active_ptr[i])
            kernels::sampled_token_log_prob_backward(x + row * vocabulary, vocabulary, label_ptr[i], sample,
                                                     kernels::sampled_row<acc>{lse_ptr[i], threshold_ptr[i]}, up[i],
                                                     g + row * vocabulary);
          else
            std::fill(g + row * vocabulary, g + (row + 1) * vocabulary, scalar_t(0));
        }
      });
    });
    return sequence_backward_inputs::gradients(grad);
  }
};

}  // namespace brain::inline v0::libtorch::detail
