#pragma once
// Sequence log-probabilities log q(y|x) for LibTorch trainers, without materialising the
// [tokens, vocabulary] logits more than once (sequence_log_probs) or at all
// (fused_linear_sequence_log_probs). Both are differentiable (custom autograd functions whose
// backward writes the gradient in one pass) and compose with brain_loss:
//
//   #include <brain/backends/torch/log_probs.hpp>   // link brain::torch
//   namespace bl = brain::libtorch;
//   auto lp = bl::fused_linear_sequence_log_probs(hidden, lm_head.weight, ids, response_mask,
//                                                 bl::alignment::next_token);      // [B]
//   auto out = brain::brain_loss(brain::samples<at::Tensor>{lp.view({m, n}), lq, l0, r});
//
// The namespace is brain::libtorch, not brain::torch: after `using namespace brain;` the name
// torch must still mean LibTorch's ::torch.
//
// Alignment between logits and labels is always explicit (the off-by-one that bit TRL):
//   alignment::same_position  logits[b, t] scores labels[b, t]; the caller has shifted.
//   alignment::next_token     logits[b, t] scores labels[b, t + 1]: pass the model's input ids as
//                             labels, unshifted. mask[b, t] selects label positions (the
//                             response tokens), so mask[b, 0] must be 0 and the last logits
//                             position predicts nothing.
// Left and right padding need nothing special: padded positions have mask 0.
//
// Log-probs that match the sampler (trl#4159, trl#6789): log_prob_options::sampling holds the
// temperature, top-k and top-p the samples were drawn with, and the result is the log-prob under
// that renormalised distribution (brain/kernels/token_log_probs.hpp): pass the proposal's
// settings when computing log_proposal. A label the settings exclude has log-prob -inf, an error
// when validating.
//
// Batch invariance (verl#6280): on the CPU a sequence's log-prob is bitwise the same alone or in
// any batch, with either padding: every token row is computed alone, sums over tokens run in a
// fixed order, and the fused path multiplies each sequence's hidden rows in chunks of its own.
//
// CPU tensors run brain's kernels over at::parallel_for; the fused path there tiles the
// vocabulary too (chunk x tile logits at a time, each tile consumed in cache). Other devices look
// up an implementation registered for their device type: brain::cuda's kernels register for CUDA
// tensors of float32 and float64 from every translation unit compiled with BRAIN_WITH_CUDA
// (linking brain::cuda) against a CUDA build of LibTorch (its c10/cuda headers). The registry is
// one per program, so every translation unit dispatches alike whatever it was compiled with (no
// ODR hazard). Without a registration, and for float16/bfloat16, the plain ATen composition runs
// (same results). On those devices the fused path chunks over tokens (chunk x V logits at a time:
// an ATen product, then the device's row kernels or ATen operations).
//
// The operations are written in stages, one header each under backends/torch/detail/ (include
// this header, not those):
//   selection.hpp          the options; which label positions count; reductions; checks
//   plain_composition.hpp  the sampler's distribution and per-token log-probs in plain ATen
//   autograd_common.hpp    what the autograd functions save and load (CPU and devices alike)
//   cpu_sequence.hpp       sequence_log_probs on the CPU
//   cpu_tiles.hpp          the fused path on the CPU (vocabulary tiles)
//   device_chunks.hpp      other devices: their registry entries and the fused path's token chunks
//   device_registry.hpp    the program-wide registry (shared with backends/torch.hpp's fused loss)
//   cuda_registration.hpp  brain::cuda's kernels for CUDA tensors, registered

#include <brain/backends/torch/detail/autograd_common.hpp>
#include <brain/backends/torch/detail/cpu_sequence.hpp>
#include <brain/backends/torch/detail/cpu_tiles.hpp>
#include <brain/backends/torch/detail/cuda_registration.hpp>
#include <brain/backends/torch/detail/device_chunks.hpp>
#include <brain/backends/torch/detail/plain_composition.hpp>
#include <brain/backends/torch/detail/selection.hpp>

#include <ATen/ATen.h>

#include <cstdint>
#include <string_view>

