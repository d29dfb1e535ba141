#pragma once
// The raw-pointer CUDA API: device pointers, sizes and a stream; no LibTorch. Declarations only,
// compilable by g++ (it needs CUDA's include directory for cudaStream_t):
//   - brain/backends/cuda.hpp adds the explicit instantiations that the compiled component
//     brain::cuda (src/cuda/brain_cuda.cu) provides: include that from .cpp files and link it;
//   - brain/backends/cuda/group_loss.cuh and log_probs.cuh hold the definitions: include them in
//     your own .cu files for any other type, header-only.
// Every function returns once its work is queued on `stream`, except where it says it waits.
// A CUDA error throws std::runtime_error; a bad argument std::invalid_argument (see docs/cuda.md).

#include <brain/config.hpp>
#include <brain/kernels/group_loss.hpp>
#include <brain/kernels/token_log_probs.hpp>

#include <cuda_runtime_api.h>

#include <cstdint>

namespace brain::inline v0::cuda {

/// The BRAIn loss of [prompts, n] groups (eqs. 6, 11, 12, 14) in one kernel launch: a warp per
/// group while n <= 1024, a block of 256 threads per group above. All pointers are device memory
/// (row-major, contiguous); out.loss, when not null, receives the mean of per_prompt (summed with
/// atomics, so its last bits may vary from run to run). With `validate`, waits for the stream and
/// throws std::invalid_argument naming the first bad row (as brain_loss does); without, bad rows
/// give NaN and nothing waits.
template <class T, class G>
void group_loss(const kernels::group_loss_inputs<T>& in, const kernels::group_loss_outputs<T>& out,
                const G& goodness, cudaStream_t stream, bool validate = true);

/// Per-row log-probabilities from logits [rows, vocabulary] (device memory, row-major):
/// lse[r] = logsumexp(logits[r, :]) and log_probs[r] = logits[r, labels[r]] - lse[r], reading each
/// row once (online logsumexp, 16-byte loads). labels[r] < 0 skips row r (both results 0, the
/// row is not read); labels[r] >= vocabulary gives NaN. NaN or +inf in a row gives NaN.
/// Under sampling settings (kernels::sampling) the log-prob is that of the sampler's distribution
/// (brain/kernels/token_log_probs.hpp): lse is then over the kept x / T, thresholds[r] (when not
/// null) receives the row's truncation threshold for the backward, and a label outside the kept
/// set gets -inf. Top-k / top-p find their threshold by bisection on the values' order-preserving
/// bit patterns, 32 (float) or 64 (double) passes over the row each.
template <class T>
void token_log_probs(const T* logits, index rows, index vocabulary, const std::int64_t* labels,
                     kernels::accumulate_t<T>* lse, kernels::accumulate_t<T>* log_probs, cudaStream_t stream,
                     const kernels::sampling& sampling = {}, kernels::accumulate_t<T>* thresholds = nullptr);

/// grad[r, j] = upstream[r] * ([j == labels[r]] - exp(logits[r, j] - lse[r])): the gradient of
/// sum_r upstream[r] * log_probs[r] with respect to the logits, written in one pass (rows with
/// labels[r] < 0 get zeros). `grad` may be `logits` (in place). Under truncating sampling
/// settings, `thresholds` (from the forward) is required: dropped logits get 0, kept ones
/// upstream * ([j == label] - p'_j) / T.
template <class T>
void token_log_probs_backward(const T* logits, index rows, index vocabulary, const std::int64_t* labels,
                              const kernels::accumulate_t<T>* lse, const kernels::accumulate_t<T>* upstream, T* grad,
                              cudaStream_t stream, const kernels::sampling& sampling = {},
                              const kernels::accumulate_t<T>* thresholds = nullptr);

}  // namespace brain::inline v0::cuda
