// The performance regression guard (ctest performance_guard, a few seconds): in one process,
// brain_loss against the naive way and against the memory floor, as ratios of medians over
// interleaved repetitions (so that a busy machine slows both sides alike). Fails (exit 1) when
//   - LibTorch: brain_loss forward + backward is not faster than the same loss in plain ATen
//     operations, float32, at 64x32 and 4096x32 (docs/performance.md: 3-5x faster);
//   - Eigen: brain_loss_into is more than `eigen_limit` times the memory floor at 4096x32,
//     double and float (docs/performance.md: 4-5x, compute-bound by two exponentials per sample).
// The thresholds are generous: they catch a fused path that stopped running or stopped
// vectorising, not noise. Built with BRAIN_NO_FUSED_GROUP_LOSS (performance_guard_unfused) it
// must fail, and ctest checks that it does.

#include <brain/loss.hpp>

#include "machine_info.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#if defined(BRAIN_WITH_TORCH)
#include <torch/csrc/autograd/autograd.h>
#endif

namespace {

constexpr double eigen_limit = 10.0;

double seconds(auto&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
  return v[v.size() / 2];
}

/// Median time of `ours` over median time of `theirs`, each run `reps` times, alternating.
double ratio(int reps, auto&& ours, auto&& theirs) {
  ours(), theirs();  // warm-up: first-touch page faults, lazy initialisation
  std::vector<double> a, b;
  for (int k = 0; k < reps; ++k) a.push_back(seconds(ours)), b.push_back(seconds(theirs));
  return median(a) / median(b);
}

bool check(const char* what, double value, double limit) {
  const bool ok = value <= limit;
  std::printf("%-58s %7.2f  (limit %.2f)  %s\n", what, value, limit, ok ? "ok" : "FAILED");
  return ok;
}

template <class S>
bool eigen_guard(Eigen::Index prompts, Eigen::Index n, const char* what) {
  using M = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> logp(-60.0, -10.0), reward(-3.0, 3.0);
  M lp(prompts, n), lq(prompts, n), l0(prompts, n), r(prompts, n);
  for (Eigen::Index k = 0; k < lp.size(); ++k)
    lp.data()[k] = S(logp(rng)), lq.data()[k] = S(logp(rng)), l0.data()[k] = S(logp(rng)), r.data()[k] = S(reward(rng));
  const brain::samples<M> s{lp, lq, l0, r};
  brain::loss_result<M> out;
  M a(prompts, n), b(prompts, n), c(prompts, n);
  const double x = ratio(
      31, [&] { brain::brain_loss_into(out, s); },
      [&] {
        a = lp;
        b = lq;
        c.noalias() = l0 + r;
      });
  return check(what, x, eigen_limit);
}

#if defined(BRAIN_WITH_TORCH)
bool torch_guard(int64_t prompts, int64_t n, const char* what) {
  at::manual_seed(42);
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor lp = (at::rand({prompts, n}, opts) * -50 - 10).requires_grad_(true);
  const at::Tensor lq = at::rand({prompts, n}, opts) * -50 - 10, l0 = at::rand({prompts, n}, opts) * -50 - 10;
  const at::Tensor r = at::randn({prompts, n}, opts);
  const double x = ratio(
      prompts > 1000 ? 15 : 201,
      [&] {
        const auto out = brain::brain_loss(brain::samples<at::Tensor>{lp, lq, l0, r});
        (void)torch::autograd::grad({out.loss}, {lp});
      },
      [&] {
        const auto target = at::softmax(r + l0 - lq, 1).detach();
        const auto log_baseline = at::log_softmax(lp - lq, 1);
        const auto loss = (at::xlogy(target, target) - target * log_baseline).sum(1).mean();
        (void)torch::autograd::grad({loss}, {lp});
      });
  return check(what, x, 1.0);
}
#endif

}  // namespace

int main() {
  brain_bench::print_machine();
  bool ok = true;
  ok &= eigen_guard<double>(4096, 32, "Eigen brain_loss_into / memory floor, double 4096x32");
  ok &= eigen_guard<float>(4096, 32, "Eigen brain_loss_into / memory floor, float 4096x32");
#if defined(BRAIN_WITH_TORCH)
  ok &= torch_guard(64, 32, "LibTorch brain_loss / plain ATen, fwd+bwd float 64x32");
  ok &= torch_guard(4096, 32, "LibTorch brain_loss / plain ATen, fwd+bwd float 4096x32");
#endif
  std::printf("%s\n", ok ? "performance guard: ok" : "performance guard: FAILED");
  return ok ? 0 : 1;
}
