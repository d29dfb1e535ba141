// brain/backends/torch/log_probs.hpp on CUDA tensors, dispatched to brain::cuda's kernels: forward and
// backward against the same call on CPU tensors (brain's CPU kernels), both alignments, padding,
// every reduction; and brain_loss on CUDA tensors (the fused group-loss kernel, one autograd node)
// against brain_loss on CPU tensors, with the same error message for a bad value. Plain main() (see cuda_kernels_test.cu); exit 77 = skipped, with the reason.

#include <brain/backends/torch/log_probs.hpp>
#include <brain/loss.hpp>

#include <torch/torch.h>

#include <cstdio>

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
  mask.select(1, 0).zero_();                    // next_token: the first token is never scored
  mask.select(0, 1).slice(0, 0, 6).zero_();     // left padding
  mask.select(0, 2).slice(0, 12, time).zero_(); // right padding
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
  const auto make = [&](double scale, double shift) { return torch::randn({prompts, n}, torch::dtype(dtype)) * scale + shift; };
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

}  // namespace

int main() {
  if (bt::detail::find_device_log_probs(c10::DeviceType::CUDA) == nullptr) {
    std::printf("SKIPPED: LibTorch was built without CUDA (no c10/cuda/impl/cuda_cmake_macros.h): CUDA tensors cannot exist here\n");
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
