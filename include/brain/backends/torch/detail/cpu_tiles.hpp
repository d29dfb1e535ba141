#pragma once
// brain::libtorch's log-prob operations (backends/torch/log_probs.hpp is the header to include):
// fused_linear_sequence_log_probs on CPU tensors, tiling the vocabulary as well as the tokens
// (chunk x tile logits at a time, each tile consumed while in cache).

#include <brain/backends/torch/detail/autograd_common.hpp>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <limits>
#include <utility>
#include <vector>

#if __has_include(<unistd.h>)
#include <unistd.h>  // sysconf: the cache size that sizes the tiles
#endif

namespace brain::inline v0::libtorch::detail {

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

/// Visits the logits tile by tile: for each vocabulary tile [start, start + columns) (outer, so
/// that W's tile stays in cache) and each chunk of tokens [begin, end), computes
/// logits = h[begin:end] · W[start:start+columns]ᵀ into one reused buffer and calls
/// f(logits, W's tile, start, begin, end).
template <class F>
void for_each_logits_tile(const at::Tensor& h, const at::Tensor& w,
                          const std::vector<std::pair<int64_t, int64_t>>& chunks, int64_t chunk, int64_t tile, F&& f) {
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

/// fused_linear_sequence_log_probs on CPU tensors.
struct fused_linear_function : ::torch::autograd::Function<fused_linear_function> {
  // hidden [B, T, d], weight [V, d]. The logits exist a tile at a time ([chunk tokens, tile
  // columns], consumed while in cache): forward keeps an online logsumexp per token across the
  // vocabulary tiles; backward recomputes each tile and turns it into its gradient in place.
  // `eager`: the weight needs no gradient but hidden does, so forward also accumulates
  // Σ_j exp(v_j - m) W_j per token (rescaled whenever its running maximum m moves), which gives
  // d log p / d hidden = (W_y - Σ_j p_j W_j) / T at the end: 2 products in all instead of 4
  // (forward, recomputation, dH, dW).
  static at::Tensor forward(autograd_context* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& labels, const at::Tensor& active, int64_t shift, int64_t reduce,
                            int64_t chunk, int64_t tile, bool validate, bool eager, double temperature, int64_t top_k,
                            double top_p) {
    const token_settings settings = token_settings::of(shift, reduce, temperature, top_k, top_p);
    const sampling& sample = settings.sample;
    const fused_forward_inputs in(hidden, weight, labels, active, shift);
    const at::Tensor &token_labels = in.labels, &h = in.h, &w = in.w;
    const int64_t count = in.count;
    const auto options = in.options;
    at::Tensor lse = at::empty({count}, options), threshold = at::empty({count}, options);
    at::Tensor token = at::empty({count}, options), row_sum = at::empty({count}, options);
    // Σ_j exp(v_j - m) W_j per token
    at::Tensor numerators = eager ? at::zeros({count, hidden.size(2)}, options) : at::Tensor();
    AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "brain::fused_linear_sequence_log_probs", [&] {
      using acc = scalar_t;
      std::vector<kernels::online_logsumexp<acc>> state(static_cast<std::size_t>(count));
      std::vector<acc> label_value(static_cast<std::size_t>(count), -std::numeric_limits<acc>::infinity());
      at::Tensor rescale = eager ? at::empty({count, 1}, options) : at::Tensor();
      acc* threshold_ptr = threshold.data_ptr<acc>();
      const int64_t* label_ptr = token_labels.data_ptr<int64_t>();
      const auto forward_tile = [&](at::Tensor& logits, const at::Tensor& w_tile, int64_t start, int64_t begin,
                                    int64_t end) {
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
              if (const int64_t label = label_ptr[k] - start; label >= 0 && label < columns)
                label_value[k] = load(row, label);
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
      };
      for_each_logits_tile(h, w, sequence_chunks(active, chunk), chunk, tile, forward_tile);
      acc *lse_ptr = lse.data_ptr<acc>(), *token_ptr = token.data_ptr<acc>(), *sum_ptr = row_sum.data_ptr<acc>();
      for (int64_t k = 0; k < count; ++k) {
        lse_ptr[k] = state[k].value();
        token_ptr[k] = label_value[k] - lse_ptr[k];
        sum_ptr[k] = state[k].sum;
      }
    });
    at::Tensor unit_grad_hidden;
    // (W_y - Σ_j p_j W_j) / T with p_j = exp(v_j - m) / sum; 0 for a label the settings drop
    if (eager) {
      const at::Tensor kept = (token != -std::numeric_limits<double>::infinity()).to(w.scalar_type()).unsqueeze(1);
      unit_grad_hidden = (w.index_select(0, token_labels) - numerators / row_sum.unsqueeze(1)) * (kept / temperature);
    }
    ctx->saved_data["tile"] = tile;
    return finish_fused_forward(ctx, settings, hidden, weight, active, in, token, lse, threshold, unit_grad_hidden,
                                chunk, validate, eager);
  }

  static variable_list backward(autograd_context* ctx, variable_list grad_outputs) {
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
    const at::Tensor scaled =
        sample.is_plain()
            ? upstream
            : (upstream * (in.token != -std::numeric_limits<double>::infinity()).to(acc_type) / sample.temperature)
                  .contiguous();
    at::Tensor grad_rows = need_hidden ? at::zeros_like(h) : at::Tensor();
    at::Tensor grad_weight = need_weight ? at::zeros_like(w) : at::Tensor();  // no buffer for a frozen head
    AT_DISPATCH_FLOATING_TYPES(acc_type, "brain::fused_linear_sequence_log_probs_backward", [&] {
      using acc = scalar_t;
      const int64_t* label_ptr = token_labels.data_ptr<int64_t>();
      const acc *lse_ptr = lse.data_ptr<acc>(), *threshold_ptr = threshold.data_ptr<acc>();
      const acc* up = scaled.data_ptr<acc>();
      const auto backward_tile = [&](at::Tensor& logits, const at::Tensor& w_tile, int64_t start, int64_t begin,
                                     int64_t end) {
        const int64_t columns = logits.size(1);
        acc* x = logits.data_ptr<acc>();
        at::parallel_for(begin, end, 1, [&](int64_t b, int64_t e) {
          for (int64_t k = b; k < e; ++k) {
            acc* row = x + (k - begin) * columns;
            const int64_t label = label_ptr[k] - start;
            with_load(sample, threshold_ptr[k], [&](auto load) {
              kernels::tile_log_prob_backward(row, columns, label >= 0 && label < columns ? label : -1, load,
                                              lse_ptr[k], up[k], row);
            });
          }
        });
        if (need_hidden) grad_rows.slice(0, begin, end).addmm_(logits, w_tile);
        if (need_weight) grad_weight.slice(0, start, start + logits.size(1)).addmm_(logits.t(), h.slice(0, begin, end));
      };
      for_each_logits_tile(h, w, sequence_chunks(in.active, in.chunk), in.chunk, tile, backward_tile);
    });
    return in.gradients(inputs, grad_rows, grad_weight);
  }
};

}  // namespace brain::inline v0::libtorch::detail
