#pragma once
// The token log-prob kernels (declared in brain/backends/cuda/api.hpp). Include only in .cu files.
// One block per row of logits. Forward: each thread folds its 16-byte vectors of the row into an
// online logsumexp (kernels::online_logsumexp, shared with the CPU tests), a block all-reduce
// merges them. Backward: each element is kernels::logit_gradient, as in the CPU kernel.
// Sampling settings (kernels::sampling): values are read as x / T, and top-k / top-p find the
// row's threshold by bisection over the order-preserving bit patterns of x / T (each step one
// pass and one block all-reduce), giving the same kept set as the CPU's sort: ties kept together.

#include <brain/backends/cuda/api.hpp>
#include <brain/backends/cuda/common.cuh>
#include <brain/kernels/group_loss.hpp>
#include <brain/kernels/token_log_probs.hpp>

#include <cstdint>
#include <limits>

namespace brain::inline v0::cuda {
namespace detail {

inline constexpr int row_block_threads = 256;

/// 16 bytes of T: one vector load or store.
template <class T>
struct alignas(16) vector16 {
  static constexpr int width = 16 / sizeof(T);
  T v[width];
};

/// Elements of x before its first 16-byte boundary (all of a row too short to reach one).
template <class T>
__device__ index unaligned_head(const T* x, index n) {
  const auto misalignment = static_cast<index>(reinterpret_cast<std::uintptr_t>(x) % 16);
  const index head = misalignment == 0 ? 0 : (16 - misalignment) / static_cast<index>(sizeof(T));
  return head < n ? head : n;
}

/// f(value) for every element of x[0, n), split across the block: a scalar head up to the first
/// 16-byte boundary, 16-byte vectors, a scalar tail.
template <class T, class F>
__device__ void for_each_in_row(const T* x, index n, F&& f) {
  using vec = vector16<T>;
  const index head = unaligned_head(x, n);
  const index vectors = (n - head) / vec::width;
  for (index j = threadIdx.x; j < head; j += blockDim.x) f(x[j]);
  const vec* body = reinterpret_cast<const vec*>(x + head);
  for (index k = threadIdx.x; k < vectors; k += blockDim.x) {
    const vec w = body[k];
#pragma unroll
    for (int l = 0; l < vec::width; ++l) f(w.v[l]);
  }
  for (index j = head + vectors * vec::width + threadIdx.x; j < n; j += blockDim.x) f(x[j]);
}

/// out[j] = f(j, x[j]) for j in [0, n), split across the block; vectorised when x and out are
/// equally misaligned (rows of two cudaMalloc'd arrays at the same offset are).
template <class T, class F>
__device__ void map_row(const T* x, T* out, index n, F&& f) {
  using vec = vector16<T>;
  const bool same_alignment = reinterpret_cast<std::uintptr_t>(x) % 16 == reinterpret_cast<std::uintptr_t>(out) % 16;
  const index head = same_alignment ? unaligned_head(x, n) : n;
  const index vectors = (n - head) / vec::width;
  for (index j = threadIdx.x; j < head; j += blockDim.x) out[j] = f(j, x[j]);
  const vec* in_body = reinterpret_cast<const vec*>(x + head);
  vec* out_body = reinterpret_cast<vec*>(out + head);
  for (index k = threadIdx.x; k < vectors; k += blockDim.x) {
    const vec w = in_body[k];
    vec r;
#pragma unroll
    for (int l = 0; l < vec::width; ++l) r.v[l] = f(head + k * vec::width + l, w.v[l]);
    out_body[k] = r;
  }
  for (index j = head + vectors * vec::width + threadIdx.x; j < n; j += blockDim.x) out[j] = f(j, x[j]);
}

template <class T>
__global__ void __launch_bounds__(row_block_threads)
    token_log_probs_kernel(const T* logits, index vocabulary, const std::int64_t* labels, kernels::accumulate_t<T>* lse,
                           kernels::accumulate_t<T>* log_probs) {
  using acc = kernels::accumulate_t<T>;
  const index row = blockIdx.x;
  const std::int64_t label = labels[row];
  if (label < 0) {  // not a scored position: the block leaves together
    if (threadIdx.x == 0) lse[row] = log_probs[row] = 0;
    return;
  }
  const T* x = logits + row * vocabulary;
  kernels::online_logsumexp<acc> s;
  for_each_in_row(x, vocabulary, [&](T v) { s.add(static_cast<acc>(v)); });
  s = group_all_reduce<row_block_threads>(s);
  if (threadIdx.x != 0) return;
  const acc row_lse = s.value();
  lse[row] = row_lse;
  log_probs[row] = label < vocabulary ? static_cast<acc>(x[label]) - row_lse : std::numeric_limits<acc>::quiet_NaN();
}

template <class T>
__global__ void __launch_bounds__(row_block_threads)
    token_log_probs_backward_kernel(const T* logits, index vocabulary, const std::int64_t* labels,
                                    const kernels::accumulate_t<T>* lse, const kernels::accumulate_t<T>* upstream,
                                    T* grad) {
  using acc = kernels::accumulate_t<T>;
  const index row = blockIdx.x;
  const std::int64_t label = labels[row];
  const T* x = logits + row * vocabulary;
  T* g = grad + row * vocabulary;
  if (label < 0) {
    map_row(x, g, vocabulary, [](index, T) { return T(0); });
    return;
  }
  const acc row_lse = lse[row], up = upstream[row];
  map_row(x, g, vocabulary, [&](index j, T v) {
    return static_cast<T>(kernels::logit_gradient(static_cast<acc>(v), row_lse, up, j == label));
  });
}

/// Unsigned integers whose order is the order of the floating-point values (NaN aside).
template <class Acc>
struct order_key;
template <>
struct order_key<float> {
  using type = unsigned int;
  __device__ static type of(float v) {
    const type u = __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  }
  __device__ static float value(type k) { return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k); }
};
template <>
struct order_key<double> {
  using type = unsigned long long;
  __device__ static type of(double v) {
    const type u = static_cast<type>(__double_as_longlong(v));
    return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
  }
  __device__ static double value(type k) {
    return __longlong_as_double(static_cast<long long>((k & 0x8000000000000000ull) ? (k & 0x7fffffffffffffffull) : ~k));
  }
};

/// The row's truncation threshold under top-k and top-p (kernels::truncation_threshold's kept set):
/// the smallest value v (as a bit pattern) such that {x / T >= v} is what the sampler keeps.
/// Called by every thread of the block (it all-reduces).
template <class T>
__device__ kernels::accumulate_t<T> truncation_threshold(const T* x, index n, const kernels::sampling& s) {
  using acc = kernels::accumulate_t<T>;
  using key = order_key<acc>;
  using bits = typename key::type;
  constexpr acc inf = std::numeric_limits<acc>::infinity();
  const acc temperature = static_cast<acc>(s.temperature);
  acc threshold = -inf;
  if (s.top_k > 0 && s.top_k < n) {
    // The largest pattern with at least k values at or above it: the k-th largest value.
    bits lo = key::of(-inf), hi = key::of(inf);
    while (lo < hi) {
      const bits mid = lo + (hi - lo + 1) / 2;
      sum_state<long long> count;
      for_each_in_row(x, n, [&](T v) { count.value += key::of(static_cast<acc>(v) / temperature) >= mid ? 1 : 0; });
      count = group_all_reduce<row_block_threads>(count);
      if (count.value >= s.top_k)
        lo = mid;
      else
        hi = mid - 1;
    }
    threshold = key::value(lo);
  }
  if (s.top_p < 1.0) {
    kernels::online_logsumexp<acc> kept;
    for_each_in_row(x, n, [&](T v) {
      const acc a = static_cast<acc>(v) / temperature;
      if (!(a < threshold)) kept.add(a);
    });
    const acc lse = group_all_reduce<row_block_threads>(kept).value();
    // The smallest pattern whose mass strictly above it is below top_p: the values at or above it
    // are those the CPU's walk over the sorted distinct values keeps.
    bits lo = key::of(threshold), hi = key::of(inf);
    while (lo < hi) {
      const bits mid = lo + (hi - lo) / 2;
      sum_state<double> mass;
      for_each_in_row(x, n, [&](T v) {
        const acc a = static_cast<acc>(v) / temperature;
        if (!(a < threshold) && key::of(a) > mid) mass.value += exp(static_cast<double>(a) - static_cast<double>(lse));
      });
      mass = group_all_reduce<row_block_threads>(mass);
      if (mass.value < s.top_p)
        hi = mid;
      else
        lo = mid + 1;
    }
    threshold = key::value(lo);
  }
  return threshold;
}

template <class T>
__global__ void __launch_bounds__(row_block_threads)
    sampled_token_log_probs_kernel(const T* logits, index vocabulary, const std::int64_t* labels,
                                   kernels::accumulate_t<T>* lse, kernels::accumulate_t<T>* log_probs,
                                   kernels::accumulate_t<T>* thresholds, kernels::sampling s) {
  using acc = kernels::accumulate_t<T>;
  const index row = blockIdx.x;
  const std::int64_t label = labels[row];
  if (label < 0) {  // not a scored position: the block leaves together
    if (threadIdx.x == 0) {
      lse[row] = log_probs[row] = 0;
      if (thresholds != nullptr) thresholds[row] = 0;
    }
    return;
  }
  const T* x = logits + row * vocabulary;
  const acc threshold = s.truncates() ? truncation_threshold(x, vocabulary, s) : -std::numeric_limits<acc>::infinity();
  const kernels::detail::sampled_load<T> load{static_cast<acc>(s.temperature), threshold};
  kernels::online_logsumexp<acc> st;
  for_each_in_row(x, vocabulary, [&](T v) { st.add(load(&v, 0)); });
  st = group_all_reduce<row_block_threads>(st);
  if (threadIdx.x != 0) return;
  const acc row_lse = st.value();
  lse[row] = row_lse;
  if (thresholds != nullptr) thresholds[row] = threshold;
  log_probs[row] = label < vocabulary ? load(x, label) - row_lse : std::numeric_limits<acc>::quiet_NaN();
}

template <class T>
__global__ void __launch_bounds__(row_block_threads)
    sampled_token_log_probs_backward_kernel(const T* logits, index vocabulary, const std::int64_t* labels,
                                            const kernels::accumulate_t<T>* lse,
                                            const kernels::accumulate_t<T>* upstream,
                                            const kernels::accumulate_t<T>* thresholds, T* grad, kernels::sampling s) {
  using acc = kernels::accumulate_t<T>;
  const index row = blockIdx.x;
  const std::int64_t label = labels[row];
  const T* x = logits + row * vocabulary;
  T* g = grad + row * vocabulary;
  if (label < 0) {
    map_row(x, g, vocabulary, [](index, T) { return T(0); });
    return;
  }
  const acc threshold = thresholds != nullptr ? thresholds[row] : -std::numeric_limits<acc>::infinity();
  const kernels::detail::sampled_load<T> load{static_cast<acc>(s.temperature), threshold};
  const bool label_kept = load(x, label) > -std::numeric_limits<acc>::infinity();
  const acc row_lse = lse[row], up = label_kept ? upstream[row] / static_cast<acc>(s.temperature) : acc(0);
  // Dropped logits read -inf: exp(-inf - lse) = 0, so their gradient is exactly 0.
  map_row(x, g, vocabulary,
          [&](index j, T v) { return static_cast<T>(kernels::logit_gradient(load(&v, 0), row_lse, up, j == label)); });
}

template <class T>
void check_row_arguments(std::string_view where, const T* logits, index rows, index vocabulary,
                         const std::int64_t* labels) {
  if (rows < 0) brain::detail::fail(where, "rows = ", rows, " must be >= 0");
  if (vocabulary < 1) brain::detail::fail(where, "vocabulary = ", vocabulary, " must be >= 1");
  if (rows > std::numeric_limits<int>::max())
    brain::detail::fail(where, "rows = ", rows, " exceeds one launch's ", std::numeric_limits<int>::max(), " blocks");
  if (rows > 0 && logits == nullptr) brain::detail::fail(where, "logits is a null pointer");
  if (rows > 0 && labels == nullptr) brain::detail::fail(where, "labels is a null pointer");
}

}  // namespace detail

