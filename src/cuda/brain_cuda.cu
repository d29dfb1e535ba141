// brain::cuda: the raw-pointer CUDA API of brain/backends/cuda.hpp, compiled once for float and
// double, so that code built by a plain C++ compiler (a LibTorch trainer, an Eigen trainer) can
// call the kernels by linking this library.

#include <brain/backends/cuda.hpp>
#include <brain/backends/cuda/group_loss.cuh>
#include <brain/backends/cuda/log_probs.cuh>

namespace brain::inline v0::cuda {

BRAIN_CUDA_INSTANTIATE(, float)
BRAIN_CUDA_INSTANTIATE(, double)

}  // namespace brain::inline v0::cuda
