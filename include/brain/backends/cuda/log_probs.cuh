#pragma once
// The token log-prob kernels (declared in brain/backends/cuda/api.hpp). Include only in .cu files.
// One block per row of logits. Forward: each thread folds its 16-byte vectors of the row into an
// online logsumexp (kernels::online_logsumexp, shared with the CPU tests), a block all-reduce
// merges them. Backward: each element is kernels::logit_gradient, as in the CPU kernel.

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
    token_log_probs_kernel(const T* logits, index vocabulary, const std::int64_t* labels,
                           kernels::accumulate_t<T>* lse, kernels::accumulate_t<T>* log_probs) {
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

template <class T>
void token_log_probs(const T* logits, index rows, index vocabulary, const std::int64_t* labels,
                     kernels::accumulate_t<T>* lse, kernels::accumulate_t<T>* log_probs, cudaStream_t stream) {
  constexpr std::string_view where = "cuda::token_log_probs";
  detail::check_row_arguments(where, logits, rows, vocabulary, labels);
  if (rows > 0 && (lse == nullptr || log_probs == nullptr))
    brain::detail::fail(where, lse == nullptr ? "lse" : "log_probs", " is a null pointer");
  if (rows == 0) return;
  detail::token_log_probs_kernel<T>
      <<<static_cast<unsigned>(rows), detail::row_block_threads, 0, stream>>>(logits, vocabulary, labels, lse, log_probs);
  detail::check(cudaGetLastError(), where, "the kernel launch");
}

template <class T>
void token_log_probs_backward(const T* logits, index rows, index vocabulary, const std::int64_t* labels,
                              const kernels::accumulate_t<T>* lse, const kernels::accumulate_t<T>* upstream, T* grad,
                              cudaStream_t stream) {
  constexpr std::string_view where = "cuda::token_log_probs_backward";
  detail::check_row_arguments(where, logits, rows, vocabulary, labels);
  if (rows > 0 && (lse == nullptr || upstream == nullptr || grad == nullptr))
    brain::detail::fail(where, lse == nullptr ? "lse" : upstream == nullptr ? "upstream" : "grad", " is a null pointer");
  if (rows == 0) return;
  detail::token_log_probs_backward_kernel<T><<<static_cast<unsigned>(rows), detail::row_block_threads, 0, stream>>>(
      logits, vocabulary, labels, lse, upstream, grad);
  detail::check(cudaGetLastError(), where, "the kernel launch");
}

}  // namespace brain::inline v0::cuda
