#pragma once
// The small random GPT the model and sampler tests share.

#include "model.hpp"

#include <cstdint>

namespace tldr::testing {

inline gpt_config tiny_config() { return {.vocab = 50, .context = 32, .d_model = 32, .layers = 2, .heads = 4}; }

// Weights larger than GPT-2's initialisation: attention depends on position and content, and
// next-token distributions are far from uniform, so the tests can tell right from wrong.
inline Gpt tiny_model(std::uint64_t seed = 1) {
  torch::manual_seed(seed);
  Gpt model(tiny_config());
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.3);
  model->eval();
  return model;
}

}  // namespace tldr::testing