namespace detail {

inline void check_sampling(std::string_view where, const kernels::sampling& s) {
  if (!(s.temperature > 0.0) || !(s.temperature < std::numeric_limits<double>::infinity()))
    brain::detail::fail(where, "sampling temperature = ", brain::detail::describe_value(s.temperature),
                        " must be finite and > 0");
  if (s.top_k < 0) brain::detail::fail(where, "sampling top_k = ", s.top_k, " must be >= 0");
  if (!(s.top_p > 0.0 && s.top_p <= 1.0))
    brain::detail::fail(where, "sampling top_p = ", brain::detail::describe_value(s.top_p), " must be in (0, 1]");
}

}  // namespace detail

template <class T>
void token_log_probs(const T* logits, index rows, index vocabulary, const std::int64_t* labels,
                     kernels::accumulate_t<T>* lse, kernels::accumulate_t<T>* log_probs, cudaStream_t stream,
                     const kernels::sampling& sampling, kernels::accumulate_t<T>* thresholds) {
  constexpr std::string_view where = "cuda::token_log_probs";
  detail::check_row_arguments(where, logits, rows, vocabulary, labels);
  detail::check_sampling(where, sampling);
  if (rows > 0 && (lse == nullptr || log_probs == nullptr))
    brain::detail::fail(where, lse == nullptr ? "lse" : "log_probs", " is a null pointer");
  if (rows == 0) return;
  if (sampling.is_plain()) {
    detail::token_log_probs_kernel<T><<<static_cast<unsigned>(rows), detail::row_block_threads, 0, stream>>>(
        logits, vocabulary, labels, lse, log_probs);
    if (thresholds != nullptr)
      detail::check(
          cudaMemsetAsync(thresholds, 0, sizeof(kernels::accumulate_t<T>) * static_cast<std::size_t>(rows), stream),
          where, "clearing the thresholds");
  } else {
    detail::sampled_token_log_probs_kernel<T><<<static_cast<unsigned>(rows), detail::row_block_threads, 0, stream>>>(
        logits, vocabulary, labels, lse, log_probs, thresholds, sampling);
  }
  detail::check(cudaGetLastError(), where, "the kernel launch");
}

