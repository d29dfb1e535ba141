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
#include <sstream>
#include <stdexcept>
#include <string_view>

namespace brain::inline v0::cuda {

namespace detail {

/// Throws std::runtime_error for a failed CUDA call (not bad input: the device or the driver).
inline void check(cudaError_t e, std::string_view where, std::string_view what) {
  if (e == cudaSuccess) return;
  std::ostringstream os;
  os << "brain::" << where << ": " << what << " failed: " << cudaGetErrorName(e) << " (" << cudaGetErrorString(e)
     << ")";
  throw std::runtime_error(os.str());
}

}  // namespace detail

/// The validation of launch_group_loss calls, deferred: the kernel's status word travels to pinned
/// host memory on the stream behind the kernel and nothing waits. check() (and the next
/// launch_group_loss given this object) waits for that copy alone, then throws std::invalid_argument
/// naming the launch's first bad row and its check, in brain_loss's words, but not the column:
/// the inputs may have changed since. One object per stream; not thread-safe. Host code only.
class deferred_check {
 public:
  deferred_check() = default;
  deferred_check(const deferred_check&) = delete;
  deferred_check& operator=(const deferred_check&) = delete;
  ~deferred_check() {  // an unread status is dropped; errors here are not reported
    if (event_ != nullptr) cudaEventDestroy(event_);
    if (host_ != nullptr) cudaFreeHost(host_);
    if (device_ != nullptr) cudaFree(device_);
  }

  /// A launch's status has not been read yet.
  bool pending() const { return pending_; }

  /// Waits for the last launch's status and throws if it found a bad group ("brain::<where>: row
  /// r: <check> (found by a deferred check ...)"); nothing to do when none is pending.
  void check(std::string_view where = "cuda::launch_group_loss") {
    if (!pending_) return;
    pending_ = false;
    detail::check(cudaEventSynchronize(event_), where, "waiting for a deferred check");
    const unsigned long long status = *host_;
    if (status == ~0ull) return;
    brain::detail::fail(where, "row ", static_cast<index>(status >> 8), ": ",
                        kernels::describe(static_cast<kernels::group_status>(status & 0xff)),
                        " (found by the deferred check of an earlier call; its column is not known)");
  }

  /// For launch_group_loss: checks the previous launch, then returns the device status word, reset, for
  /// the next launch on `stream`.
  unsigned long long* arm(cudaStream_t stream) {
    check();
    constexpr std::string_view where = "cuda::deferred_check";
    if (device_ == nullptr) {
      detail::check(cudaMalloc(reinterpret_cast<void**>(&device_), sizeof(*device_)), where, "cudaMalloc");
      detail::check(cudaMallocHost(reinterpret_cast<void**>(&host_), sizeof(*host_)), where, "cudaMallocHost");
      detail::check(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), where, "cudaEventCreate");
    }
    detail::check(cudaMemsetAsync(device_, 0xff, sizeof(*device_), stream), where, "cudaMemsetAsync");
    return device_;
  }
  /// For launch_group_loss: queues the copy of the status word behind the launch.
  void record(cudaStream_t stream) {
    constexpr std::string_view where = "cuda::deferred_check";
    detail::check(cudaMemcpyAsync(host_, device_, sizeof(*host_), cudaMemcpyDeviceToHost, stream), where,
                  "cudaMemcpyAsync");
    detail::check(cudaEventRecord(event_, stream), where, "cudaEventRecord");
    pending_ = true;
  }

 private:
  unsigned long long* device_ = nullptr;  // the kernel's first bad (row << 8 | status), ~0 when none
  unsigned long long* host_ = nullptr;    // pinned
  cudaEvent_t event_ = nullptr;
  bool pending_ = false;
};

/// The BRAIn loss of [prompts, n] groups (eqs. 6, 11, 12, 14) in one kernel launch: a warp per
/// group while n <= 1024, a block of 256 threads per group above. All pointers are device memory
/// (row-major, contiguous); out.loss, when not null, receives the mean of per_prompt (summed with
/// atomics, so its last bits may vary from run to run). With `validate`, waits for the stream and
/// throws std::invalid_argument naming the first bad row (as brain_loss does); without, bad rows
/// give NaN and nothing waits.
template <class T, class G>
void launch_group_loss(const kernels::group_loss_inputs<T>& in, const kernels::group_loss_outputs<T>& out,
                       const G& goodness, cudaStream_t stream, bool validate = true);

/// launch_group_loss with its validation deferred to `deferred` (see deferred_check): first checks the
/// previous launch's status (throwing for its bad group), then queues the kernel and the copy of
/// its status; nothing waits for this launch.
template <class T, class G>
void launch_group_loss(const kernels::group_loss_inputs<T>& in, const kernels::group_loss_outputs<T>& out,
                       const G& goodness, cudaStream_t stream, deferred_check& deferred);

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
