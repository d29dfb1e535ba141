// Times the CUDA kernels at the issue's sizes and prints one line per kernel:
//   name=<kernel> shape=<rows>x<cols> dtype=float time_us=<median> bytes=<moved> gbps=<achieved> peak_gbps=<card>
//   fraction=<achieved/peak>
// The byte counts are the minimum traffic (every input read once, every output written once), so
// `fraction` is of the card's memory bandwidth (from its memory clock and bus width).
// Medians of `--repeats` launches (default 100) timed with CUDA events after 10 warm-ups.
// Exit code 77 (skipped) without a GPU; `--quick` runs small sizes only (ctest's smoke run).

#include <brain/backends/cuda.hpp>
#include <brain/goodness.hpp>

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

void cuda_ok(cudaError_t e) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA: ") + cudaGetErrorString(e));
}

template <class T>
T* device_random(std::size_t n, unsigned seed, double mean, double sd) {
  std::vector<T> host(n);
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(mean, sd);
  for (T& x : host) x = static_cast<T>(normal(rng));
  T* p = nullptr;
  cuda_ok(cudaMalloc(&p, n * sizeof(T)));
  cuda_ok(cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

double median_us(const std::function<void()>& launch, int repeats) {
  for (int i = 0; i < 10; ++i) launch();
  cuda_ok(cudaDeviceSynchronize());
  cudaEvent_t start, stop;
  cuda_ok(cudaEventCreate(&start));
  cuda_ok(cudaEventCreate(&stop));
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    cuda_ok(cudaEventRecord(start));
    launch();
    cuda_ok(cudaEventRecord(stop));
    cuda_ok(cudaEventSynchronize(stop));
    float ms = 0;
    cuda_ok(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms * 1000.0);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

double peak_gbps() {
  int device = 0, clock_khz = 0, bus_bits = 0;
  cuda_ok(cudaGetDevice(&device));
  cuda_ok(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device));
  cuda_ok(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device));
  return 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;  // double data rate
}

void report(const char* name, long rows, long cols, double us, double bytes, double peak) {
  const double gbps = bytes / (us * 1e-6) / 1e9;
  std::printf("name=%s shape=%ldx%ld dtype=float time_us=%.2f bytes=%.0f gbps=%.1f peak_gbps=%.1f fraction=%.3f\n",
              name, rows, cols, us, bytes, gbps, peak, gbps / peak);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int repeats = 100;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0)
      quick = true;
    else if (std::strcmp(argv[i], "--repeats") == 0 && i + 1 < argc)
      repeats = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--repeats N]\n", argv[0]);
      return 2;
    }
  }
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device (cudaGetDeviceCount: %s)\n",
                e == cudaSuccess ? "0 devices" : cudaGetErrorString(e));
    return 77;
  }
  try {
    cudaDeviceProp prop{};
    cuda_ok(cudaGetDeviceProperties(&prop, 0));
    const double peak = peak_gbps();
    std::printf("device=\"%s\" peak_gbps=%.1f\n", prop.name, peak);

    {  // group loss, [prompts, n] float, Bradley-Terry, no validation (no host sync)
      const long prompts = quick ? 64 : 4096, n = 32;
      const std::size_t size = static_cast<std::size_t>(prompts * n);
      float *lp = device_random<float>(size, 1, -10, 3), *lq = device_random<float>(size, 2, -10, 3);
      float *l0 = device_random<float>(size, 3, -10, 3), *r = device_random<float>(size, 4, 0, 1);
      float *a, *b, *g, *pp, *loss;
      for (float** p : {&a, &b, &g}) cuda_ok(cudaMalloc(p, size * sizeof(float)));
      cuda_ok(cudaMalloc(&pp, prompts * sizeof(float)));
      cuda_ok(cudaMalloc(&loss, sizeof(float)));
      const brain::kernels::group_loss_inputs<float> in{lp, lq, l0, r, prompts, n};
      const brain::kernels::group_loss_outputs<float> out{a, b, g, pp, loss};
      const double us =
          median_us([&] { brain::cuda::launch_group_loss(in, out, brain::bradley_terry{}, nullptr, false); }, repeats);
      report("group_loss", prompts, n, us, (4.0 + 3.0) * size * sizeof(float) + prompts * sizeof(float), peak);
      for (float* p : {lp, lq, l0, r, a, b, g, pp, loss}) cudaFree(p);
    }
    {  // token log-probs, [rows, vocabulary] float logits
      const long rows = quick ? 64 : 2048, vocabulary = 50257;
      const std::size_t size = static_cast<std::size_t>(rows * vocabulary);
      float* logits = device_random<float>(size, 5, 0, 2);
      std::vector<std::int64_t> labels(rows);
      for (long i = 0; i < rows; ++i) labels[i] = (i * 7919) % vocabulary;
      std::int64_t* d_labels;
      cuda_ok(cudaMalloc(&d_labels, rows * sizeof(std::int64_t)));
      cuda_ok(cudaMemcpy(d_labels, labels.data(), rows * sizeof(std::int64_t), cudaMemcpyHostToDevice));
      float *lse, *lp, *up = device_random<float>(rows, 6, 0, 1), *grad;
      cuda_ok(cudaMalloc(&lse, rows * sizeof(float)));
      cuda_ok(cudaMalloc(&lp, rows * sizeof(float)));
      cuda_ok(cudaMalloc(&grad, size * sizeof(float)));
      const double fwd = median_us(
          [&] { brain::cuda::token_log_probs(logits, rows, vocabulary, d_labels, lse, lp, nullptr); }, repeats);
      report("log_probs_forward", rows, vocabulary, fwd, double(size) * sizeof(float), peak);
      const double bwd = median_us(
          [&] { brain::cuda::token_log_probs_backward(logits, rows, vocabulary, d_labels, lse, up, grad, nullptr); },
          repeats);
      report("log_probs_backward", rows, vocabulary, bwd, 2.0 * size * sizeof(float), peak);
      for (void* p : {(void*)logits, (void*)d_labels, (void*)lse, (void*)lp, (void*)up, (void*)grad}) cudaFree(p);
    }
  } catch (const std::exception& ex) {
    std::printf("FAILED: %s\n", ex.what());
    return 1;
  }
  return 0;
}
