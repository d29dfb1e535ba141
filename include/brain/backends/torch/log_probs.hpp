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

#include <brain/errors.hpp>
#include <brain/kernels/token_log_probs.hpp>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <string_view>
#include <vector>

#if __has_include(<unistd.h>)
#include <unistd.h>  // sysconf: the cache size that sizes the fused path's tiles
#endif

namespace brain::inline v0::libtorch {

/// Which label each logits position scores (see the header comment).
enum class alignment { same_position, next_token };

/// How per-token log-probs become the result.
enum class reduction {
  sum,   ///< [B]: sum over the masked tokens (log q(y|x) of the whole response)
  mean,  ///< [B]: sum / number of masked tokens (0 for a row with none)
  none,  ///< [B, T]: per token, aligned with labels; 0 where the mask is 0
};

/// The sampler's settings the log-probs must match (temperature, top_k, top_p).
using sampling = kernels::sampling;

struct log_prob_options {
  reduction reduce = reduction::sum;
  /// The distribution the tokens were sampled from: temperature, then top-k, then top-p. The
  /// default is the model's own distribution.
  sampling sample = {};
  bool validate = true;  ///< check shapes, label range, settings and finiteness (one pass over labels, none over logits)
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

/// The sampler's distribution in plain ATen operations (see sampled_log_softmax below); settings
/// already checked.
inline at::Tensor sampled_log_softmax_unchecked(const at::Tensor& logits, const sampling& s) {
  at::Tensor x = logits.to(accumulate_type(logits.scalar_type()));
  if (s.is_plain()) return at::log_softmax(x, -1);
  x = x / s.temperature;
  const int64_t vocabulary = x.size(-1);
  at::Tensor keep = at::ones_like(x, x.options().dtype(at::kBool));
  if (s.top_k > 0 && s.top_k < vocabulary) keep = x >= std::get<0>(x.topk(s.top_k, -1)).narrow(-1, s.top_k - 1, 1);
  const at::Tensor minus_inf = at::full({}, -std::numeric_limits<double>::infinity(), x.options());
  if (s.top_p < 1.0) {
    const at::Tensor probs = at::softmax(at::where(keep, x, minus_inf), -1);
    // The nucleus is usually short: sort the 64 most likely tokens only, and the whole row when
    // some row's 64 hold less than top_p (a full sort of a sampler's [rows, V] costs more than a
    // small model's decoding step). Both give the same set: the prefix sums are the same.
    for (int64_t k = std::min<int64_t>(vocabulary, 64);; k = vocabulary) {
      const auto [sorted, order] = probs.topk(k, -1, /*largest=*/true, /*sorted=*/true);
      const at::Tensor mass = sorted.cumsum(-1);
      if (k < vocabulary && !(mass.select(-1, k - 1) >= s.top_p).all().item<bool>()) continue;
      // The last sorted position whose mass before it is below top_p; every value >= its value stays.
      const at::Tensor last = (((mass - sorted) < s.top_p).sum(-1, /*keepdim=*/true) - 1).clamp_min(0);
      keep = keep & (x >= x.gather(-1, order.gather(-1, last)));
      break;
    }
  }
  return at::log_softmax(at::where(keep, x, minus_inf), -1);
}

/// Per-token log-probs [B, T] of the plain composition (log_softmax, gather, masked), in the
/// accumulation dtype.
inline at::Tensor plain_token_log_probs(const at::Tensor& logits, const token_selection& s, const sampling& sample) {
  const int64_t time = logits.size(1);
  const at::Tensor log_probs = sampled_log_softmax_unchecked(logits, sample);
  at::Tensor out = at::zeros({logits.size(0), time}, log_probs.options());
  if (time > s.shift) {
    const at::Tensor labels = s.labels.slice(1, s.shift, time).clamp(0, logits.size(2) - 1);
    const at::Tensor picked = log_probs.slice(1, 0, time - s.shift).gather(2, labels.unsqueeze(2)).squeeze(2);
    out.slice(1, s.shift, time).copy_(at::where(s.active.slice(1, s.shift, time), picked, at::zeros_like(picked)));
  }
  return out;
}

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

/// The program-wide registry of device implementations, by device type.
inline std::array<const device_log_probs*, static_cast<std::size_t>(c10::DeviceType::COMPILE_TIME_MAX_DEVICE_TYPES)>&
device_registry() {
  static std::array<const device_log_probs*, static_cast<std::size_t>(c10::DeviceType::COMPILE_TIME_MAX_DEVICE_TYPES)> r{};
  return r;
}

/// Registers `impl` for tensors of `type` (at static initialisation); returns true.
inline bool register_device_log_probs(c10::DeviceType type, const device_log_probs* impl) {
  device_registry()[static_cast<std::size_t>(type)] = impl;
  return true;
}

inline const device_log_probs* find_device_log_probs(c10::DeviceType type) {
  return device_registry()[static_cast<std::size_t>(type)];
}

/// Sampler settings as autograd-saved values.
inline void save_sampling(::torch::autograd::AutogradContext* ctx, const sampling& s) {
  ctx->saved_data["temperature"] = s.temperature;
  ctx->saved_data["top_k"] = s.top_k;
  ctx->saved_data["top_p"] = s.top_p;
}
inline sampling load_sampling(::torch::autograd::AutogradContext* ctx) {
  return {ctx->saved_data["temperature"].toDouble(), ctx->saved_data["top_k"].toInt(), ctx->saved_data["top_p"].toDouble()};
}

/// Forward of one token row under the settings: its normaliser (lse, threshold) and log-prob.
template <class In, class Acc = kernels::accumulate_t<In>>
Acc token_forward(const In* row, int64_t vocabulary, int64_t label, const sampling& s, std::vector<Acc>& scratch,
                  Acc& lse, Acc& threshold) {
  threshold = kernels::truncation_threshold(row, vocabulary, s, scratch);
  const kernels::sampled_row<Acc> normaliser = kernels::sampled_row_logsumexp(row, vocabulary, s, threshold);
  lse = normaliser.lse;
  return kernels::sampled_token_log_prob(row, label, s, normaliser);
}

struct sequence_log_probs_function : ::torch::autograd::Function<sequence_log_probs_function> {
  // logits [B, T, V] contiguous; returns per-token log-probs [B, T] reduced by `reduce`.
  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& labels,
                            const at::Tensor& active, int64_t shift, int64_t reduce, bool validate, double temperature,
                            int64_t top_k, double top_p) {
    const sampling sample{temperature, top_k, top_p};
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
    if (validate) check_finite_tokens("sequence_log_probs", token, active, shift, sample);
    ctx->save_for_backward({logits, labels, active, lse, threshold});
    ctx->saved_data["shift"] = shift;
    ctx->saved_data["reduce"] = reduce;
    save_sampling(ctx, sample);
    return reduce_tokens(token, active, static_cast<reduction>(reduce));
  }

  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &logits = saved[0], &labels = saved[1], &active = saved[2], &lse = saved[3], &threshold = saved[4];
    const int64_t shift = ctx->saved_data["shift"].toInt();
    const auto r = static_cast<reduction>(ctx->saved_data["reduce"].toInt());
    const sampling sample = load_sampling(ctx);
    const int64_t batch = logits.size(0), time = logits.size(1), vocabulary = logits.size(2);
    const at::Tensor upstream = upstream_per_token(grad_outputs[0].to(lse.scalar_type()), active, r).contiguous();
    at::Tensor grad = at::empty_like(logits);  // every row is written below: one pass, no zero-fill
    const int64_t* label_ptr = labels.data_ptr<int64_t>();
    const bool* active_ptr = active.data_ptr<bool>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "brain::sequence_log_probs_backward", [&] {
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
    return {grad, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

/// Chunks of at most this many of one sequence's tokens keep at most chunk x V logits alive: a
/// default from the vocabulary alone (about 16M logits, within [64, 2048]), so that how a
/// sequence is chunked never depends on the batch.
inline int64_t default_chunk_tokens(int64_t vocabulary) {
  const auto chunk = std::bit_floor(static_cast<uint64_t>(std::max<int64_t>(1, (int64_t{1} << 24) / vocabulary)));
  return std::clamp<int64_t>(static_cast<int64_t>(chunk), 64, 2048);
}

/// [begin, end) ranges over the flat active positions: each sequence's tokens split into chunks
/// of at most `chunk`, never mixing sequences (batch invariance: a sequence's chunks, hence the
/// products that compute its logits, are the same alone or in any batch).
inline std::vector<std::pair<int64_t, int64_t>> sequence_chunks(const at::Tensor& active, int64_t chunk) {
  const at::Tensor counts = active.sum(1).to(at::kLong).cpu().contiguous();
  const int64_t* count = counts.data_ptr<int64_t>();
  std::vector<std::pair<int64_t, int64_t>> chunks;
  int64_t start = 0;
  for (int64_t b = 0; b < counts.size(0); ++b) {
    for (int64_t begin = start; begin < start + count[b]; begin += chunk)
      chunks.emplace_back(begin, std::min(begin + chunk, start + count[b]));
    start += count[b];
  }
  return chunks;
}

/// The L2 cache of one core in bytes (sysconf, else sysfs), 1 MiB when neither says.
inline int64_t l2_cache_bytes() {
  static const int64_t bytes = [] {
#if __has_include(<unistd.h>) && defined(_SC_LEVEL2_CACHE_SIZE)
    if (const long b = ::sysconf(_SC_LEVEL2_CACHE_SIZE); b > 0) return static_cast<int64_t>(b);
#endif
    std::ifstream size("/sys/devices/system/cpu/cpu0/cache/index2/size");  // e.g. "2048K"
    int64_t value = 0;
    char unit = 0;
    if (size >> value && value > 0) return (size >> unit && (unit == 'M' || unit == 'm')) ? value << 20 : value << 10;
    return int64_t{1} << 20;
  }();
  return bytes;
}

/// Logits columns per vocabulary tile: a tile of `rows` x columns accumulation values about the
/// size of one core's L2 cache, a multiple of 64 in [256, V]; the whole vocabulary under top-k /
/// top-p (their threshold needs the whole row). Chosen on log_probs_benchmark's 2048 x 50257 x 768
/// shape with 256 rows, one run each: 512, 1024, 4096 columns took 1.07, 1.03, 1.03x the time of
/// 2048, which fills this machine's 2 MiB.
inline int64_t vocab_tile_columns(int64_t requested, int64_t rows, int64_t vocabulary, int64_t value_bytes,
                                  const sampling& sample) {
  if (sample.truncates()) return vocabulary;
  if (requested > 0) return std::min(requested, vocabulary);
  const int64_t columns = l2_cache_bytes() / (std::max<int64_t>(rows, 1) * value_bytes);
  return std::min(vocabulary, std::max<int64_t>(256, columns / 64 * 64));
}

/// Calls f with the load of one row's logits under the settings (x / T, -inf below the
/// threshold), or the plain load when the settings are the model's own distribution.
template <class Acc, class F>
void with_load(const sampling& sample, Acc threshold, F&& f) {
  if (sample.is_plain())
    f(kernels::detail::plain_load<Acc>{});
  else
    f(kernels::detail::sampled_load<Acc>{static_cast<Acc>(sample.temperature), threshold});
}

/// The rows of `hidden` [B, T, d] that score the label positions, in the accumulation dtype,
/// contiguous: each chunk of tokens is then one block.
inline at::Tensor scoring_rows(const at::Tensor& hidden, const at::Tensor& positions, int64_t shift, at::ScalarType type) {
  return hidden.reshape({-1, hidden.size(2)}).index_select(0, positions - shift).to(type).contiguous();
}

/// Visits the logits tile by tile: for each vocabulary tile [start, start + columns) (outer, so
/// that W's tile stays in cache) and each chunk of tokens [begin, end), computes
/// logits = h[begin:end] · W[start:start+columns]ᵀ into one reused buffer and calls
/// f(logits, W's tile, start, begin, end).
template <class F>
void for_each_logits_tile(const at::Tensor& h, const at::Tensor& w, const std::vector<std::pair<int64_t, int64_t>>& chunks,
                          int64_t chunk, int64_t tile, F&& f) {
  const int64_t vocabulary = w.size(0), rows = std::min<int64_t>(chunk, h.size(0));
  at::Tensor buffer = at::empty({rows * std::min(tile, vocabulary)}, h.options());
  for (int64_t start = 0; start < vocabulary; start += tile) {
    const int64_t columns = std::min(tile, vocabulary - start);
    const at::Tensor w_tile = w.slice(0, start, start + columns);
    for (const auto& [begin, end] : chunks) {
      at::Tensor logits = buffer.narrow(0, 0, (end - begin) * columns).view({end - begin, columns});
      at::mm_out(logits, h.slice(0, begin, end), w_tile.t());
      f(logits, w_tile, start, begin, end);
    }
  }
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
inline at::Tensor finish_fused_forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& hidden,
                                       const at::Tensor& weight, const at::Tensor& active, const fused_forward_inputs& in,
                                       const at::Tensor& token, const at::Tensor& lse, const at::Tensor& threshold,
                                       const at::Tensor& unit_grad_hidden, int64_t shift, int64_t reduce, int64_t chunk,
                                       bool validate, bool eager, const sampling& sample) {
  at::Tensor per_token = at::zeros({hidden.size(0) * hidden.size(1)}, in.options);
  per_token.index_copy_(0, in.positions, token);
  per_token = per_token.view({hidden.size(0), hidden.size(1)});
  if (validate) check_finite_tokens("fused_linear_sequence_log_probs", per_token, active, shift, sample);
  ctx->save_for_backward({hidden, weight, active, in.positions, in.labels, lse, threshold, unit_grad_hidden, token});
  ctx->saved_data["shift"] = shift;
  ctx->saved_data["reduce"] = reduce;
  ctx->saved_data["chunk"] = chunk;
  ctx->saved_data["eager"] = eager;
  save_sampling(ctx, sample);
  return reduce_tokens(per_token, active, static_cast<reduction>(reduce));
}

/// What both fused backwards start from: finish_fused_forward's saved tensors and settings, and
/// the upstream gradient per scored token.
struct fused_backward_inputs {
  at::Tensor hidden, weight, active, positions, labels, lse, threshold, unit_grad_hidden, token, upstream;
  int64_t shift, chunk;
  sampling sample;
  bool need_hidden, need_weight, eager;
  at::ScalarType acc_type;
  fused_backward_inputs(::torch::autograd::AutogradContext* ctx, const ::torch::autograd::variable_list& grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    hidden = saved[0], weight = saved[1], active = saved[2], positions = saved[3], labels = saved[4];
    lse = saved[5], threshold = saved[6], unit_grad_hidden = saved[7], token = saved[8];
    shift = ctx->saved_data["shift"].toInt();
    chunk = ctx->saved_data["chunk"].toInt();
    sample = load_sampling(ctx);
    need_hidden = ctx->needs_input_grad(0);
    need_weight = ctx->needs_input_grad(1);
    eager = ctx->saved_data["eager"].toBool();
    acc_type = lse.scalar_type();
    const auto r = static_cast<reduction>(ctx->saved_data["reduce"].toInt());
    upstream = upstream_per_token(grad_outputs[0].to(acc_type), active, r).reshape({-1}).index_select(0, positions).contiguous();
  }
  /// A gradient per scored token [count, d] as hidden's [B, T, d], in hidden's dtype.
  at::Tensor hidden_gradient(const at::Tensor& per_row) const {
    at::Tensor g = at::zeros({hidden.size(0) * hidden.size(1), hidden.size(2)}, per_row.options());
    g.index_add_(0, positions - shift, per_row);
    return g.view(hidden.sizes()).to(hidden.scalar_type());
  }
  /// The gradients forward already formed: hidden's on the frozen-head (eager) path; none when
  /// nothing needs one.
  ::torch::autograd::variable_list forward_gradients(std::size_t inputs) const {
    ::torch::autograd::variable_list grads(inputs);
    if (need_hidden) grads[0] = hidden_gradient(unit_grad_hidden * upstream.unsqueeze(1));
    return grads;
  }
};

struct fused_linear_function : ::torch::autograd::Function<fused_linear_function> {
  // hidden [B, T, d], weight [V, d]. The logits exist a tile at a time ([chunk tokens, tile
  // columns], consumed while in cache): forward keeps an online logsumexp per token across the
  // vocabulary tiles; backward recomputes each tile and turns it into its gradient in place.
  // `eager`: the weight needs no gradient but hidden does, so forward also accumulates
  // Σ_j exp(v_j - m) W_j per token (rescaled whenever its running maximum m moves), which gives
  // d log p / d hidden = (W_y - Σ_j p_j W_j) / T at the end: 2 products in all instead of 4
  // (forward, recomputation, dH, dW).
  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& labels, const at::Tensor& active, int64_t shift, int64_t reduce,
                            int64_t chunk, int64_t tile, bool validate, bool eager, double temperature, int64_t top_k,
                            double top_p) {
    const sampling sample{temperature, top_k, top_p};
    const fused_forward_inputs in(hidden, weight, labels, active, shift);
    const at::Tensor &token_labels = in.labels, &h = in.h, &w = in.w;
    const int64_t count = in.count;
    const auto options = in.options;
    at::Tensor lse = at::empty({count}, options), threshold = at::empty({count}, options);
    at::Tensor token = at::empty({count}, options), row_sum = at::empty({count}, options);
    at::Tensor numerators = eager ? at::zeros({count, hidden.size(2)}, options) : at::Tensor();  // Σ_j exp(v_j - m) W_j
    AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "brain::fused_linear_sequence_log_probs", [&] {
      using acc = scalar_t;
      std::vector<kernels::online_logsumexp<acc>> state(static_cast<std::size_t>(count));
      std::vector<acc> label_value(static_cast<std::size_t>(count), -std::numeric_limits<acc>::infinity());
      at::Tensor rescale = eager ? at::empty({count, 1}, options) : at::Tensor();
      acc* threshold_ptr = threshold.data_ptr<acc>();
      const int64_t* label_ptr = token_labels.data_ptr<int64_t>();
      for_each_logits_tile(h, w, sequence_chunks(active, chunk), chunk, tile,
                           [&](at::Tensor& logits, const at::Tensor& w_tile, int64_t start, int64_t begin, int64_t end) {
        const int64_t columns = logits.size(1);
        acc* x = logits.data_ptr<acc>();
        acc* rescale_ptr = eager ? rescale.data_ptr<acc>() : nullptr;
        at::parallel_for(begin, end, 1, [&](int64_t b, int64_t e) {
          std::vector<acc> scratch;
          for (int64_t k = b; k < e; ++k) {
            acc* row = x + (k - begin) * columns;
            if (start == 0)  // under top-k / top-p the tile is the whole row
              threshold_ptr[k] = kernels::truncation_threshold(row, columns, sample, scratch);
            with_load(sample, threshold_ptr[k], [&](auto load) {
              if (const int64_t label = label_ptr[k] - start; label >= 0 && label < columns) label_value[k] = load(row, label);
              if (eager)
                rescale_ptr[k] = kernels::add_tile<true>(state[k], row, columns, load, row);
              else
                kernels::add_tile<false>(state[k], row, columns, load);
            });
          }
        });
        if (eager) {
          at::Tensor sums = numerators.slice(0, begin, end);
          const acc* scale = rescale_ptr + begin;  // the maxima settle after a few tiles: skip the pass then
          if (std::any_of(scale, scale + (end - begin), [](acc f) { return f != acc(1); }))
            sums.mul_(rescale.slice(0, begin, end));
          sums.addmm_(logits, w_tile);
        }
      });
      acc *lse_ptr = lse.data_ptr<acc>(), *token_ptr = token.data_ptr<acc>(), *sum_ptr = row_sum.data_ptr<acc>();
      for (int64_t k = 0; k < count; ++k) {
        lse_ptr[k] = state[k].value();
        token_ptr[k] = label_value[k] - lse_ptr[k];
        sum_ptr[k] = state[k].sum;
      }
    });
    at::Tensor unit_grad_hidden;
    if (eager) {  // (W_y - Σ_j p_j W_j) / T with p_j = exp(v_j - m) / sum; 0 for a label the settings drop
      const at::Tensor kept = (token != -std::numeric_limits<double>::infinity()).to(w.scalar_type()).unsqueeze(1);
      unit_grad_hidden = (w.index_select(0, token_labels) - numerators / row_sum.unsqueeze(1)) * (kept / temperature);
    }
    ctx->saved_data["tile"] = tile;
    return finish_fused_forward(ctx, hidden, weight, active, in, token, lse, threshold, unit_grad_hidden, shift, reduce,
                                chunk, validate, eager, sample);
  }

  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grad_outputs) {
    const fused_backward_inputs in(ctx, grad_outputs);
    constexpr std::size_t inputs = 14;  // of forward
    if (in.eager || (!in.need_hidden && !in.need_weight)) return in.forward_gradients(inputs);
    const at::Tensor &upstream = in.upstream, &token_labels = in.labels, &lse = in.lse, &threshold = in.threshold;
    const sampling& sample = in.sample;
    const bool need_hidden = in.need_hidden, need_weight = in.need_weight;
    const int64_t tile = ctx->saved_data["tile"].toInt();
    const auto acc_type = in.acc_type;
    const at::Tensor h = scoring_rows(in.hidden, in.positions, in.shift, acc_type);
    const at::Tensor w = in.weight.to(acc_type).contiguous();
    // d/d v_j of upstream * log p'(y) scaled by d v / d x = 1 / T; 0 for a label the settings drop.
    const at::Tensor scaled = sample.is_plain()
                                  ? upstream
                                  : (upstream * (in.token != -std::numeric_limits<double>::infinity()).to(acc_type) /
                                     sample.temperature).contiguous();
    at::Tensor grad_rows = need_hidden ? at::zeros_like(h) : at::Tensor();
    at::Tensor grad_weight = need_weight ? at::zeros_like(w) : at::Tensor();  // no buffer for a frozen head
    AT_DISPATCH_FLOATING_TYPES(acc_type, "brain::fused_linear_sequence_log_probs_backward", [&] {
      using acc = scalar_t;
      const int64_t* label_ptr = token_labels.data_ptr<int64_t>();
      const acc *lse_ptr = lse.data_ptr<acc>(), *threshold_ptr = threshold.data_ptr<acc>(), *up = scaled.data_ptr<acc>();
      for_each_logits_tile(h, w, sequence_chunks(in.active, in.chunk), in.chunk, tile,
                           [&](at::Tensor& logits, const at::Tensor& w_tile, int64_t start, int64_t begin, int64_t end) {
        const int64_t columns = logits.size(1);
        acc* x = logits.data_ptr<acc>();
        at::parallel_for(begin, end, 1, [&](int64_t b, int64_t e) {
          for (int64_t k = b; k < e; ++k) {
            acc* row = x + (k - begin) * columns;
            const int64_t label = label_ptr[k] - start;
            with_load(sample, threshold_ptr[k], [&](auto load) {
              kernels::tile_log_prob_backward(row, columns, label >= 0 && label < columns ? label : -1, load, lse_ptr[k],
                                              up[k], row);
            });
          }
        });
        if (need_hidden) grad_rows.slice(0, begin, end).addmm_(logits, w_tile);
        if (need_weight) grad_weight.slice(0, start, start + logits.size(1)).addmm_(logits.t(), h.slice(0, begin, end));
      });
    });
    ::torch::autograd::variable_list grads(inputs);
    if (need_hidden) grads[0] = in.hidden_gradient(grad_rows);
    if (need_weight) grads[1] = grad_weight.to(in.weight.scalar_type());
    return grads;
  }
};

/// The fused path on other devices (CUDA): chunks of `chunk` tokens times the whole vocabulary,
/// each chunk's logits one ATen product then the device's row kernels (`rows`; ATen operations
/// when it has none or declines), so at most chunk x V logits exist, forward and backward; the
/// backward recomputes them. Products run in the accumulation dtype (float32 for half and
/// bfloat16), as on the CPU. `eager` as fused_linear_function.
struct chunked_linear_function : ::torch::autograd::Function<chunked_linear_function> {
  // Rows forward: the device's kernels, else log_softmax (under the settings) and gather.
  static void rows_forward(const device_rows* rows, const at::Tensor& logits, const at::Tensor& labels, const sampling& s,
                           at::Tensor lse, at::Tensor log_prob, at::Tensor threshold) {
    if (rows != nullptr && rows->forward(logits, labels, s, lse, log_prob, threshold)) return;
    log_prob.copy_(sampled_log_softmax_unchecked(logits, s).gather(1, labels.unsqueeze(1)).squeeze(1));
  }
  // Rows backward: the gradient of Σ upstream_r log p(label_r) with respect to the logits
  // (in place when the device's kernels run).
  static at::Tensor rows_gradient(const device_rows* rows, at::Tensor& logits, const at::Tensor& labels, const sampling& s,
                                  const at::Tensor& lse, const at::Tensor& threshold, const at::Tensor& upstream) {
    if (rows != nullptr && rows->backward(logits, labels, s, lse, threshold, upstream)) return logits;
    const at::Tensor log_p = sampled_log_softmax_unchecked(logits, s);
    // ([j == y] - p'_j) / T for a kept label, 0 for one the settings drop (log p' = -inf).
    const at::Tensor kept = log_p.gather(1, labels.unsqueeze(1)) != -std::numeric_limits<double>::infinity();
    const at::Tensor up = upstream.unsqueeze(1) * kept.to(upstream.scalar_type()) / s.temperature;
    return (-log_p.exp() * up).scatter_add_(1, labels.unsqueeze(1), up);
  }

  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& labels, const at::Tensor& active, int64_t shift, int64_t reduce,
                            int64_t chunk, bool validate, bool eager, double temperature, int64_t top_k, double top_p,
                            int64_t rows_address) {
    const sampling sample{temperature, top_k, top_p};
    const auto* rows = reinterpret_cast<const device_rows*>(static_cast<std::intptr_t>(rows_address));
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
    return finish_fused_forward(ctx, hidden, weight, active, in, token, lse, threshold, unit_grad_hidden, shift, reduce,
                                chunk, validate, eager, sample);
  }

  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grad_outputs) {
    const fused_backward_inputs in(ctx, grad_outputs);
    constexpr std::size_t inputs = 13;  // of forward
    if (in.eager || (!in.need_hidden && !in.need_weight)) return in.forward_gradients(inputs);
    const auto* rows = reinterpret_cast<const device_rows*>(static_cast<std::intptr_t>(ctx->saved_data["rows"].toInt()));
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
      const at::Tensor g = rows_gradient(rows, logits, token_labels.slice(0, begin, end), sample, lse.slice(0, begin, end),
                                         threshold.slice(0, begin, end), upstream.slice(0, begin, end));
      if (need_hidden) {
        at::Tensor out = grad_rows.slice(0, begin, end);
        at::mm_out(out, g, w);
      }
      if (need_weight) grad_weight.addmm_(g.t(), h.slice(0, begin, end));
    }
    ::torch::autograd::variable_list grads(inputs);
    if (need_hidden) grads[0] = in.hidden_gradient(grad_rows);
    if (need_weight) grads[1] = grad_weight.to(in.weight.scalar_type());
    return grads;
  }
};

