#pragma once
// Per-token log-probabilities from rows of logits, over raw contiguous memory: no tensor library,
// so an Eigen trainer, the LibTorch operations (brain/backends/torch/log_probs.hpp) and the CUDA
// kernels share them.
//
// For one token with logits x[0..V) and label y:
//   log p(y) = x[y] - logsumexp(x)                                  (forward: one read of x)
//   d log p(y) / d x[j] = [j == y] - exp(x[j] - logsumexp(x))      (backward: one read, one write)
//
// Under a sampler's settings (struct sampling: temperature T, top-k, top-p), the log-prob is that
// of the distribution the sampler drew from: v = x / T, the kept set K = {j : v_j >= threshold}
// (top-k, then top-p on the renormalised top-k distribution), and
//   log p'(y) = v_y - logsumexp_{j in K} v_j  (-inf if y is not in K)
//   d log p'(y) / d x[j] = ([j == y] - p'_j) / T for j in K, 0 elsewhere.
// Each row is computed alone, in a fixed order: a token's log-prob does not depend on the rest
// of the batch.
//
// Accumulation is in float for float, float16 and bfloat16 inputs, in double for double.

#include <brain/config.hpp>
#include <brain/kernels/simd.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <type_traits>
#include <vector>

namespace brain::inline v0::kernels {

/// The type sums and log-sum-exps of rows of `In` are accumulated in.
template <class In>
using accumulate_t = std::conditional_t<std::is_same_v<In, double>, double, float>;

using simd::exp_branchless;

namespace detail {

inline constexpr int lanes = 16;   // independent accumulators: vector registers without reassociation
inline constexpr int block = 512;  // values per block: read from memory once, re-read from L1

template <class In>
BRAIN_HOST_DEVICE accumulate_t<In> load(const In* p, std::int64_t j) {
  return static_cast<accumulate_t<In>>(p[j]);
}

/// Reads x[j] as it enters the logsumexp: converted to the accumulation type.
template <class In>
struct plain_load {
  BRAIN_HOST_DEVICE accumulate_t<In> operator()(const In* p, std::int64_t j) const { return load(p, j); }
};

}  // namespace detail

/// A sampler's settings, as in Hugging Face's and vLLM's samplers (applied in this order):
/// temperature, then top-k, then top-p on the renormalised top-k distribution.
struct sampling {
  double temperature = 1.0;  ///< logits are divided by it; > 0
  std::int64_t top_k = 0;    ///< keep the k largest logits (ties with the k-th kept too); 0 = all
  double top_p = 1.0;        ///< keep the smallest set of largest probabilities whose mass reaches
                             ///< top_p (ties with the last kept too); in (0, 1], 1 = all
  BRAIN_HOST_DEVICE bool truncates() const { return top_k > 0 || top_p < 1.0; }
  BRAIN_HOST_DEVICE bool is_plain() const { return temperature == 1.0 && !truncates(); }
};

namespace detail {

/// Reads x[j] / T, and -inf below the truncation threshold (NaN stays NaN, so validation sees it).
template <class In>
struct sampled_load {
  accumulate_t<In> temperature;
  accumulate_t<In> threshold;  // in units of x / T; -inf when nothing is truncated
  BRAIN_HOST_DEVICE accumulate_t<In> operator()(const In* p, std::int64_t j) const {
    const accumulate_t<In> v = load(p, j) / temperature;
    return simd::select<accumulate_t<In>>(v < threshold, -std::numeric_limits<accumulate_t<In>>::infinity(), v);
  }
};

}  // namespace detail

/// logsumexp of values seen one at a time (add) or in parts (merge), in any order: a running
/// maximum and the sum of exp(x - maximum). -inf when empty or all -inf; NaN once a NaN or +inf
/// was seen (as row_logsumexp).
template <class Acc>
struct online_logsumexp {
  Acc max = -std::numeric_limits<Acc>::infinity();
  Acc sum = 0;
  bool poisoned = false;

