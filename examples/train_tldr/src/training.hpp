#pragma once
// What every training stage (SFT, reward model, alignment) does the same way: AdamW steps with
// gradient clipping, a learning-rate schedule, and resumable state.

#include "distributed.hpp"

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <vector>

namespace tldr {

/// One AdamW step on `loss` at learning rate `lr`, gradients clipped to norm `clip`. Data
/// parallel (ranks.hpp): `loss` is this rank's share divided by the global count (undefined for an
/// empty share), and `gradients` (made once per model over `parameters`) sums them over the ranks
/// while backward runs, before clipping, so every rank takes the step one process would take on
/// the whole batch. In a world of one the sum is the identity.
void optimizer_step(torch::optim::Optimizer& optimizer, const torch::Tensor& loss,
                    const std::vector<torch::Tensor>& parameters, double lr, double clip,
                    dist::overlapped_gradients& gradients);

/// Linear warm-up over the first 5% of `total` steps, then cosine decay to 10% of `peak`.
double warmup_cosine(double peak, std::int64_t step, std::int64_t total);

/// The step a stage resumes at: its state file's (model and optimiser restored), or 0 without one.
std::int64_t resume_from(const std::filesystem::path& state, torch::nn::Module& model,
                         torch::optim::Optimizer& optimizer);
/// Saves model, optimiser and step atomically for resume_from.
void save_state(const std::filesystem::path& state, const torch::nn::Module& model,
                const torch::optim::Optimizer& optimizer, std::int64_t step);
/// Saves a module alone (a finished model), atomically.
void save_model(const std::filesystem::path& file, const torch::nn::Module& model);
/// Loads a module saved by save_model (or the "model" entry of a state file).
void load_model(const std::filesystem::path& file, torch::nn::Module& model);

}  // namespace tldr