template <class T>
void token_log_probs_backward(const T* logits, index rows, index vocabulary, const std::int64_t* labels,
                              const kernels::accumulate_t<T>* lse, const kernels::accumulate_t<T>* upstream, T* grad,
                              cudaStream_t stream, const kernels::sampling& sampling,
                              const kernels::accumulate_t<T>* thresholds) {
  constexpr std::string_view where = "cuda::token_log_probs_backward";
  detail::check_row_arguments(where, logits, rows, vocabulary, labels);
  detail::check_sampling(where, sampling);
  if (rows > 0 && (lse == nullptr || upstream == nullptr || grad == nullptr))
    brain::detail::fail(where,
                        lse == nullptr        ? "lse"
                        : upstream == nullptr ? "upstream"
                                              : "grad",
                        " is a null pointer");
  if (rows > 0 && sampling.truncates() && thresholds == nullptr)
    brain::detail::fail(where, "thresholds is a null pointer, but top-k / top-p sampling needs the forward's");
  if (rows == 0) return;
  if (sampling.is_plain())
    detail::token_log_probs_backward_kernel<T><<<static_cast<unsigned>(rows), detail::row_block_threads, 0, stream>>>(
        logits, vocabulary, labels, lse, upstream, grad);
  else
    detail::sampled_token_log_probs_backward_kernel<T>
        <<<static_cast<unsigned>(rows), detail::row_block_threads, 0, stream>>>(logits, vocabulary, labels, lse,
                                                                                upstream, thresholds, grad, sampling);
  detail::check(cudaGetLastError(), where, "the kernel launch");
}

}  // namespace brain::inline v0::cuda