  BRAIN_HOST_DEVICE void add(Acc x) {
    poisoned = poisoned || !(x == x) || x == std::numeric_limits<Acc>::infinity();
    if (poisoned || x == -std::numeric_limits<Acc>::infinity()) return;
    if (x > max) {
      sum = sum * exp_branchless(max - x) + Acc(1);
      max = x;
    } else {
      sum += exp_branchless(x - max);
    }
  }
  BRAIN_HOST_DEVICE void merge(const online_logsumexp& other) {
    poisoned = poisoned || other.poisoned;
    if (other.max == -std::numeric_limits<Acc>::infinity()) return;
    if (max == -std::numeric_limits<Acc>::infinity()) {
      max = other.max;
      sum = other.sum;
      return;
    }
    const Acc m = max > other.max ? max : other.max;
    sum = sum * exp_branchless(max - m) + other.sum * exp_branchless(other.max - m);
    max = m;
  }
  BRAIN_HOST_DEVICE Acc value() const {
    if (poisoned) return std::numeric_limits<Acc>::quiet_NaN();
    if (max == -std::numeric_limits<Acc>::infinity()) return max;
    return max + std::log(sum);
  }
};

/// logsumexp of x[0..n), reading x from memory once: each block's maximum, then the sum of its
/// exponentials from cache, merged into a running (max, sum). -inf for an all -inf row; NaN if
/// any value is NaN or +inf. (The loops are shaped so that GCC vectorises them without
/// -ffast-math: independent lane accumulators, and exponentials written to a block buffer.)
template <class In, class Load = detail::plain_load<In>>
BRAIN_HOST_DEVICE accumulate_t<In> row_logsumexp(const In* x, std::int64_t n, Load load = {}) {
  using acc = accumulate_t<In>;
  constexpr acc minus_inf = -std::numeric_limits<acc>::infinity();
  acc running_max = minus_inf, running_sum = 0;
  bool poisoned = false;  // NaN or +inf seen
  acc exps[detail::block];
  for (std::int64_t start = 0; start < n; start += detail::block) {
    const std::int64_t len = std::min<std::int64_t>(detail::block, n - start);
    const std::int64_t whole = len - len % detail::lanes;
    const In* p = x + start;
    acc lane[detail::lanes];
    for (int l = 0; l < detail::lanes; ++l) lane[l] = minus_inf;
    for (std::int64_t j = 0; j < whole; j += detail::lanes)
      for (int l = 0; l < detail::lanes; ++l) lane[l] = lane[l] < load(p, j + l) ? load(p, j + l) : lane[l];
    acc block_max = minus_inf;
    for (int l = 0; l < detail::lanes; ++l) block_max = std::max(block_max, lane[l]);
    for (std::int64_t j = whole; j < len; ++j) block_max = std::max(block_max, load(p, j));
    if (block_max == minus_inf) {  // nothing but -inf, or NaN that the lane maxima skipped
      for (std::int64_t j = 0; j < len; ++j) poisoned = poisoned || !(load(p, j) == load(p, j));
      continue;
    }
    const acc new_max = std::max(running_max, block_max);
    for (std::int64_t j = 0; j < len; ++j) exps[j] = exp_branchless(load(p, j) - new_max);
    for (int l = 0; l < detail::lanes; ++l) lane[l] = 0;
    for (std::int64_t j = 0; j < whole; j += detail::lanes)
      for (int l = 0; l < detail::lanes; ++l) lane[l] += exps[j + l];
    acc block_sum = 0;
    for (int l = 0; l < detail::lanes; ++l) block_sum += lane[l];
    for (std::int64_t j = whole; j < len; ++j) block_sum += exps[j];
    running_sum = running_sum * exp_branchless(running_max - new_max) + block_sum;
    running_max = new_max;
    poisoned = poisoned || !(block_sum == block_sum) || new_max == std::numeric_limits<acc>::infinity();
  }
  if (poisoned) return std::numeric_limits<acc>::quiet_NaN();
  return running_max == minus_inf ? minus_inf : running_max + std::log(running_sum);
}

namespace detail {

/// The largest load(x, j) over [0, n), in independent lanes; NaN never wins (the sum that
/// follows sees it).
template <class In, class Load>
accumulate_t<In> row_max(const In* x, std::int64_t n, Load load) {
  using acc = accumulate_t<In>;
  acc lane[lanes];
  for (int l = 0; l < lanes; ++l) lane[l] = -std::numeric_limits<acc>::infinity();
  const std::int64_t whole = n - n % lanes;
  for (std::int64_t j = 0; j < whole; j += lanes)
    for (int l = 0; l < lanes; ++l) lane[l] = lane[l] < load(x, j + l) ? load(x, j + l) : lane[l];
  acc max = -std::numeric_limits<acc>::infinity();
  for (int l = 0; l < lanes; ++l) max = max < lane[l] ? lane[l] : max;
  for (std::int64_t j = whole; j < n; ++j) max = max < load(x, j) ? load(x, j) : max;
  return max;
}

/// The sum of exp(load(x, j) - shift) over [0, n), in independent lanes; with Write, every term
/// is also stored to out[j] (out may alias x).
template <bool Write, class In, class Load, class Out>
accumulate_t<In> exp_shifted_sum(const In* x, std::int64_t n, Load load, accumulate_t<In> shift, Out* out) {
  using acc = accumulate_t<In>;
  acc lane[lanes] = {};
  const std::int64_t whole = n - n % lanes;
  for (std::int64_t j = 0; j < whole; j += lanes)
    for (int l = 0; l < lanes; ++l) {
      const acc e = exp_branchless(load(x, j + l) - shift);
      if constexpr (Write) out[j + l] = static_cast<Out>(e);
      lane[l] += e;
    }
  acc sum = 0;
  for (int l = 0; l < lanes; ++l) sum += lane[l];
  for (std::int64_t j = whole; j < n; ++j) {
    const acc e = exp_branchless(load(x, j) - shift);
    if constexpr (Write) out[j] = static_cast<Out>(e);
    sum += e;
  }
  return sum;
}

}  // namespace detail

/// Adds one tile of a row, v_j = load(x, j) for j in [0, n), to the row's running logsumexp: the
/// vocabulary-tiled fused path sees each token's logits a tile at a time, while the tile is in
/// cache. With Write, numerators[j] = exp(v_j - m) for the running maximum m after this tile:
/// the softmax numerators that the running sum counts (numerators may alias x). Returns
/// exp(old maximum - m), the factor that brings anything accumulated against the old maximum to
/// the new one (1 when it did not move, 0 before the first finite value).
template <bool Write, class In, class Load, class Out = accumulate_t<In>>
accumulate_t<In> add_tile(online_logsumexp<accumulate_t<In>>& state, const In* x, std::int64_t n, Load load,
                          Out* numerators = nullptr) {
  using acc = accumulate_t<In>;
  constexpr acc minus_inf = -std::numeric_limits<acc>::infinity();
  const acc tile_max = detail::row_max(x, n, load);
  const acc m = state.max < tile_max ? tile_max : state.max;
  if (m == minus_inf) {  // nothing finite so far: the tile adds nothing, unless it holds NaN
    for (std::int64_t j = 0; j < n; ++j) {
      state.poisoned = state.poisoned || !(load(x, j) == load(x, j));
      if constexpr (Write) numerators[j] = Out(0);
    }
    return acc(1);
  }
  const acc sum = detail::exp_shifted_sum<Write>(x, n, load, m, numerators);
  const acc scale = state.max == m ? acc(1) : exp_branchless(state.max - m);
  state.sum = state.sum * scale + sum;
  state.max = m;
  state.poisoned = state.poisoned || !(sum == sum) || m == std::numeric_limits<acc>::infinity();
  return scale;
}

/// log p(label) for one row of logits.
template <class In>
BRAIN_HOST_DEVICE accumulate_t<In> token_log_prob(const In* x, std::int64_t n, std::int64_t label) {
  return detail::load(x, label) - row_logsumexp(x, n);
}

/// d (upstream * log p(label)) / d x[j] = upstream * ([j == label] - exp(x[j] - lse)) for one logit,
/// given its row's logsumexp: the element the CPU loop below and the CUDA backward kernel share.
template <class Acc>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT Acc logit_gradient(Acc x, Acc lse, Acc upstream, bool is_label) {
  return upstream * ((is_label ? Acc(1) : Acc(0)) - exp_branchless(x - lse));
}

/// grad[j] = upstream * ([j == label] - exp(v_j - lse)) for one row, or one tile of a row, of
/// values v_j = load(x, j): the gradient of upstream * log p(label) with respect to them, given the
/// row's logsumexp `lse`, written in one pass. label = -1: the label lies outside this tile (no
/// one-hot term). `grad` may alias `x` (in place).
template <class In, class Out, class Load>
BRAIN_HOST_DEVICE void tile_log_prob_backward(const In* x, std::int64_t n, std::int64_t label, Load load,
                                              accumulate_t<In> lse, accumulate_t<In> upstream, Out* grad) {
  using acc = accumulate_t<In>;
  const acc at_label =
      label >= 0 ? logit_gradient(load(x, label), lse, upstream, true) : acc(0);  // before x is overwritten
  for (std::int64_t j = 0; j < n; ++j) grad[j] = static_cast<Out>(logit_gradient(load(x, j), lse, upstream, false));
  if (label >= 0) grad[label] = static_cast<Out>(at_label);
}

/// grad[j] = upstream * ([j == label] - exp(x[j] - lse)), for the row's logsumexp `lse`: the
/// gradient of upstream * log p(label) with respect to the logits, written in one pass. `grad`
/// may alias `x` (in place).
template <class In, class Out>
BRAIN_HOST_DEVICE void token_log_prob_backward(const In* x, std::int64_t n, std::int64_t label, accumulate_t<In> lse,
                                               accumulate_t<In> upstream, Out* grad) {
  tile_log_prob_backward(x, n, label, detail::plain_load<In>{}, lse, upstream, grad);
}

/// The normaliser of one row under a sampler's settings: log p'(j) = x[j] / T - lse for
/// x[j] / T >= threshold, -inf below it (threshold = -inf when nothing is truncated).
template <class Acc>
struct sampled_row {
  Acc lse;
  Acc threshold;
};

/// The truncation threshold of one row (host only): the smallest kept value of x / T under
/// top-k and top-p, -inf when the settings keep everything, NaN when the row holds NaN or +inf.
/// `scratch` is resized to n. Ties are kept together, so the kept set does not depend on any
/// sort order: top-k keeps every value >= the k-th largest; top-p walks the distinct values
/// downwards and keeps each while the mass strictly above it is below top_p.
template <class In>
accumulate_t<In> truncation_threshold(const In* x, std::int64_t n, const sampling& s,
                                      std::vector<accumulate_t<In>>& scratch) {
  using acc = accumulate_t<In>;
  constexpr acc minus_inf = -std::numeric_limits<acc>::infinity();
  if (!s.truncates()) return minus_inf;
  scratch.resize(static_cast<std::size_t>(n));
  const acc temperature = static_cast<acc>(s.temperature);
  for (std::int64_t j = 0; j < n; ++j) {
    const acc v = detail::load(x, j) / temperature;
    if (!(v < std::numeric_limits<acc>::infinity())) return std::numeric_limits<acc>::quiet_NaN();  // NaN, +inf
    scratch[static_cast<std::size_t>(j)] = v;
  }
  acc threshold = minus_inf;
  auto kept_end = scratch.end();
  if (s.top_k > 0 && s.top_k < n) {
    std::nth_element(scratch.begin(), scratch.begin() + (s.top_k - 1), scratch.end(), std::greater<acc>());
    threshold = scratch[static_cast<std::size_t>(s.top_k - 1)];
    kept_end = std::partition(scratch.begin(), scratch.end(), [&](acc v) { return v >= threshold; });
  }
  if (s.top_p < 1.0) {
    std::sort(scratch.begin(), kept_end, std::greater<acc>());
    const std::int64_t m = kept_end - scratch.begin();
    const acc lse = row_logsumexp(scratch.data(), m);
    double mass_above = 0;  // of the values strictly above the current one
    for (std::int64_t i = 0; i < m && mass_above < s.top_p;) {
      const acc value = scratch[static_cast<std::size_t>(i)];
      threshold = value;
      for (; i < m && scratch[static_cast<std::size_t>(i)] == value; ++i)
        mass_above += std::exp(double(value) - double(lse));
    }
  }
  return threshold;
}

/// The row's normaliser under the sampler's settings, given its truncation threshold.
template <class In>
BRAIN_HOST_DEVICE sampled_row<accumulate_t<In>> sampled_row_logsumexp(const In* x, std::int64_t n, const sampling& s,
                                                                      accumulate_t<In> threshold) {
  using acc = accumulate_t<In>;
  if (s.is_plain()) return {row_logsumexp(x, n), -std::numeric_limits<acc>::infinity()};
  return {row_logsumexp(x, n, detail::sampled_load<In>{static_cast<acc>(s.temperature), threshold}), threshold};
}

/// log p'(label) of the sampled distribution, given the row's normaliser: -inf outside the kept set.
template <class In>
BRAIN_HOST_DEVICE accumulate_t<In> sampled_token_log_prob(const In* x, std::int64_t label, const sampling& s,
                                                          sampled_row<accumulate_t<In>> row) {
  using acc = accumulate_t<In>;
  if (s.is_plain()) return detail::load(x, label) - row.lse;
  return detail::sampled_load<In>{static_cast<acc>(s.temperature), row.threshold}(x, label) - row.lse;
}

/// The gradient of upstream * log p'(label) with respect to the logits (see the header comment),
/// written in one pass; `grad` may alias `x`. A label outside the kept set (log p' = -inf) gets
/// a zero gradient row.
template <class In, class Out>
BRAIN_HOST_DEVICE void sampled_token_log_prob_backward(const In* x, std::int64_t n, std::int64_t label,
                                                       const sampling& s, sampled_row<accumulate_t<In>> row,
                                                       accumulate_t<In> upstream, Out* grad) {
  using acc = accumulate_t<In>;
  if (s.is_plain()) return token_log_prob_backward(x, n, label, row.lse, upstream, grad);
  const detail::sampled_load<In> load{static_cast<acc>(s.temperature), row.threshold};
  const bool label_kept = load(x, label) > -std::numeric_limits<acc>::infinity();
  // Dropped logits read -inf, so exp(-inf - lse) = 0 and their gradient is exactly 0.
  tile_log_prob_backward(x, n, label, load, row.lse, label_kept ? upstream / static_cast<acc>(s.temperature) : acc(0),
                         grad);
}

}  // namespace brain::inline v0::kernels
