#include "training.hpp"

#include "checkpoint.hpp"
#include "ranks.hpp"

#include <algorithm>
#include <cmath>

namespace tldr {

void optimizer_step(torch::optim::Optimizer& optimizer, const torch::Tensor& loss,
                    const std::vector<torch::Tensor>& parameters, double lr, double clip,
                    dist::overlapped_gradients& gradients) {
  for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  optimizer.zero_grad();
  // A rank whose share of the minibatch is empty has no loss; it still joins the gradient sum.
  if (loss.defined() && loss.requires_grad()) loss.backward();
  gradients.finish();  // the loss is divided by the global count: sums give the whole batch's gradient
  torch::nn::utils::clip_grad_norm_(parameters, clip);
  optimizer.step();
}

double warmup_cosine(double peak, std::int64_t step, std::int64_t total) {
  const double warm = std::max(1.0, 0.05 * double(total));
  if (double(step) < warm) return peak * double(step + 1) / warm;
  const double progress = (double(step) - warm) / std::max(1.0, double(total) - warm);
  return peak * (0.1 + 0.9 * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, progress))));
}

std::int64_t resume_from(const std::filesystem::path& state, torch::nn::Module& model,
                         torch::optim::Optimizer& optimizer) {
  if (!main_has(state)) return 0;  // rank 0's view: every data-parallel rank resumes alike
  checkpoint_reader r(state);
  r.load("model", model);
  r.load("optimizer", optimizer);
  return r.integer("step");
}

void save_state(const std::filesystem::path& state, const torch::nn::Module& model,
                const torch::optim::Optimizer& optimizer, std::int64_t step) {
  checkpoint_writer w;
  w.add("model", model);
  w.add("optimizer", optimizer);
  w.add("step", step);
  w.save(state);
}

void save_model(const std::filesystem::path& file, const torch::nn::Module& model) {
  checkpoint_writer w;
  w.add("model", model);
  w.save(file);
}

void load_model(const std::filesystem::path& file, torch::nn::Module& model) {
  checkpoint_reader(file).load("model", model);
}

}  // namespace tldr
