// LibTorch (CPU): brain_loss forward + backward, next to the same loss written by hand in plain
// LibTorch ops (the way a trainer writes it today), at 64x32 and 4096x32, in one run.
//
//   torch_benchmark [google-benchmark flags]
//   torch_benchmark --blas-survey   also measures torch::mm 1024^3 under each BLAS choice of this
//                                   machine (in child processes: the environment of this process
//                                   and of the tests is never changed), against a double reference.

#include <brain/loss.hpp>  // link brain::torch

#include "machine_info.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <torch/csrc/autograd/autograd.h>

#include <dlfcn.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

struct batch {
  at::Tensor log_policy, log_proposal, log_prior, reward;
};

batch make_batch(int64_t prompts, int64_t n) {
  at::manual_seed(42);
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  return {(at::rand({prompts, n}, opts) * -50 - 10).requires_grad_(true), at::rand({prompts, n}, opts) * -50 - 10,
          at::rand({prompts, n}, opts) * -50 - 10, at::randn({prompts, n}, opts)};
}

void brain_loss_fwd_bwd(benchmark::State& state, bool validate) {
  const batch b = make_batch(state.range(0), state.range(1));
  (void)torch::autograd::grad(
      {brain::brain_loss(brain::samples<at::Tensor>{b.log_policy, b.log_proposal, b.log_prior, b.reward}).loss},
      {b.log_policy});  // warm-up, as plain_torch_fwd_bwd's
  for (auto _ : state) {
    const auto out = brain::brain_loss(brain::samples<at::Tensor>{b.log_policy, b.log_proposal, b.log_prior, b.reward},
                                       brain::bradley_terry{}, {.validate = validate});
    auto grad = torch::autograd::grad({out.loss}, {b.log_policy});
    benchmark::DoNotOptimize(grad[0].data_ptr());
  }
}

// The loss as one writes it by hand: detached softmax targets, log-softmax baseline, KL.
at::Tensor plain_loss(const batch& b) {
  const auto target = at::softmax(b.reward + b.log_prior - b.log_proposal, 1).detach();
  const auto log_baseline = at::log_softmax(b.log_policy - b.log_proposal, 1);
  return (at::xlogy(target, target) - target * log_baseline).sum(1).mean();
}
void plain_torch_fwd_bwd(benchmark::State& state) {
  const batch b = make_batch(state.range(0), state.range(1));
  (void)torch::autograd::grad({plain_loss(b)}, {b.log_policy});  // warm-up
  for (auto _ : state) {
    auto grad = torch::autograd::grad({plain_loss(b)}, {b.log_policy});
    benchmark::DoNotOptimize(grad[0].data_ptr());
  }
}

void sizes(benchmark::internal::Benchmark* b) { b->Args({64, 32})->Args({4096, 32})->Unit(benchmark::kMicrosecond); }
BENCHMARK_CAPTURE(brain_loss_fwd_bwd, validated, true)->Apply(sizes);
BENCHMARK_CAPTURE(brain_loss_fwd_bwd, unvalidated, false)->Apply(sizes);
BENCHMARK(plain_torch_fwd_bwd)->Apply(sizes);

class table_reporter : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, double> micros;
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& run : runs)
      if (run.run_type == Run::RT_Iteration) micros[run.benchmark_name()] = run.GetAdjustedRealTime();
  }
};

// One BLAS measurement, run in a child: GFLOP/s of a float 1024^3 torch::mm and its max abs error
// against the same product in double.
int blas_child() {
  at::manual_seed(0);
  const auto a = at::randn({1024, 1024}), b = at::randn({1024, 1024});
  const auto reference = at::mm(a.to(at::kDouble), b.to(at::kDouble));
  auto c = at::mm(a, b);  // warm-up
  const int reps = 5;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) c = at::mm(a, b);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / reps;
  const double error = (c.to(at::kDouble) - reference).abs().max().item<double>();
  // Which library serves sgemm, and the kernel OpenBLAS chose (when it is loaded at all).
  Dl_info info{};
  const bool found = dladdr(dlsym(RTLD_DEFAULT, "sgemm_"), &info) != 0 && info.dli_fname != nullptr;
  const std::string library = found ? info.dli_fname : "?";
  using corename_fn = char* (*)();
  const auto corename = reinterpret_cast<corename_fn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  std::printf("%.1f %.2e %s %s\n", 2.0 * 1024 * 1024 * 1024 / seconds / 1e9, error,
              library.substr(library.find_last_of('/', library.find_last_of('/') - 1) + 1).c_str(),
              corename ? corename() : "-");
  return 0;
}

void blas_survey(const char* self) {
  struct choice {
    const char* name;
    const char* environment;
  };
  const char* current = std::getenv("OPENBLAS_CORETYPE");
  std::printf("\nBLAS behind LibTorch: torch::mm float 1024^3, %d torch thread(s); OPENBLAS_CORETYPE here: %s\n",
              at::get_num_threads(), current ? current : "(unset)");
  std::printf("%-44s %10s %16s  %-32s %s\n", "choice (environment of the child process)", "GFLOP/s", "max |err| vs f64",
              "sgemm from", "OpenBLAS core");
  const choice choices[] = {
      {"as installed (libblas.so.3 alternative)", ""},
      {"reference BLAS", "LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/blas"},
      {"OpenBLAS, 1 thread", "OPENBLAS_NUM_THREADS=1"},
      {"OpenBLAS, OPENBLAS_CORETYPE=Haswell", "OPENBLAS_CORETYPE=Haswell"},
      {"OpenBLAS, OPENBLAS_CORETYPE=SkylakeX", "OPENBLAS_CORETYPE=SkylakeX"},
      {"OpenBLAS, SkylakeX, 1 thread", "OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=1"},
  };
  for (const auto& c : choices) {
    const std::string command = std::string("env ") + c.environment + " '" + self + "' --blas-child 2>/dev/null";
    std::FILE* pipe = popen(command.c_str(), "r");
    double gflops = 0, error = 0;
    char library[128] = "?", core[64] = "-";
    const bool ok = pipe && std::fscanf(pipe, "%lf %lf %127s %63s", &gflops, &error, library, core) == 4;
    if (pipe) pclose(pipe);
    if (ok)
      std::printf("%-44s %10.1f %16.2e  %-32s %s\n", c.name, gflops, error, library, core);
    else
      std::printf("%-44s %10s\n", c.name, "failed");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--blas-child") == 0) return blas_child();
  bool survey = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--blas-survey") == 0)
      survey = true;
    else
      args.push_back(argv[i]);
  }
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  table_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::printf("\nforward + backward, float32, microseconds per call (%d torch thread(s))\n", at::get_num_threads());
  brain_bench::print_machine();
  std::printf("%-9s %16s %18s %12s %16s %18s\n", "size", "brain_loss", "(no validation)", "plain ops", "brain/plain",
              "unvalidated/plain");
  for (const char* size : {"64/32", "4096/32"}) {
    const auto get = [&](const std::string& name) {
      const auto it = reporter.micros.find(name + "/" + size);
      return it == reporter.micros.end() ? NAN : it->second;
    };
    const double ours = get("brain_loss_fwd_bwd/validated"), bare = get("brain_loss_fwd_bwd/unvalidated");
    const double plain = get("plain_torch_fwd_bwd");
    std::string shape = size;
    shape[shape.find('/')] = 'x';
    std::printf("%-9s %16.1f %18.1f %12.1f %15.2fx %17.2fx\n", shape.c_str(), ours, bare, plain, ours / plain,
                bare / plain);
  }
  if (survey) blas_survey(argv[0]);
  return 0;
}