namespace brain::inline v0::libtorch {

/// The distribution a sampler with settings `sample` draws from, as log-probs over the last
/// dimension of `logits` [..., V]: logits / temperature, the top_k largest (ties at the k-th value
/// kept), then the smallest set of the renormalised top-k distribution whose mass reaches top_p
/// (ties at its boundary kept), log-softmax over what remains and -inf elsewhere (Hugging Face's
/// and vLLM's order). Sample from its exp() and the proposal's log-probs are exact by
/// construction; sequence_log_probs with the same settings reproduces them teacher-forced.
/// Result dtype: float32 for float16/bfloat16/float32 logits, float64 for float64.
inline at::Tensor sampled_log_softmax(const at::Tensor& logits, const sampling& sample) {
  constexpr std::string_view where = "sampled_log_softmax";
  if (logits.dim() < 1 || logits.size(-1) < 1)
    detail::fail(where, "logits has shape ", logits.sizes(), ": expected [..., V] with V >= 1");
  detail::check_sampling(where, sample);
  return detail::sampled_log_softmax_unchecked(logits, sample);
}

/// log q(y|x) from logits [B, T, V]: per-token log-probs of `labels` [B, T] where `mask` [B, T]
/// is non-zero, under the sampling settings of `opt.sample`, summed per row (or as `opt.reduce`
/// says). One read of the logits forward (two more per row under top-k / top-p); the backward
/// writes their gradient in one pass. Result dtype: float32 for float16/bfloat16/float32
/// logits, float64 for float64.
inline at::Tensor sequence_log_probs(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& mask,
                                     alignment align, const log_prob_options& opt = {}) {
  constexpr std::string_view where = "sequence_log_probs";
  if (logits.dim() != 3) detail::fail(where, "logits has ", logits.dim(), " dimensions: expected [B, T, V]");
  const auto s = detail::select_tokens(where, labels, mask, logits.size(0), logits.size(1), logits.size(2), align, opt);
  if (!logits.device().is_cpu()) {
    if (const detail::device_log_probs* device = detail::find_device_log_probs(logits.device().type()))
      if (at::Tensor out = device->sequence(logits, s, opt); out.defined()) return out;
    const at::Tensor token = detail::plain_token_log_probs(logits, s, opt.sample);
    if (opt.validate) detail::check_finite_tokens(where, token, s.active, s.shift, opt.sample);
    return detail::reduce_tokens(token, s.active, opt.reduce);
  }
  return detail::apply_sequence_function<detail::sequence_log_probs_function>(logits, s.labels, s.active, s.shift, opt);
}

/// log q(y|x) from the last hidden states [B, T, d] and the output layer's weight [V, d]
/// (logits = hidden · weightᵀ, no bias), without the [tokens, V] logits: at most `chunk_tokens`
/// of one sequence's masked tokens (0: a default from V alone) times `opt.vocab_tile` columns of
/// logits exist at a time, forward and backward, each tile consumed while in cache (an online
/// logsumexp across the tiles). The backward recomputes each tile and accumulates the gradients
/// of hidden and, only if it requires one, of weight; with a frozen weight, forward computes the
/// hidden gradient directly (two matrix products in all). Top-k / top-p settings need whole rows:
/// their tiles are chunk_tokens x V. Sampling settings and batch invariance as sequence_log_probs.
inline at::Tensor fused_linear_sequence_log_probs(const at::Tensor& hidden, const at::Tensor& weight,
                                                  const at::Tensor& labels, const at::Tensor& mask, alignment align,
                                                  int64_t chunk_tokens = 0, const log_prob_options& opt = {}) {
  constexpr std::string_view where = "fused_linear_sequence_log_probs";
  if (hidden.dim() != 3) detail::fail(where, "hidden has ", hidden.dim(), " dimensions: expected [B, T, d]");
  if (weight.dim() != 2 || weight.size(1) != hidden.size(2))
    detail::fail(where, "weight has shape ", weight.sizes(), " but must be [V, ", hidden.size(2), "] for hidden ",
                 hidden.sizes());
  if (weight.device() != hidden.device())
    detail::fail(where, "weight is on ", weight.device(), " but hidden is on ", hidden.device());
  if (chunk_tokens < 0) detail::fail(where, "chunk_tokens = ", chunk_tokens, " must be >= 0 (0: automatic)");
  if (opt.vocab_tile < 0) detail::fail(where, "vocab_tile = ", opt.vocab_tile, " must be >= 0 (0: automatic)");
  const auto s = detail::select_tokens(where, labels, mask, hidden.size(0), hidden.size(1), weight.size(0), align, opt);
  const int64_t vocabulary = weight.size(0);
  const int64_t chunk = chunk_tokens > 0 ? chunk_tokens : detail::default_chunk_tokens(vocabulary);
  if (!hidden.device().is_cpu()) {
    const detail::device_log_probs* device = detail::find_device_log_probs(hidden.device().type());
    return detail::chunked_linear_log_probs(hidden, weight, s, chunk, opt, device != nullptr ? device->rows : nullptr);
  }
  const sampling& sample = opt.sample;
  const auto value_bytes = static_cast<int64_t>(c10::elementSize(detail::accumulate_type(hidden.scalar_type())));
  const int64_t tile = detail::vocab_tile_columns(opt.vocab_tile, chunk, vocabulary, value_bytes, sample);
  // A frozen head (LoRA, a shared embedding kept fixed): compute d/d hidden during forward.
  const bool eager = at::GradMode::is_enabled() && hidden.requires_grad() && !weight.requires_grad();
  return detail::fused_linear_function::apply(hidden, weight, s.labels.contiguous(), s.active.contiguous(), s.shift,
                                              static_cast<int64_t>(opt.reduce), chunk, tile, opt.validate, eager,
                                              sample.temperature, sample.top_k, sample.top_p);
}

}  // namespace brain::inline v0::libtorch
