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

#include <cstddef>

/// Everything public lives in `brain::v0` (inline), so a future ABI break can bump it.
namespace brain::inline v0 {

/// Row and column indices and extents, signed like Eigen's and LibTorch's.
using index = std::ptrdiff_t;

}  // namespace brain::inline v0