/// fused_linear_sequence_log_probs off the CPU: chunked_linear_function with the device's row kernels.
inline at::Tensor chunked_linear_log_probs(const at::Tensor& hidden, const at::Tensor& weight, const token_selection& s,
                                           int64_t chunk, const log_prob_options& opt, const device_rows* rows) {
  const bool eager = at::GradMode::is_enabled() && hidden.requires_grad() && !weight.requires_grad();
  const sampling& sample = opt.sample;
  return chunked_linear_function::apply(hidden, weight, s.labels.contiguous(), s.active.contiguous(), s.shift,
                                        static_cast<int64_t>(opt.reduce), chunk, opt.validate, eager, sample.temperature,
                                        sample.top_k, sample.top_p,
                                        static_cast<int64_t>(reinterpret_cast<std::intptr_t>(rows)));
}

}  // namespace detail

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
  const sampling& sample = opt.sample;
  return detail::sequence_log_probs_function::apply(logits.contiguous(), s.labels.contiguous(), s.active.contiguous(),
                                                    s.shift, static_cast<int64_t>(opt.reduce), opt.validate,
                                                    sample.temperature, sample.top_k, sample.top_p);
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
  const int64_t tile = detail::vocab_tile_columns(
      opt.vocab_tile, chunk, vocabulary, static_cast<int64_t>(c10::elementSize(detail::accumulate_type(hidden.scalar_type()))),
      sample);
  // A frozen head (LoRA, a shared embedding kept fixed): compute d/d hidden during forward.
  const bool eager = at::GradMode::is_enabled() && hidden.requires_grad() && !weight.requires_grad();
  return detail::fused_linear_function::apply(hidden, weight, s.labels.contiguous(), s.active.contiguous(), s.shift,
                                              static_cast<int64_t>(opt.reduce), chunk, tile, opt.validate, eager,
                                              sample.temperature, sample.top_k, sample.top_p);
}

}  // namespace brain::inline v0::libtorch

