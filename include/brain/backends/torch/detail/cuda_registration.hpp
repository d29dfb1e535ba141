#pragma once
// brain::libtorch's log-prob operations (backends/torch/log_probs.hpp is the header to include):
// brain::cuda's kernels for CUDA tensors, registered in the program-wide registry from every
// translation unit that can see them (identical definitions wherever they appear): those compiled
// with BRAIN_WITH_CUDA (linking brain::cuda) against a CUDA build of LibTorch.
// c10/cuda/impl/cuda_cmake_macros.h is generated only by CUDA builds of LibTorch (Debian ships the
// other c10/cuda headers without it); elsewhere this header defines nothing.

#include <brain/backends/torch/detail/autograd_common.hpp>
#include <brain/backends/torch/detail/device_chunks.hpp>

#if defined(BRAIN_WITH_CUDA) && __has_include(<c10/cuda/impl/cuda_cmake_macros.h>)
#include <brain/backends/cuda.hpp>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>

namespace brain::inline v0::libtorch::detail {

/// brain::cuda's kernels run on the device of `t`, on its current stream: the guard and stream
/// every call below starts with.
struct cuda_call {
  c10::cuda::CUDAGuard guard;
  cudaStream_t stream;
  explicit cuda_call(const at::Tensor& t)
      : guard(t.device()), stream(c10::cuda::getCurrentCUDAStream(t.device().index()).stream()) {}
};

/// [B, T] per logits row: the label it scores, or -1 where it scores nothing (inactive label
/// position, or the last `shift` positions): the raw kernels' row labels.
inline at::Tensor row_labels(const token_selection& s) {
  const int64_t time = s.labels.size(1);
  at::Tensor rows = at::full_like(s.labels, -1);
  if (time > s.shift) {
    const at::Tensor labels = s.labels.slice(1, s.shift, time);
    rows.slice(1, 0, time - s.shift)
        .copy_(at::where(s.active.slice(1, s.shift, time), labels, at::full_like(labels, -1)));
  }
  return rows.contiguous();
}

/// Moves [B, T] values between logits rows and the label positions they score (label position
/// t = row t + shift); positions without a source get 0.
inline at::Tensor shift_time(const at::Tensor& x, int64_t from, int64_t to) {
  const int64_t time = x.size(1), shift = from > to ? from - to : to - from;
  if (shift == 0) return x.contiguous();
  at::Tensor out = at::zeros_like(x);
  if (time > shift) out.slice(1, to, to + time - shift).copy_(x.slice(1, from, from + time - shift));
  return out;
}

/// sequence_log_probs_function on CUDA tensors (float, double; apply_sequence_function's inputs,
/// with labels per logits row): brain::cuda's kernels.
struct cuda_sequence_log_probs_function : ::torch::autograd::Function<cuda_sequence_log_probs_function> {
  static at::Tensor forward(autograd_context* ctx, const at::Tensor& logits, const at::Tensor& rows,
                            const at::Tensor& active, int64_t shift, int64_t reduce, bool validate, double temperature,
                            int64_t top_k, double top_p) {
    const token_settings settings = token_settings::of(shift, reduce, temperature, top_k, top_p);
    const cuda_call call(logits);
    const int64_t batch = logits.size(0), time = logits.size(1), vocabulary = logits.size(2);
    at::Tensor lse = at::empty({batch, time}, logits.options());
    at::Tensor threshold = at::empty({batch, time}, logits.options());
    at::Tensor per_row = at::empty({batch, time}, logits.options());
    AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "brain::sequence_log_probs (CUDA)", [&] {
      brain::cuda::token_log_probs<scalar_t>(
          logits.data_ptr<scalar_t>(), batch * time, vocabulary, rows.data_ptr<int64_t>(), lse.data_ptr<scalar_t>(),
          per_row.data_ptr<scalar_t>(), call.stream, settings.sample, threshold.data_ptr<scalar_t>());
    });
    const at::Tensor token = shift_time(per_row, 0, shift);  // per label position
    return finish_sequence_forward(ctx, settings, validate, token, logits, rows, active, lse, threshold);
  }

  static variable_list backward(autograd_context* ctx, variable_list grad_outputs) {
    const sequence_backward_inputs in(ctx, grad_outputs);
    const at::Tensor& logits = in.logits;
    const cuda_call call(logits);
    const at::Tensor upstream = shift_time(in.upstream, in.settings.shift, 0);  // per logits row
    at::Tensor grad = at::empty_like(logits);                                   // every row is written by the kernel
    AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "brain::sequence_log_probs_backward (CUDA)", [&] {
      brain::cuda::token_log_probs_backward<scalar_t>(
          logits.data_ptr<scalar_t>(), logits.size(0) * logits.size(1), logits.size(2), in.labels.data_ptr<int64_t>(),
          in.lse.data_ptr<scalar_t>(), upstream.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), call.stream,
          in.settings.sample, in.threshold.data_ptr<scalar_t>());
    });
    return sequence_backward_inputs::gradients(grad);
  }
};

/// The CUDA entry of the registry: float32 and float64 logits; other dtypes decline.
inline at::Tensor cuda_sequence_log_probs(const at::Tensor& logits, const token_selection& s,
                                          const log_prob_options& opt) {
  if (logits.scalar_type() != at::kFloat && logits.scalar_type() != at::kDouble) return {};
  return apply_sequence_function<cuda_sequence_log_probs_function>(logits, row_labels(s), s.active, s.shift, opt);
}

/// The fused path's row kernels on CUDA tensors (float32, float64): brain::cuda's, on the
/// current stream, in place for the backward.
inline bool cuda_rows_forward(const at::Tensor& logits, const at::Tensor& labels, const sampling& s, at::Tensor& lse,
                              at::Tensor& log_prob, at::Tensor& threshold) {
  if (logits.scalar_type() != at::kFloat && logits.scalar_type() != at::kDouble) return false;
  const cuda_call call(logits);
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "brain::fused_linear_sequence_log_probs (CUDA)", [&] {
    brain::cuda::token_log_probs<scalar_t>(
        logits.data_ptr<scalar_t>(), logits.size(0), logits.size(1), labels.data_ptr<int64_t>(),
        lse.data_ptr<scalar_t>(), log_prob.data_ptr<scalar_t>(), call.stream, s, threshold.data_ptr<scalar_t>());
  });
  return true;
}
inline bool cuda_rows_backward(at::Tensor& logits, const at::Tensor& labels, const sampling& s, const at::Tensor& lse,
                               const at::Tensor& threshold, const at::Tensor& upstream) {
  if (logits.scalar_type() != at::kFloat && logits.scalar_type() != at::kDouble) return false;
  const cuda_call call(logits);
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "brain::fused_linear_sequence_log_probs_backward (CUDA)", [&] {
    brain::cuda::token_log_probs_backward<scalar_t>(logits.data_ptr<scalar_t>(), logits.size(0), logits.size(1),
                                                    labels.data_ptr<int64_t>(), lse.data_ptr<scalar_t>(),
                                                    upstream.data_ptr<scalar_t>(), logits.data_ptr<scalar_t>(),
                                                    call.stream, s, threshold.data_ptr<scalar_t>());
  });
  return true;
}

inline const device_rows cuda_rows{&cuda_rows_forward, &cuda_rows_backward};
inline const device_log_probs cuda_log_probs{&cuda_sequence_log_probs, &cuda_rows};
inline const bool cuda_log_probs_registered = register_device_log_probs(c10::DeviceType::CUDA, &cuda_log_probs);

}  // namespace brain::inline v0::libtorch::detail
#endif
