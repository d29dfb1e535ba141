#pragma once
// What the CUDA kernels share: error checks and warp/block all-reductions of merge-able states.
// Include only in .cu files (nvcc).

#include <brain/backends/cuda/api.hpp>
#include <brain/errors.hpp>
#include <brain/kernels/group_loss.hpp>

#include <cuda_runtime.h>

#include <new>
#include <sstream>
#include <stdexcept>
#include <string_view>

namespace brain::inline v0::cuda::detail {

// check(error, where, what): brain/backends/cuda/api.hpp.

// combine(a, b): a becomes the state of a's and b's values together. shuffle_xor: the state of
// the lane `mask` away. Every state type below has both.

template <class Acc>
__device__ void combine(kernels::online_logsumexp<Acc>& a, const kernels::online_logsumexp<Acc>& b) {
  a.merge(b);
}
template <class Acc>
__device__ kernels::online_logsumexp<Acc> shuffle_xor(const kernels::online_logsumexp<Acc>& s, int mask) {
  kernels::online_logsumexp<Acc> o;
  o.max = __shfl_xor_sync(0xffffffffu, s.max, mask);
  o.sum = __shfl_xor_sync(0xffffffffu, s.sum, mask);
  o.poisoned = __shfl_xor_sync(0xffffffffu, static_cast<int>(s.poisoned), mask) != 0;
  return o;
}

/// A sum, for the KL of a group.
template <class Acc>
struct sum_state {
  Acc value = 0;
};
template <class Acc>
__device__ void combine(sum_state<Acc>& a, const sum_state<Acc>& b) {
  a.value += b.value;
}
template <class Acc>
__device__ sum_state<Acc> shuffle_xor(const sum_state<Acc>& s, int mask) {
  return {__shfl_xor_sync(0xffffffffu, s.value, mask)};
}

/// Every lane of the warp gets the combination of all 32 lanes' states (a butterfly: the same
/// order on every lane, so all lanes agree bit for bit).
template <class S>
__device__ S warp_all_reduce(S s) {
  for (int mask = 16; mask >= 1; mask /= 2) combine(s, shuffle_xor(s, mask));
  return s;
}

/// Every thread of a group of `Threads` consecutive threads (32: a warp; a multiple of 32: the
/// whole block, which must then have exactly `Threads` threads) gets the combination of all the
/// group's states. Contains __syncthreads() when Threads > 32: call it from every thread.
template <int Threads, class S>
__device__ S group_all_reduce(S s) {
  static_assert(Threads % 32 == 0 && Threads <= 1024);
  s = warp_all_reduce(s);
  if constexpr (Threads > 32) {
    constexpr int warps = Threads / 32;
    __shared__ alignas(S) unsigned char storage[warps * sizeof(S)];  // raw: __shared__ has no constructors
    S* partial = reinterpret_cast<S*>(storage);
    if (threadIdx.x % 32 == 0) new (&partial[threadIdx.x / 32]) S(s);
    __syncthreads();
    s = partial[0];
    for (int w = 1; w < warps; ++w) combine(s, partial[w]);  // same order in every thread
    __syncthreads();                                         // before the storage is reused
  }
  return s;
}

}  // namespace brain::inline v0::cuda::detail
