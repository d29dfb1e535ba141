// Sequence log-probs, forward + backward on LibTorch (CPU), side by side in one run:
//   logits given [B, T, V]:   plain ATen (log_softmax, gather, masked sum)  vs  sequence_log_probs
//   hidden states [B, T, d]:  plain (matmul + the above)  vs  matmul + sequence_log_probs
//                             vs  fused_linear_sequence_log_probs  vs  the GEMM floor
// The GEMM floor is the three products any implementation needs (logits = H Wᵀ, dH = G W,
// dW = Gᵀ H); the fused path also recomputes the logits in backward, a fourth product, so its own
// floor is gemm_floor x 4/3. With a frozen output layer the floor is two products, and so is the
// fused path (it forms dH in forward).
// Peak extra memory of each variant is measured in a fresh child process (VmHWM after resetting
// it, minus the resident size once the inputs exist).
//
//   log_probs_benchmark [google-benchmark flags]    (sizes: 2048x50257x768 and 512x32000x4096;
//                                                    --benchmark_filter=small for a quick run)
//   log_probs_benchmark --memory gpt2|llama|small   the peak-memory column alone
// LOG_PROBS_CHUNK_TOKENS and LOG_PROBS_VOCAB_TILE set the fused path's chunk_tokens and
// vocab_tile (default: automatic), to tune them.

#include <brain/backends/torch/log_probs.hpp>  // link brain::torch

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace {

namespace bt = brain::libtorch;

struct shape {
  const char* name;
  int64_t tokens, vocabulary, width;
};
const shape shapes[] = {{"small", 256, 1000, 64}, {"gpt2", 2048, 50257, 768}, {"llama", 512, 32000, 4096}};

enum variant {
  plain_logits,
  ours_logits,  // logits given
  plain_linear,
  ours_linear,
  fused_linear,
  gemm_floor,  // trainable output layer
  plain_frozen,
  fused_frozen,
  gemm_floor_frozen,  // frozen output layer (LoRA-style)
  variant_count
};
const char* const variant_names[] = {
    "plain_logits", "sequence_log_probs", "plain_linear",      "matmul+sequence_log_probs", "fused_linear",
    "gemm_floor",   "plain_frozen_head",  "fused_frozen_head", "gemm_floor_frozen_head"};
variant baseline_of(int v) { return v <= ours_logits ? plain_logits : v <= gemm_floor ? plain_linear : plain_frozen; }

struct inputs {
  at::Tensor hidden, weight, logits, labels, mask;
};

inputs make_inputs(const shape& s, variant v) {
  at::manual_seed(0);
  const int64_t time = 256, batch = s.tokens / time;
  inputs in;
  in.labels = at::randint(s.vocabulary, {batch, time}, at::kLong);
  in.mask = at::ones({batch, time}, at::kBool);
  if (v == plain_logits || v == ours_logits) {
    in.logits = (at::randn({batch, time, s.vocabulary}) * 2).requires_grad_(true);
  } else {
    in.hidden = at::randn({batch, time, s.width}).requires_grad_(true);
    in.weight = (at::randn({s.vocabulary, s.width}) / std::sqrt(double(s.width))).requires_grad_(v < plain_frozen);
  }
  return in;
}

// The fused path's chunk and tile, for tuning: 0 (automatic) unless the variable is set.
int64_t env_or_zero(const char* name) { return std::getenv(name) != nullptr ? std::atol(std::getenv(name)) : 0; }

at::Tensor plain_log_probs(const at::Tensor& logits, const inputs& in) {
  return (at::log_softmax(logits, -1).gather(2, in.labels.unsqueeze(2)).squeeze(2) * in.mask).sum(1);
}

// One forward + backward of variant v.
void run(variant v, inputs& in) {
  for (at::Tensor* t : {&in.hidden, &in.weight, &in.logits})
    if (t->defined() && t->grad().defined()) t->mutable_grad() = at::Tensor();
  const auto same = bt::alignment::same_position;
  switch (v) {
    case plain_logits:
      plain_log_probs(in.logits, in).sum().backward();
      break;
    case ours_logits:
      bt::sequence_log_probs(in.logits, in.labels, in.mask, same).sum().backward();
      break;
    case plain_linear:
    case plain_frozen:
      plain_log_probs(at::matmul(in.hidden, in.weight.t()), in).sum().backward();
      break;
    case ours_linear:
      bt::sequence_log_probs(at::matmul(in.hidden, in.weight.t()), in.labels, in.mask, same).sum().backward();
      break;
    case fused_linear:
    case fused_frozen:
      bt::fused_linear_sequence_log_probs(in.hidden, in.weight, in.labels, in.mask, same,
                                          env_or_zero("LOG_PROBS_CHUNK_TOKENS"),
                                          {.vocab_tile = env_or_zero("LOG_PROBS_VOCAB_TILE")})
          .sum()
          .backward();
      break;
    case gemm_floor:
    case gemm_floor_frozen: {  // logits = H Wᵀ, dH = G W, and (trainable head) dW = Gᵀ H
      at::NoGradGuard no_grad;
      const at::Tensor h = in.hidden.reshape({-1, in.hidden.size(2)});
      const at::Tensor g = at::mm(h, in.weight.t());  // the logits; stands in for their gradient
      benchmark::DoNotOptimize(at::mm(g, in.weight).data_ptr());
      if (v == gemm_floor) benchmark::DoNotOptimize(at::mm(g.t(), h).data_ptr());
      break;
    }
    case variant_count:
      break;
  }
}

void bench(benchmark::State& state, variant v, shape s) {
  inputs in = make_inputs(s, v);
  for (auto _ : state) run(v, in);
}

long status_kib(const char* key) {  // a field of /proc/self/status, in KiB
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + std::strlen(key));
  return -1;
}

