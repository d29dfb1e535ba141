#pragma once
// brain::libtorch's log-prob operations, stage 1 (backends/torch/log_probs.hpp is the header to
// include): the options, and the selection every entry point starts from: which label positions
// count, with their labels, checked; the reductions of per-token log-probs and their upstream
// gradient; the finiteness check that names a bad token.

#include <brain/errors.hpp>
#include <brain/kernels/token_log_probs.hpp>

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <string_view>

namespace brain::inline v0::libtorch {

/// Which label each logits position scores (see backends/torch/log_probs.hpp's header comment).
enum class alignment { same_position, next_token };

/// How per-token log-probs become the result.
enum class reduction {
  sum,   ///< [B]: sum over the masked tokens (log q(y|x) of the whole response)
  mean,  ///< [B]: sum / number of masked tokens (0 for a row with none)
  none,  ///< [B, T]: per token, aligned with labels; 0 where the mask is 0
};

/// The sampler's settings the log-probs must match (temperature, top_k, top_p).
using sampling = kernels::sampling;

/// The options of sequence_log_probs and fused_linear_sequence_log_probs.
struct log_prob_options {
  reduction reduce = reduction::sum;
  /// The distribution the tokens were sampled from: temperature, then top-k, then top-p. The
  /// default is the model's own distribution.
  sampling sample = {};
  /// Check shapes, label range, settings and finiteness (one pass over labels, none over logits).
  bool validate = true;
  /// fused_linear_sequence_log_probs on the CPU only: logits columns computed at a time (0: a tile
  /// of chunk x columns values about one core's L2 cache). Top-k / top-p take the whole vocabulary.
  int64_t vocab_tile = 0;
};

namespace detail {

using brain::detail::fail;

/// The parts every entry point shares: which (b, t) label positions count, with their labels.
struct token_selection {
  at::Tensor active;  // [B, T] bool
  at::Tensor labels;  // [B, T] int64
  int64_t shift = 0;  // logits row of label position t is t - shift
};

inline void check_sampling(std::string_view where, const sampling& s) {
  if (!(s.temperature > 0.0) || !std::isfinite(s.temperature))
    fail(where, "sampling temperature = ", brain::detail::describe_value(s.temperature), " must be finite and > 0");
  if (s.top_k < 0) fail(where, "sampling top_k = ", s.top_k, " must be >= 0 (0: no top-k)");
  if (!(s.top_p > 0.0 && s.top_p <= 1.0))
    fail(where, "sampling top_p = ", brain::detail::describe_value(s.top_p), " must be in (0, 1] (1: no top-p)");
}

inline token_selection select_tokens(std::string_view where, const at::Tensor& labels, const at::Tensor& mask,
                                     int64_t batch, int64_t time, int64_t vocabulary, alignment align,
                                     const log_prob_options& opt) {
  if (labels.dim() != 2 || labels.size(0) != batch || labels.size(1) != time)
    fail(where, "labels has shape ", labels.sizes(), " but must be [", batch, ", ", time, "]");
  if (mask.dim() != 2 || mask.size(0) != batch || mask.size(1) != time)
    fail(where, "mask has shape ", mask.sizes(), " but must be [", batch, ", ", time, "]");
  if (at::isFloatingType(labels.scalar_type()) || labels.scalar_type() == at::kBool)
    fail(where, "labels must be an integer tensor (token ids), got ", labels.scalar_type());
  check_sampling(where, opt.sample);  // always: bad settings would silently give wrong log-probs
  token_selection s{mask != 0, labels.to(at::kLong), align == alignment::next_token ? 1 : 0};
  if (!opt.validate) return s;
  if (s.shift == 1 && time > 0 && s.active.select(1, 0).any().item<bool>()) {
    const int64_t b = at::nonzero(s.active.select(1, 0)).select(0, 0).item<int64_t>();
    fail(where, "mask[", b, ", 0] is set, but under alignment::next_token no logits position predicts the first token");
  }
  const at::Tensor out_of_range = s.active & ((s.labels < 0) | (s.labels >= vocabulary));
  if (out_of_range.any().item<bool>()) {
    const at::Tensor at_ = at::nonzero(out_of_range).select(0, 0).cpu();
    const int64_t b = at_[0].item<int64_t>(), t = at_[1].item<int64_t>();
    fail(where, "labels[", b, ", ", t, "] = ", s.labels.select(0, b).select(0, t).item<int64_t>(),
         " is outside the vocabulary [0, ", vocabulary, ")");
  }
  return s;
}

/// Per-token log-probs [B, T] (0 where inactive) into the requested reduction. The sum over a
/// row is the last element of its running sum: on the CPU ATen's cumsum runs along the row in
/// order (accumulating float in double), so a sequence's sum is the same in any batch and with
/// either padding (the zeros of padded positions add exactly), and it stays differentiable.
inline at::Tensor reduce_tokens(const at::Tensor& token_log_probs, const at::Tensor& active, reduction r) {
  if (r == reduction::none) return token_log_probs;
  const int64_t time = token_log_probs.size(1);
  const at::Tensor total = time == 0 ? at::zeros({token_log_probs.size(0)}, token_log_probs.options())
                                     : token_log_probs.cumsum(1).select(1, time - 1);
  if (r == reduction::sum) return total;
  return total / active.sum(1).clamp_min(1).to(total.scalar_type());
}

/// d result / d token_log_prob[b, t] for an upstream gradient of the reduced result.
inline at::Tensor upstream_per_token(const at::Tensor& grad, const at::Tensor& active, reduction r) {
  const at::Tensor mask = active.to(grad.scalar_type());
  if (r == reduction::none) return grad * mask;
  if (r == reduction::sum) return grad.unsqueeze(1) * mask;
  return (grad / active.sum(1).clamp_min(1).to(grad.scalar_type())).unsqueeze(1) * mask;
}

/// Throws naming the first active token whose log-prob is not finite: -inf under truncating
/// settings means the sampler could not have drawn that label; otherwise its logits hold NaN or
/// +inf.
inline void check_finite_tokens(std::string_view where, const at::Tensor& token_log_probs, const at::Tensor& active,
                                int64_t shift, const sampling& s) {
  const at::Tensor bad = active & ~at::isfinite(token_log_probs);
  if (!bad.any().item<bool>()) return;
  const at::Tensor at_ = at::nonzero(bad).select(0, 0).cpu();
  const int64_t b = at_[0].item<int64_t>(), t = at_[1].item<int64_t>();
  if (s.truncates() && token_log_probs.select(0, b).select(0, t).item<double>() == -INFINITY)
    fail(where, "labels[", b, ", ", t, "] is outside the top-k / top-p set of the sampling settings (top_k = ", s.top_k,
         ", top_p = ", s.top_p, "): the sampler could not have drawn it (log-prob -inf)");
  fail(where, "the logits at [", b, ", ", t - shift, "] (scoring labels[", b, ", ", t,
       "]) contain NaN or +inf, or overflow");
}

/// The dtype kernels accumulate in: float for float16 / bfloat16 / float, double for double.
inline at::ScalarType accumulate_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace detail
}  // namespace brain::inline v0::libtorch
