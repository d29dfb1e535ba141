// brain_loss on Eigen at 64x32, 4096x32 and 65536x64 (double and float), side by side with
//   - a hand-written loop computing the same outputs (the way one would write it without brain),
//   - the memory floor: streaming the same bytes (read the 4 inputs, write the 3 [prompts, n]
//     outputs) with no arithmetic,
//   - the exp floor: the two exponentials every sample needs (its target and baseline weight),
//     brain's vectorised exp_branchless over two arrays of the batch's size, nothing else,
// all measured in the same run. The table at the end gives ns per sample and ratios.
// Every benchmark but brain_loss (fresh results) runs its operation once before timing: the
// first call's page faults (about 16 us each on the AMD VMs here) are not a training step's cost.

#include <brain/loss.hpp>

#include "machine_info.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

template <class S>
using matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;

template <class S>
brain::samples<matrix<S>> make_batch(Eigen::Index prompts, Eigen::Index n) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> logp(-60.0, -10.0), reward(-3.0, 3.0);
  matrix<S> lp(prompts, n), lq(prompts, n), l0(prompts, n), r(prompts, n);
  for (Eigen::Index k = 0; k < lp.size(); ++k) {
    lp.data()[k] = S(logp(rng));
    lq.data()[k] = S(logp(rng));
    l0.data()[k] = S(logp(rng));
    r.data()[k] = S(reward(rng));
  }
  return {std::move(lp), std::move(lq), std::move(l0), std::move(r)};
}