// In a fresh process: peak resident memory of one forward + backward above the inputs, in MiB.
// glibc's thresholds are pinned first: otherwise buffers freed by the warm-up run stay in the heap
// (the mmap threshold rises on its own up to 32 MiB) and the measured run reuses them unseen.
int memory_child(variant v, const shape& s) {
  mallopt(M_MMAP_THRESHOLD, 64 * 1024);
  mallopt(M_TRIM_THRESHOLD, 64 * 1024);
  inputs in = make_inputs(s, v);
  run(v, in);  // once, so that lazily initialised state (BLAS buffers, thread pools) is in the baseline
  for (at::Tensor* t : {&in.hidden, &in.weight, &in.logits})
    if (t->defined()) t->mutable_grad() = at::Tensor();
  const long baseline = status_kib("VmRSS:");
  std::ofstream("/proc/self/clear_refs") << "5";  // resets VmHWM to the current resident size
  run(v, in);
  std::printf("%.1f\n", (status_kib("VmHWM:") - baseline) / 1024.0);
  return 0;
}

class table_reporter : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, double> seconds;
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& run : runs)
      if (run.run_type == Run::RT_Iteration) seconds[run.run_name.function_name] = run.GetAdjustedRealTime() / 1e3;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "--memory-child") == 0)
    return memory_child(static_cast<variant>(std::atoi(argv[2])), shapes[std::atoi(argv[3])]);
  if (argc == 3 && std::strcmp(argv[1], "--memory") == 0) {  // the memory column alone, for one shape
    for (int si = 0; si < 3; ++si)
      if (std::strcmp(shapes[si].name, argv[2]) == 0)
        for (int v = 0; v < variant_count; ++v)
          if (v != gemm_floor && v != gemm_floor_frozen) {
            std::printf("%-7s %-26s ", shapes[si].name, variant_names[v]);
            std::fflush(stdout);
            std::system(
                (std::string("'") + argv[0] + "' --memory-child " + std::to_string(v) + " " + std::to_string(si))
                    .c_str());
          }
    return 0;
  }
  for (const auto& s : shapes)
    for (int v = 0; v < variant_count; ++v)
      benchmark::RegisterBenchmark((std::string(s.name) + "/" + variant_names[v]).c_str(), bench, variant(v), s)
          ->Unit(benchmark::kMillisecond)
          ->Iterations(s.tokens * s.vocabulary > 10'000'000 ? 2 : 20)
          ->UseRealTime();
  benchmark::Initialize(&argc, argv);
  table_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::printf("\nforward + backward, float32, %d LibTorch thread(s); OPENBLAS_CORETYPE=%s\n", at::get_num_threads(),
              std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "(unset)");
  std::printf("%-7s %-26s %10s %14s %10s %12s\n", "shape", "variant", "seconds", "vs plain", "peak MiB", "vs plain");
  for (int si = 0; si < 3; ++si) {
    const shape& s = shapes[si];
    std::map<int, std::pair<double, double>> row;  // variant -> (seconds, MiB)
    for (int v = 0; v < variant_count; ++v) {
      const auto it = reporter.seconds.find(std::string(s.name) + "/" + variant_names[v]);
      if (it == reporter.seconds.end()) continue;
      double mib = NAN;
      if (v != gemm_floor && v != gemm_floor_frozen) {
        const std::string command =
            std::string("'") + argv[0] + "' --memory-child " + std::to_string(v) + " " + std::to_string(si);
        if (std::FILE* pipe = popen(command.c_str(), "r")) {
          if (std::fscanf(pipe, "%lf", &mib) != 1) mib = NAN;
          pclose(pipe);
        }
      }
      row[v] = {it->second, mib};
    }
    for (const auto& [v, figures] : row) {
      const int plain = baseline_of(v);
      const bool has_plain = row.count(plain) > 0;
      std::printf("%-7s %-26s %10.4f %13.2fx %10.1f %11.3fx\n", s.name, variant_names[v], figures.first,
                  has_plain ? figures.first / row[plain].first : NAN, figures.second,
                  has_plain ? figures.second / row[plain].second : NAN);
    }
    if (row.count(fused_linear) && row.count(gemm_floor))
      std::printf(
          "%-7s fused_linear / its 4-product floor (gemm_floor x 4/3; 3 products are the least): %.2fx (%.2fx the 3)\n",
          s.name, row[fused_linear].first / (row[gemm_floor].first * 4 / 3),
          row[fused_linear].first / row[gemm_floor].first);
    if (row.count(fused_frozen) && row.count(gemm_floor_frozen))
      std::printf("%-7s fused_frozen_head / its 2-product floor: %.2fx\n", s.name,
                  row[fused_frozen].first / row[gemm_floor_frozen].first);
  }
  return 0;
}
