// brain/backends/torch/log_probs.hpp on CUDA tensors, dispatched to brain::cuda's kernels: forward and
// backward against the same call on CPU tensors (brain's CPU kernels), both alignments, padding,
// every reduction; and brain_loss on CUDA tensors (the fused group-loss kernel, one autograd node)
// against brain_loss on CPU tensors, with the same error message for a bad value; the fused linear
// path on CUDA against the CPU's, and its peak memory against plain ATen's (at most 1/8). Plain
// main() (see cuda_kernels_test.cu); exit 77 = skipped, with the reason.

#include <brain/backends/torch/log_probs.hpp>
#include <brain/loss.hpp>

#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>

namespace bt = brain::libtorch;

namespace {

int failures = 0;

void expect_close(const at::Tensor& got, const at::Tensor& want, double tol, const char* what) {
  const at::Tensor g = got.detach().cpu().to(at::kDouble), w = want.detach().cpu().to(at::kDouble);
  const double err = ((g - w).abs() / w.abs().clamp_min(1.0)).max().item<double>();
  const bool ok = g.sizes() == w.sizes() && err <= tol;
  std::printf("%s %s: max relative difference %.3g (tolerance %.1g)\n", ok ? "ok    " : "FAILED", what, err, tol);
  if (!ok) ++failures;
}

void compare(at::ScalarType dtype, bt::alignment align, bt::reduction reduce, const char* what,
             const bt::sampling& sample = {}) {
  torch::manual_seed(3);
  const int64_t batch = 3, time = 17, vocabulary = 50257;
  const at::Tensor logits = torch::randn({batch, time, vocabulary}, torch::dtype(dtype)) * 3;
  // Under top-k / top-p, labels the sampler keeps: each position's best (shifted for next_token).
  at::Tensor labels = torch::randint(0, vocabulary, {batch, time});
  if (sample.truncates()) {
    labels = logits.argmax(2);
    if (align == bt::alignment::next_token) labels = at::cat({labels.slice(1, 0, 1), labels.slice(1, 0, time - 1)}, 1);
  }
  at::Tensor mask = torch::ones({batch, time}, torch::kLong);
  mask.select(1, 0).zero_();                     // next_token: the first token is never scored
  mask.select(0, 1).slice(0, 0, 6).zero_();      // left padding
  mask.select(0, 2).slice(0, 12, time).zero_();  // right padding
  const double tol = dtype == at::kFloat ? 1e-5 : 1e-12;
  const bt::log_prob_options opt{.reduce = reduce, .sample = sample};

  const at::Tensor cpu_logits = logits.clone().requires_grad_(true);
  const at::Tensor gpu_logits = logits.to(at::kCUDA).requires_grad_(true);
  const at::Tensor cpu = bt::sequence_log_probs(cpu_logits, labels, mask, align, opt);
  const at::Tensor gpu = bt::sequence_log_probs(gpu_logits, labels.to(at::kCUDA), mask.to(at::kCUDA), align, opt);
  expect_close(gpu, cpu, tol, (std::string(what) + " forward").c_str());
  const at::Tensor weights = torch::randn(cpu.sizes(), torch::dtype(cpu.scalar_type()));
  (cpu * weights).sum().backward();
  (gpu * weights.to(at::kCUDA)).sum().backward();
  expect_close(gpu_logits.grad(), cpu_logits.grad(), tol, (std::string(what) + " backward").c_str());
}

// brain_loss on CUDA tensors (brain::cuda's group kernel) against CPU tensors (the CPU loops):
// values, the autograd gradient of loss + sum c_i per_prompt_i, and the message for a NaN.
void compare_loss(at::ScalarType dtype, int64_t prompts, int64_t n, const char* what) {
  torch::manual_seed(5);
  const auto make = [&](double scale, double shift) {
    return torch::randn({prompts, n}, torch::dtype(dtype)) * scale + shift;
  };
  const at::Tensor lp = make(3, -20), lq = make(3, -20), l0 = make(3, -20), r = make(1, 0);
  const double tol = dtype == at::kFloat ? 1e-5 : 1e-12;
  const at::Tensor c = torch::randn({prompts}, torch::dtype(dtype));
  at::Tensor grads[2];
  brain::loss_result<at::Tensor> out[2];
  for (int device = 0; device < 2; ++device) {
    const auto on = [&](const at::Tensor& t) { return device == 0 ? t.clone() : t.to(at::kCUDA); };
    const at::Tensor policy = on(lp).requires_grad_(true);
    out[device] = brain::brain_loss(brain::samples<at::Tensor>{policy, on(lq), on(l0), on(r)}, brain::logistic{});
    (out[device].loss + (out[device].per_prompt * on(c)).sum()).backward();
    grads[device] = policy.grad();
  }
  const std::string name(what);
  expect_close(out[1].loss, out[0].loss, tol, (name + " loss").c_str());
  expect_close(out[1].per_prompt, out[0].per_prompt, tol, (name + " per_prompt").c_str());
  expect_close(out[1].target_weights, out[0].target_weights, tol, (name + " target weights").c_str());
  expect_close(out[1].baseline_weights, out[0].baseline_weights, tol, (name + " baseline weights").c_str());
  expect_close(grads[1], grads[0], tol, (name + " autograd gradient").c_str());
  std::string messages[2];
  for (int device = 0; device < 2; ++device) {
    at::Tensor bad = lq.clone();
    bad[prompts - 1][n / 2] = std::nan("");
    try {
      const auto on = [&](const at::Tensor& t) { return device == 0 ? t : t.to(at::kCUDA); };
      brain::brain_loss(brain::samples<at::Tensor>{on(lp), on(bad), on(l0), on(r)});
    } catch (const std::invalid_argument& e) {
      messages[device] = e.what();
    }
  }
  const bool same = !messages[0].empty() && messages[0] == messages[1];
  std::printf("%s %s: NaN named alike (\"%s\")\n", same ? "ok    " : "FAILED", what, messages[1].c_str());
  if (!same) ++failures;
}

// fused_linear_sequence_log_probs on CUDA tensors (token chunks: an ATen product per chunk, then
// brain::cuda's row kernels) against the same call on CPU tensors (vocabulary tiles, brain's CPU
// kernels): values, hidden and weight gradients, a frozen head, sampling settings.
void compare_fused(at::ScalarType dtype, const bt::sampling& sample, bool frozen, const char* what) {
  torch::manual_seed(7);
  const int64_t batch = 3, time = 19, vocabulary = 5000, width = 64;
  const at::Tensor hidden = torch::randn({batch, time, width}, torch::dtype(dtype));
  const at::Tensor weight = torch::randn({vocabulary, width}, torch::dtype(dtype)) * 0.2;
  at::Tensor labels = at::matmul(hidden, weight.t()).argmax(2);  // kept under any truncation (next_token: shifted)
  labels = at::cat({labels.slice(1, 0, 1), labels.slice(1, 0, time - 1)}, 1);
  at::Tensor mask = torch::ones({batch, time}, torch::kLong);
  mask.select(1, 0).zero_();
  mask.select(0, 1).slice(0, 0, 7).zero_();
  const double tol = dtype == at::kFloat ? 1e-4 : 1e-11;
  const bt::log_prob_options opt{.sample = sample};
  at::Tensor out[2], grad_hidden[2], grad_weight[2];
  const at::Tensor weights = torch::randn({batch}, torch::dtype(dtype));
  for (int device = 0; device < 2; ++device) {
    const auto on = [&](const at::Tensor& t) { return device == 0 ? t.clone() : t.to(at::kCUDA); };
    const at::Tensor h = on(hidden).requires_grad_(true), w = on(weight).requires_grad_(!frozen);
    out[device] = bt::fused_linear_sequence_log_probs(h, w, on(labels), on(mask), bt::alignment::next_token, 16, opt);
    (out[device] * on(weights)).sum().backward();
    grad_hidden[device] = h.grad();
    if (!frozen) grad_weight[device] = w.grad();
  }
  const std::string name(what);
  expect_close(out[1], out[0], tol, (name + " forward").c_str());
  expect_close(grad_hidden[1], grad_hidden[0], tol, (name + " hidden gradient").c_str());
  if (!frozen) expect_close(grad_weight[1], grad_weight[0], tol, (name + " weight gradient").c_str());
}

// Peak CUDA memory (max allocated above what exists before the call) and time of one forward +
// backward at 8192 tokens x 50257 x 768, float32: the fused path against plain ATen (matmul,
// log_softmax, gather). Prints name=... lines for scripts/gpu-check; the fused path must stay
// within 1/8 of plain's peak. Both peaks include the weight's gradient (147 MiB), which any
// implementation holds: at 2048 tokens plain's peak is only ~8x that, so the check uses 8192.
void fused_memory() {
  const int64_t batch = 32, time = 256, vocabulary = 50257, width = 768;
  torch::manual_seed(1);
  const auto cuda = torch::dtype(at::kFloat).device(at::kCUDA);
  const at::Tensor hidden = torch::randn({batch, time, width}, cuda).requires_grad_(true);
  const at::Tensor weight = (torch::randn({vocabulary, width}, cuda) * 0.03).requires_grad_(true);
  const at::Tensor labels = torch::randint(0, vocabulary, {batch, time}, torch::dtype(torch::kLong).device(at::kCUDA));
  const at::Tensor mask = torch::ones({batch, time}, torch::dtype(torch::kLong).device(at::kCUDA));
  const int device = static_cast<int>(hidden.device().index());
  const auto measure = [&](const char* name, const std::function<void()>& step) {
    step();  // warm-up: cuBLAS workspaces, the allocator's pools
    hidden.mutable_grad() = at::Tensor();
    weight.mutable_grad() = at::Tensor();
    torch::cuda::synchronize();
    namespace alloc = c10::cuda::CUDACachingAllocator;
    const auto before = alloc::getDeviceStats(device).allocated_bytes[0].current;
    alloc::resetPeakStats(device);
    const auto start = std::chrono::steady_clock::now();
    const int repeats = 5;
    for (int i = 0; i < repeats; ++i) {
      step();
      hidden.mutable_grad() = at::Tensor();
      weight.mutable_grad() = at::Tensor();
    }
    torch::cuda::synchronize();
    const double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / repeats;
    const double mib = static_cast<double>(alloc::getDeviceStats(device).allocated_bytes[0].peak - before) / (1 << 20);
    std::printf("name=%s shape=%lldx%lldx%lld time_us=%.0f peak_mib=%.1f\n", name, static_cast<long long>(batch * time),
                static_cast<long long>(vocabulary), static_cast<long long>(width), us, mib);
    return mib;
  };
  const double fused = measure("fused_linear", [&] {
    bt::fused_linear_sequence_log_probs(hidden, weight, labels, mask, bt::alignment::same_position).sum().backward();
  });
  const double plain = measure("plain_linear", [&] {
    (at::log_softmax(at::matmul(hidden, weight.t()), -1).gather(2, labels.unsqueeze(2)).squeeze(2) * mask)
        .sum()
        .backward();
  });
  const bool ok = fused * 8 <= plain;
  std::printf("%s fused peak %.1f MiB <= 1/8 of plain's %.1f MiB (%.3f)\n", ok ? "ok    " : "FAILED", fused, plain,
              fused / plain);
  if (!ok) ++failures;
}

// options::defer_validation on CUDA: a bad group's own call does not wait or throw; the next
// deferred call throws naming its row and check, before it runs; check_deferred_validation()
// reads a pending check on request, after which nothing is pending.
void deferred_validation() {
  const auto cuda = torch::dtype(at::kFloat).device(at::kCUDA);
  const at::Tensor good = torch::zeros({4, 8}, cuda);
  at::Tensor bad = good.clone();
  bad[2][5] = std::nan("");
  const brain::options deferred{.defer_validation = true};
  using samples = brain::samples<at::Tensor>;
  const auto message = [](const std::function<void()>& call) {
    try {
      call();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string own =
      message([&] { (void)brain::brain_loss(samples{good, good, good, bad}, brain::bradley_terry{}, deferred); });
  const std::string next =
      message([&] { (void)brain::brain_loss(samples{good, good, good, good}, brain::bradley_terry{}, deferred); });
  const bool ok1 = own.empty() && next.find("row 2") != std::string::npos && next.find("reward") != std::string::npos &&
                   next.find("deferred") != std::string::npos;
  std::printf("%s deferred validation: the next call names the earlier bad group (\"%s\")\n", ok1 ? "ok    " : "FAILED",
              next.c_str());
  (void)brain::brain_loss(samples{good, good, good, bad}, brain::bradley_terry{}, deferred);
  const std::string requested = message([] { brain::check_deferred_validation(); });
  const std::string after = message([] { brain::check_deferred_validation(); });
  const bool ok2 = requested.find("row 2") != std::string::npos && after.empty();
  std::printf("%s deferred validation: check_deferred_validation() reads it once (\"%s\")\n", ok2 ? "ok    " : "FAILED",
              requested.c_str());
  failures += !ok1 + !ok2;
}

}  // namespace

int main() {
  if (bt::detail::find_device_log_probs(c10::DeviceType::CUDA) == nullptr) {
    std::printf(
        "SKIPPED: LibTorch was built without CUDA (no c10/cuda/impl/cuda_cmake_macros.h): CUDA tensors cannot exist "
        "here\n");
    return 77;
  }
  if (!torch::cuda::is_available()) {
    std::printf("SKIPPED: no CUDA device visible to LibTorch\n");
    return 77;
  }
  try {
    compare(at::kFloat, bt::alignment::next_token, bt::reduction::sum, "float next_token sum");
    compare(at::kFloat, bt::alignment::same_position, bt::reduction::none, "float same_position none");
    compare(at::kDouble, bt::alignment::next_token, bt::reduction::mean, "double next_token mean");
    // The sampler's distribution: temperature alone, then with top-k and top-p (bisection on the GPU,
    // sort on the CPU: the same kept set).
    compare(at::kFloat, bt::alignment::next_token, bt::reduction::sum, "float temperature 0.7", {0.7, 0, 1.0});
    compare(at::kFloat, bt::alignment::same_position, bt::reduction::none, "float T 0.8 top-k 40 top-p 0.9",
            {0.8, 40, 0.9});
    compare(at::kDouble, bt::alignment::next_token, bt::reduction::sum, "double top-p 0.5", {1.0, 0, 0.5});
    compare_fused(at::kFloat, {}, false, "fused_linear float");
    compare_fused(at::kDouble, {}, true, "fused_linear double frozen head");
    compare_fused(at::kDouble, {0.7, 40, 0.9}, false, "fused_linear double T 0.7 top-k 40 top-p 0.9");
    compare_fused(at::kFloat, {1.3, 0, 1.0}, true, "fused_linear float T 1.3 frozen head");
    fused_memory();
    deferred_validation();
    compare_loss(at::kFloat, 37, 16, "brain_loss float 37x16 (a warp per group)");
    compare_loss(at::kDouble, 5, 3000, "brain_loss double 5x3000 (a block per group)");
    // Bad input is still caught before any kernel runs.
    bool threw = false;
    try {
      const at::Tensor l = torch::zeros({1, 2, 5}, torch::dtype(at::kFloat).device(at::kCUDA));
      bt::sequence_log_probs(l, torch::full({1, 2}, 7, torch::kLong).to(at::kCUDA),
                             torch::ones({1, 2}, torch::kLong).to(at::kCUDA), bt::alignment::same_position);
    } catch (const std::invalid_argument& e) {
      threw = std::string(e.what()).find("outside the vocabulary") != std::string::npos;
    }
    std::printf("%s out-of-range label throws\n", threw ? "ok    " : "FAILED");
    if (!threw) ++failures;
  } catch (const std::exception& e) {
    std::printf("FAILED: exception: %s\n", e.what());
    return 1;
  }
  std::printf(failures == 0 ? "PASSED\n" : "FAILED: %d checks\n", failures);
  return failures == 0 ? 0 : 1;
}
