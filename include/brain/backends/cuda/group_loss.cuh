#pragma once
// The group-loss kernel (declared in brain/backends/cuda/api.hpp). Include only in .cu files.
// Each sample's arithmetic is formula.hpp's, the functions the CPU kernel (kernels/group_loss.hpp)
// and brain_loss's composed path call, with the same exponential (kernels::simd::exp_branchless)
// and checks: pass 1 builds each thread's online logsumexps of log alpha and log beta (eqs. 6, 11)
// and the first bad input, an all-reduce merges them; pass 2 re-reads the group (from cache) and
// writes alpha-bar, beta-bar, the gradient (eq. 12), and the group's KL (eq. 14) after a second
// reduce. (The CPU kernel stores the shifted exponentials instead of recomputing them; the
// formulas are the same.)

#include <brain/backends/cuda/api.hpp>
#include <brain/backends/cuda/common.cuh>
#include <brain/formula.hpp>
#include <brain/kernels/group_loss.hpp>

#include <cstdint>
#include <vector>

namespace brain::inline v0::cuda {
namespace detail {

/// Groups up to this size get a warp each; larger ones a block of group_block_threads.
inline constexpr index warp_group_limit = 1024;
inline constexpr int group_block_threads = 256;

/// Pass 1's per-thread state: both logsumexps and the smallest bad-input code seen (0: none).
template <class Acc>
struct group_partials {
  kernels::online_logsumexp<Acc> alpha, beta;
  int status = 0;
};
__device__ inline int first_status(int a, int b) { return a == 0 ? b : (b == 0 ? a : (a < b ? a : b)); }
template <class Acc>
__device__ void combine(group_partials<Acc>& a, const group_partials<Acc>& b) {
  a.alpha.merge(b.alpha);
  a.beta.merge(b.beta);
  a.status = first_status(a.status, b.status);
}
template <class Acc>
__device__ group_partials<Acc> shuffle_xor(const group_partials<Acc>& p, int mask) {
  return {shuffle_xor(p.alpha, mask), shuffle_xor(p.beta, mask), __shfl_xor_sync(0xffffffffu, p.status, mask)};
}

__device__ inline void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ inline void atomic_add(double* p, double v) { atomicAdd(p, v); }

/// `Threads` threads per group: 32 (a warp; a block holds group_block_threads / 32 groups) or
/// group_block_threads (one group per block). `status` (nullable) receives the smallest
/// (row << 8 | group_status) of the bad rows.
template <int Threads, class T, class G>
__global__ void __launch_bounds__(group_block_threads)
    group_loss_kernel(kernels::group_loss_inputs<T> in, kernels::group_loss_outputs<T> out, G goodness,
                      unsigned long long* status) {
  using acc = kernels::accumulate_t<T>;
  constexpr int groups_per_block = group_block_threads / Threads;
  const index row = static_cast<index>(blockIdx.x) * groups_per_block + threadIdx.x / Threads;
  if (row >= in.prompts) return;  // whole warps (Threads = 32) or whole blocks leave together
  const int lane = static_cast<int>(threadIdx.x % Threads);
  const index begin = row * in.n, end = begin + in.n;

  group_partials<acc> p;
  for (index i = begin + lane; i < end; i += Threads) {
    const acc lp = in.log_policy[i], lq = in.log_proposal[i], l0 = in.log_prior[i], r = in.reward[i];
    const acc lg = kernels::log_goodness_value<acc>(goodness, r);
    p.status = first_status(p.status, static_cast<int>(kernels::check_sample(lp, lq, l0, r, lg)));
    p.alpha.add(formula::log_target_weight(lg, l0, lq));  // eq. 6
    p.beta.add(formula::log_baseline_weight(lp, lq));     // eq. 11
  }
  p = group_all_reduce<Threads>(p);
  const acc lse_alpha = p.alpha.value(), lse_beta = p.beta.value();
  const int row_status = first_status(p.status, static_cast<int>(kernels::check_group(lse_alpha)));

  const acc inv_prompts = acc(1) / static_cast<acc>(in.prompts);
  sum_state<acc> kl;
  for (index i = begin + lane; i < end; i += Threads) {
    const acc lq = in.log_proposal[i];
    const acc lg = kernels::log_goodness_value<acc>(goodness, static_cast<acc>(in.reward[i]));
    const acc log_target = formula::log_target_weight(lg, static_cast<acc>(in.log_prior[i]), lq) - lse_alpha;
    const acc log_baseline = formula::log_baseline_weight(static_cast<acc>(in.log_policy[i]), lq) - lse_beta;
    const acc target = kernels::exp_branchless(log_target), baseline = kernels::exp_branchless(log_baseline);
    out.target_weights[i] = static_cast<T>(target);
    out.baseline_weights[i] = static_cast<T>(baseline);
    out.grad_log_policy[i] = static_cast<T>(formula::loss_gradient(target, baseline, inv_prompts));
    kl.value += formula::kl_summand(target, log_target, log_baseline);
  }
  kl = group_all_reduce<Threads>(kl);  // eq. 14
  if (lane != 0) return;
  out.per_prompt[row] = static_cast<T>(kl.value);
  if (out.loss != nullptr) atomic_add(out.loss, static_cast<T>(kl.value * inv_prompts));
  if (status != nullptr && row_status != 0)
    atomicMin(status, (static_cast<unsigned long long>(row) << 8) | static_cast<unsigned long long>(row_status));
}

/// Queues the kernel on `stream` (status: the first bad (row << 8 | check) goes there, or null).
template <class T, class G>
void enqueue_group_loss(const kernels::group_loss_inputs<T>& in, const kernels::group_loss_outputs<T>& out,
                        const G& goodness, cudaStream_t stream, unsigned long long* status) {
  constexpr std::string_view where = "cuda::launch_group_loss";
  if (out.loss != nullptr) check(cudaMemsetAsync(out.loss, 0, sizeof(T), stream), where, "cudaMemsetAsync");
  constexpr int block = group_block_threads;
  if (in.n <= warp_group_limit) {
    constexpr index groups_per_block = block / 32;
    const auto blocks = static_cast<unsigned>((in.prompts + groups_per_block - 1) / groups_per_block);
    group_loss_kernel<32, T, G><<<blocks, block, 0, stream>>>(in, out, goodness, status);
  } else {
    group_loss_kernel<block, T, G><<<static_cast<unsigned>(in.prompts), block, 0, stream>>>(in, out, goodness, status);
  }
  check(cudaGetLastError(), where, "the kernel launch");
}

}  // namespace detail

template <class T, class G>
void launch_group_loss(const kernels::group_loss_inputs<T>& in, const kernels::group_loss_outputs<T>& out,
                       const G& goodness, cudaStream_t stream, deferred_check& deferred) {
  kernels::check_group_loss_arguments("cuda::launch_group_loss", in, out);
  goodness.validate();
  unsigned long long* status = deferred.arm(stream);  // throws for the previous launch's bad group
  detail::enqueue_group_loss(in, out, goodness, stream, status);
  deferred.record(stream);
}

template <class T, class G>
void launch_group_loss(const kernels::group_loss_inputs<T>& in, const kernels::group_loss_outputs<T>& out,
                       const G& goodness, cudaStream_t stream, bool validate) {
  constexpr std::string_view where = "cuda::launch_group_loss";
  kernels::check_group_loss_arguments(where, in, out);
  goodness.validate();
  using detail::check;
  unsigned long long* status = nullptr;
  if (validate) {
    check(cudaMallocAsync(reinterpret_cast<void**>(&status), sizeof(*status), stream), where, "cudaMallocAsync");
    check(cudaMemsetAsync(status, 0xff, sizeof(*status), stream), where, "cudaMemsetAsync");
  }
  detail::enqueue_group_loss(in, out, goodness, stream, status);
  if (!validate) return;
  unsigned long long first_bad = 0;
  check(cudaMemcpyAsync(&first_bad, status, sizeof(first_bad), cudaMemcpyDeviceToHost, stream), where,
        "cudaMemcpyAsync");
  check(cudaFreeAsync(status, stream), where, "cudaFreeAsync");
  check(cudaStreamSynchronize(stream), where, "the kernel");
  if (first_bad == ~0ull) return;
  // Name the column too: copy the bad row's inputs back (an error path: one small transfer).
  const index row = static_cast<index>(first_bad >> 8), at = row * in.n;
  std::vector<T> lp(static_cast<std::size_t>(in.n)), lq(lp.size()), l0(lp.size()), r(lp.size());
  const std::size_t bytes = sizeof(T) * lp.size();
  check(cudaMemcpy(lp.data(), in.log_policy + at, bytes, cudaMemcpyDeviceToHost), where, "cudaMemcpy");
  check(cudaMemcpy(lq.data(), in.log_proposal + at, bytes, cudaMemcpyDeviceToHost), where, "cudaMemcpy");
  check(cudaMemcpy(l0.data(), in.log_prior + at, bytes, cudaMemcpyDeviceToHost), where, "cudaMemcpy");
  check(cudaMemcpy(r.data(), in.reward + at, bytes, cudaMemcpyDeviceToHost), where, "cudaMemcpy");
  kernels::fail_group(where, row, static_cast<kernels::group_status>(first_bad & 0xff), lp.data(), lq.data(), l0.data(),
                      r.data(), in.n, goodness);
}

}  // namespace brain::inline v0::cuda