void set_counters(benchmark::State& state, Eigen::Index samples) {
  // An inverted rate of (samples * 1e-9) per iteration reads as nanoseconds per sample.
  state.counters["ns_per_sample"] = benchmark::Counter(
      double(samples) * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

template <class S>
void brain_loss(benchmark::State& state) {
  const auto s = make_batch<S>(state.range(0), state.range(1));
  for (auto _ : state) {
    auto out = brain::brain_loss(s);
    benchmark::DoNotOptimize(out.loss);
    benchmark::DoNotOptimize(out.grad_log_policy.data());
  }
  set_counters(state, state.range(0) * state.range(1));
}

// The same, reusing the previous step's result tensors (what a training loop does).
template <class S>
void brain_loss_into(benchmark::State& state) {
  const auto s = make_batch<S>(state.range(0), state.range(1));
  brain::loss_result<matrix<S>> out;
  brain::brain_loss_into(out, s);  // first touch of the results, outside the timing
  for (auto _ : state) {
    brain::brain_loss_into(out, s);
    benchmark::DoNotOptimize(out.loss);
    benchmark::DoNotOptimize(out.grad_log_policy.data());
  }
  set_counters(state, state.range(0) * state.range(1));
}

// What one writes by hand: a loop per prompt with std::exp and std::log, into preallocated outputs.
template <class S>
void hand_loop(benchmark::State& state) {
  const auto s = make_batch<S>(state.range(0), state.range(1));
  const Eigen::Index prompts = state.range(0), n = state.range(1);
  matrix<S> target(prompts, n), baseline(prompts, n), grad(prompts, n);
  Eigen::Matrix<S, Eigen::Dynamic, 1> per_prompt(prompts);
  for (auto _ : state) {
    S total = 0;
    for (Eigen::Index i = 0; i < prompts; ++i) {
      S max_a = -INFINITY, max_b = -INFINITY;
      for (Eigen::Index j = 0; j < n; ++j) {
        max_a = std::max(max_a, s.reward(i, j) + s.log_prior(i, j) - s.log_proposal(i, j));
        max_b = std::max(max_b, s.log_policy(i, j) - s.log_proposal(i, j));
      }
      S sum_a = 0, sum_b = 0;
      for (Eigen::Index j = 0; j < n; ++j) {
        sum_a += target(i, j) = std::exp(s.reward(i, j) + s.log_prior(i, j) - s.log_proposal(i, j) - max_a);
        sum_b += baseline(i, j) = std::exp(s.log_policy(i, j) - s.log_proposal(i, j) - max_b);
      }
      S kl = 0;
      for (Eigen::Index j = 0; j < n; ++j) {
        target(i, j) /= sum_a;
        baseline(i, j) /= sum_b;
        if (target(i, j) > 0) kl += target(i, j) * std::log(target(i, j) / baseline(i, j));
        grad(i, j) = (baseline(i, j) - target(i, j)) / S(prompts);
      }
      total += per_prompt(i) = kl;
    }
    benchmark::DoNotOptimize(total);
    benchmark::DoNotOptimize(grad.data());
  }
  set_counters(state, prompts * n);
}

// The floor: the same bytes moved with no arithmetic (4 reads, 3 writes per sample).
template <class S>
void memory_floor(benchmark::State& state) {
  const auto s = make_batch<S>(state.range(0), state.range(1));
  matrix<S> a(s.log_policy.rows(), s.log_policy.cols()), b = a, c = a;
  c.noalias() = s.log_prior + s.reward;  // touch the pages first, as the others do
  for (auto _ : state) {
    a = s.log_policy;
    b = s.log_proposal;
    c.noalias() = s.log_prior + s.reward;
    benchmark::DoNotOptimize(a.data());
    benchmark::DoNotOptimize(b.data());
    benchmark::DoNotOptimize(c.data());
  }
  set_counters(state, state.range(0) * state.range(1));
}

// The floor of brain_loss with fresh results: the same copy into three new matrices per call, so
// that their page faults (when the allocator gives memory back to the OS between calls) count.
template <class S>
void fresh_floor(benchmark::State& state) {
  const auto s = make_batch<S>(state.range(0), state.range(1));
  for (auto _ : state) {
    matrix<S> a = s.log_policy, b = s.log_proposal, c = s.log_prior + s.reward;
    benchmark::DoNotOptimize(a.data());
    benchmark::DoNotOptimize(b.data());
    benchmark::DoNotOptimize(c.data());
  }
  set_counters(state, state.range(0) * state.range(1));
}

// The arithmetic floor: two exponentials per sample (exp_branchless in packs, as the kernel).
template <class S>
void exp_floor(benchmark::State& state) {
  using P = brain::kernels::simd::pack<S>;
  constexpr Eigen::Index W = brain::kernels::simd::width<S>;
  const auto s = make_batch<S>(state.range(0), state.range(1));
  matrix<S> a(s.log_policy.rows(), s.log_policy.cols()), b = a;
  const Eigen::Index size = a.size(), whole = size - size % W;
  const S *x = s.log_policy.data(), *y = s.log_proposal.data();
  S *ea = a.data(), *eb = b.data();
  const auto run = [&] {
    for (Eigen::Index i = 0; i < whole; i += W) {
      brain::kernels::simd::store(ea + i, brain::kernels::simd::exp_branchless(brain::kernels::simd::load<P>(x + i)));
      brain::kernels::simd::store(eb + i, brain::kernels::simd::exp_branchless(brain::kernels::simd::load<P>(y + i)));
    }
    for (Eigen::Index i = whole; i < size; ++i)
      ea[i] = brain::kernels::simd::exp_branchless(x[i]), eb[i] = brain::kernels::simd::exp_branchless(y[i]);
  };
  run();
  for (auto _ : state) {
    run();
    benchmark::DoNotOptimize(a.data());
    benchmark::DoNotOptimize(b.data());
  }
  set_counters(state, state.range(0) * state.range(1));
}

void sizes(benchmark::internal::Benchmark* b) {
  b->Args({64, 32})->Args({4096, 32})->Args({65536, 64})->Unit(benchmark::kMicrosecond);
}

BENCHMARK(brain_loss<double>)->Apply(sizes);
BENCHMARK(brain_loss_into<double>)->Apply(sizes);
BENCHMARK(hand_loop<double>)->Apply(sizes);
BENCHMARK(memory_floor<double>)->Apply(sizes);
BENCHMARK(fresh_floor<double>)->Apply(sizes);
BENCHMARK(exp_floor<double>)->Apply(sizes);
BENCHMARK(brain_loss<float>)->Apply(sizes);
BENCHMARK(brain_loss_into<float>)->Apply(sizes);
BENCHMARK(hand_loop<float>)->Apply(sizes);
BENCHMARK(memory_floor<float>)->Apply(sizes);
BENCHMARK(fresh_floor<float>)->Apply(sizes);
BENCHMARK(exp_floor<float>)->Apply(sizes);

// Prints the usual console output, and keeps ns per sample for the summary table.
class table_reporter : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, double> ns_per_sample;  // "brain_loss<double>/64/32" -> ns
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& run : runs)
      if (run.run_type == Run::RT_Iteration && run.counters.count("ns_per_sample"))
        ns_per_sample[run.benchmark_name()] = run.counters.at("ns_per_sample");
  }
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  table_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::printf(
      "\nns per sample (one sample = one element of [prompts, n]); floor = read 4 inputs, write 3 outputs "
      "(fresh: into 3 new matrices per call); exp = two exponentials per sample\n");
  brain_bench::print_machine();
  std::printf("%-7s %-9s %10s %8s %8s %7s %7s %6s %10s %11s %13s %11s\n", "type", "size", "brain_loss", "_into", "hand",
              "floor", "fresh", "exp", "into/floor", "into/max(f,e)", "brain/fresh", "brain/into");
  for (const char* type : {"double", "float"})
    for (const char* size : {"64/32", "4096/32", "65536/64"}) {
      const auto get = [&](const char* name) {
        const auto it = reporter.ns_per_sample.find(std::string(name) + "<" + type + ">/" + size);
        return it == reporter.ns_per_sample.end() ? NAN : it->second;
      };
      const double ours = get("brain_loss"), into = get("brain_loss_into"), hand = get("hand_loop"),
                   floor = get("memory_floor"), fresh = get("fresh_floor"), exps = get("exp_floor");
      std::string shape = size;
      shape[shape.find('/')] = 'x';
      std::printf("%-7s %-9s %10.2f %8.2f %8.2f %7.2f %7.2f %6.2f %9.1fx %12.1fx %12.2fx %10.2fx\n", type,
                  shape.c_str(), ours, into, hand, floor, fresh, exps, into / floor, into / std::max(floor, exps),
                  ours / fresh, ours / into);
    }
  return 0;
}
