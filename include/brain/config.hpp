#pragma once
// Version, namespace and portability macros shared by every brain header.

#define BRAIN_VERSION_MAJOR 0
#define BRAIN_VERSION_MINOR 1
#define BRAIN_VERSION_PATCH 0

// Functions that CUDA kernels share with the host code (see style.md, point 10).
#if defined(__CUDACC__)
#define BRAIN_HOST_DEVICE __host__ __device__
#else
#define BRAIN_HOST_DEVICE
#endif

// Small element functions inside hot loops (exp_branchless, the kernels' pass bodies, logit_gradient):
// in a large translation unit GCC's inliner otherwise runs out of budget and leaves a call per
// element (measured: fused_linear_sequence_log_probs' backward pass ~4x slower; the group loss's
// loop bodies were left out-of-line in the LibTorch benchmark on the AMD machines, ~10x slower).
#if defined(__CUDACC__)
#define BRAIN_INLINE_ELEMENT __forceinline__
#elif defined(__GNUC__) || defined(__clang__)
#define BRAIN_INLINE_ELEMENT [[gnu::always_inline]] inline
#elif defined(_MSC_VER)
#define BRAIN_INLINE_ELEMENT __forceinline
#else
#define BRAIN_INLINE_ELEMENT inline
#endif

// The same for a lambda inside a hot loop: `[&](...) BRAIN_INLINE_LAMBDA { ... }`.
#if !defined(__CUDACC__) && (defined(__GNUC__) || defined(__clang__))
#define BRAIN_INLINE_LAMBDA __attribute__((always_inline))
#else
#define BRAIN_INLINE_LAMBDA
#endif

#include <cstddef>

/// Everything public lives in `brain::v0` (inline), so a future ABI break can bump it.
namespace brain::inline v0 {

/// Row and column indices and extents, signed like Eigen's and LibTorch's.
using index = std::ptrdiff_t;

}  // namespace brain::inline v0
