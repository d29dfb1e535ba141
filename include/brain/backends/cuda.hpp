#pragma once
// The CUDA backend for code compiled by a plain C++ compiler: the raw-pointer API of
// brain/backends/cuda/api.hpp for the types below, compiled once into the brain::cuda library
// (src/cuda/brain_cuda.cu; linking brain::cuda defines BRAIN_WITH_CUDA). A header-only library
// cannot launch kernels from g++, so this is brain's one compiled component; nvcc users may
// instead include brain/backends/cuda/group_loss.cuh and log_probs.cuh in their own .cu files.
// See docs/cuda.md.

#include <brain/backends/cuda/api.hpp>
#include <brain/goodness.hpp>

namespace brain::inline v0::cuda {

#define BRAIN_CUDA_INSTANTIATE(prefix, T)                                                                             \
  prefix template void launch_group_loss<T, bradley_terry>(const kernels::group_loss_inputs<T>&,                      \
                                                           const kernels::group_loss_outputs<T>&,                     \
                                                           const bradley_terry&, cudaStream_t, bool);                 \
  prefix template void launch_group_loss<T, logistic>(const kernels::group_loss_inputs<T>&,                           \
                                                      const kernels::group_loss_outputs<T>&, const logistic&,         \
                                                      cudaStream_t, bool);                                            \
  prefix template void launch_group_loss<T, log_goodness>(const kernels::group_loss_inputs<T>&,                       \
                                                          const kernels::group_loss_outputs<T>&, const log_goodness&, \
                                                          cudaStream_t, bool);                                        \
  prefix template void launch_group_loss<T, bradley_terry>(const kernels::group_loss_inputs<T>&,                      \
                                                           const kernels::group_loss_outputs<T>&,                     \
                                                           const bradley_terry&, cudaStream_t, deferred_check&);      \
  prefix template void launch_group_loss<T, logistic>(const kernels::group_loss_inputs<T>&,                           \
                                                      const kernels::group_loss_outputs<T>&, const logistic&,         \
                                                      cudaStream_t, deferred_check&);                                 \
  prefix template void launch_group_loss<T, log_goodness>(const kernels::group_loss_inputs<T>&,                       \
                                                          const kernels::group_loss_outputs<T>&, const log_goodness&, \
                                                          cudaStream_t, deferred_check&);                             \
  prefix template void token_log_probs<T>(const T*, index, index, const std::int64_t*, kernels::accumulate_t<T>*,     \
                                          kernels::accumulate_t<T>*, cudaStream_t, const kernels::sampling&,          \
                                          kernels::accumulate_t<T>*);                                                 \
  prefix template void token_log_probs_backward<T>(                                                                   \
      const T*, index, index, const std::int64_t*, const kernels::accumulate_t<T>*, const kernels::accumulate_t<T>*,  \
      T*, cudaStream_t, const kernels::sampling&, const kernels::accumulate_t<T>*);

// Compiled in brain::cuda: float and double, the three goodness models of brain/goodness.hpp.
BRAIN_CUDA_INSTANTIATE(extern, float)
BRAIN_CUDA_INSTANTIATE(extern, double)

}  // namespace brain::inline v0::cuda