// brain::cuda's kernels for CUDA tensors, registered from every translation unit that can see
// them (identical definitions wherever they appear). c10/cuda/impl/cuda_cmake_macros.h is
// generated only by CUDA builds of LibTorch (Debian ships the other c10/cuda headers without it).
#if defined(BRAIN_WITH_CUDA) && __has_include(<c10/cuda/impl/cuda_cmake_macros.h>)
#include <brain/backends/cuda.hpp>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace brain::inline v0::libtorch::detail {

/// [B, T] per logits row: the label it scores, or -1 where it scores nothing (inactive label
/// position, or the last `shift` positions): the raw kernels' row labels.
inline at::Tensor row_labels(const token_selection& s) {
  const int64_t time = s.labels.size(1);
  at::Tensor rows = at::full_like(s.labels, -1);
  if (time > s.shift) {
    const at::Tensor labels = s.labels.slice(1, s.shift, time);
    rows.slice(1, 0, time - s.shift).copy_(at::where(s.active.slice(1, s.shift, time), labels, at::full_like(labels, -1)));
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

/// sequence_log_probs_function on CUDA tensors (float, double): brain::cuda's kernels.
struct cuda_sequence_log_probs_function : ::torch::autograd::Function<cuda_sequence_log_probs_function> {
  static at::Tensor forward(::torch::autograd::AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& rows,
                            const at::Tensor& active, int64_t shift, int64_t reduce, bool validate, double temperature,
                            int64_t top_k, double top_p) {
    const sampling sample{temperature, top_k, top_p};
    const c10::cuda::CUDAGuard guard(logits.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(logits.device().index()).stream();
    const int64_t batch = logits.size(0), time = logits.size(1), vocabulary = logits.size(2);
    at::Tensor lse = at::empty({batch, time}, logits.options());
    at::Tensor threshold = at::empty({batch, time}, logits.options());
    at::Tensor per_row = at::empty({batch, time}, logits.options());
    AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "brain::sequence_log_probs (CUDA)", [&] {
      brain::cuda::token_log_probs<scalar_t>(logits.data_ptr<scalar_t>(), batch * time, vocabulary,
                                             rows.data_ptr<int64_t>(), lse.data_ptr<scalar_t>(),
                                             per_row.data_ptr<scalar_t>(), stream, sample, threshold.data_ptr<scalar_t>());
    });
    const at::Tensor token = shift_time(per_row, 0, shift);  // per label position
    if (validate) check_finite_tokens("sequence_log_probs", token, active, shift, sample);
    ctx->save_for_backward({logits, rows, active, lse, threshold});
    ctx->saved_data["shift"] = shift;
    ctx->saved_data["reduce"] = reduce;
    save_sampling(ctx, sample);
    return reduce_tokens(token, active, static_cast<reduction>(reduce));
  }

  static ::torch::autograd::variable_list backward(::torch::autograd::AutogradContext* ctx,
                                                   ::torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &logits = saved[0], &rows = saved[1], &active = saved[2], &lse = saved[3], &threshold = saved[4];
    const int64_t shift = ctx->saved_data["shift"].toInt();
    const auto r = static_cast<reduction>(ctx->saved_data["reduce"].toInt());
    const sampling sample = load_sampling(ctx);
    const c10::cuda::CUDAGuard guard(logits.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(logits.device().index()).stream();
    const at::Tensor upstream = shift_time(upstream_per_token(grad_outputs[0].to(lse.scalar_type()), active, r), shift, 0);
    at::Tensor grad = at::empty_like(logits);  // every row is written by the kernel
    AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "brain::sequence_log_probs_backward (CUDA)", [&] {
      brain::cuda::token_log_probs_backward<scalar_t>(
          logits.data_ptr<scalar_t>(), logits.size(0) * logits.size(1), logits.size(2), rows.data_ptr<int64_t>(),
          lse.data_ptr<scalar_t>(), upstream.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), stream, sample,
          threshold.data_ptr<scalar_t>());
    });
    return {grad, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

/// The CUDA entry of the registry: float32 and float64 logits; other dtypes decline.
inline at::Tensor cuda_sequence_log_probs(const at::Tensor& logits, const token_selection& s, const log_prob_options& opt) {
  if (logits.scalar_type() != at::kFloat && logits.scalar_type() != at::kDouble) return {};
  return cuda_sequence_log_probs_function::apply(logits.contiguous(), row_labels(s), s.active.contiguous(), s.shift,
                                                 static_cast<int64_t>(opt.reduce), opt.validate, opt.sample.temperature,
                                                 opt.sample.top_k, opt.sample.top_p);
}

/// The fused path's row kernels on CUDA tensors (float32, float64): brain::cuda's, on the
/// current stream, in place for the backward.
inline bool cuda_rows_forward(const at::Tensor& logits, const at::Tensor& labels, const sampling& s, at::Tensor& lse,
                              at::Tensor& log_prob, at::Tensor& threshold) {
  if (logits.scalar_type() != at::kFloat && logits.scalar_type() != at::kDouble) return false;
  const c10::cuda::CUDAGuard guard(logits.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(logits.device().index()).stream();
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "brain::fused_linear_sequence_log_probs (CUDA)", [&] {
    brain::cuda::token_log_probs<scalar_t>(logits.data_ptr<scalar_t>(), logits.size(0), logits.size(1),
                                           labels.data_ptr<int64_t>(), lse.data_ptr<scalar_t>(),
                                           log_prob.data_ptr<scalar_t>(), stream, s, threshold.data_ptr<scalar_t>());
  });
  return true;
}
inline bool cuda_rows_backward(at::Tensor& logits, const at::Tensor& labels, const sampling& s, const at::Tensor& lse,
                               const at::Tensor& threshold, const at::Tensor& upstream) {
  if (logits.scalar_type() != at::kFloat && logits.scalar_type() != at::kDouble) return false;
  const c10::cuda::CUDAGuard guard(logits.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(logits.device().index()).stream();
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "brain::fused_linear_sequence_log_probs_backward (CUDA)", [&] {
    brain::cuda::token_log_probs_backward<scalar_t>(logits.data_ptr<scalar_t>(), logits.size(0), logits.size(1),
                                                    labels.data_ptr<int64_t>(), lse.data_ptr<scalar_t>(),
                                                    upstream.data_ptr<scalar_t>(), logits.data_ptr<scalar_t>(), stream, s,
                                                    threshold.data_ptr<scalar_t>());
  });
  return true;
}

inline const device_rows cuda_rows{&cuda_rows_forward, &cuda_rows_backward};
inline const device_log_probs cuda_log_probs{&cuda_sequence_log_probs, &cuda_rows};
inline const bool cuda_log_probs_registered = register_device_log_probs(c10::DeviceType::CUDA, &cuda_log_probs);

}  // namespace brain::inline v0::libtorch::detail
#endif
