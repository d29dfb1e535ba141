#pragma once
// Where the pipeline's models and tensors live: the CPU, or a CUDA device when LibTorch has one.
// One device per process (--device), chosen before any model is made: every stage places its
// models with place() and the models move their inputs to their own device, so batch-building code
// stays on the CPU and no stage names a device.

#include <torch/torch.h>

#include <string>

namespace tldr {

/// The process's device (the CPU until select_device chooses another).
[[nodiscard]] torch::Device compute_device();
/// "cpu", "cuda" or "cuda:N"; std::invalid_argument when it does not parse, when this LibTorch has
/// no CUDA (Debian's libtorch-dev is built without it) or when there is no device N.
void select_device(const std::string& name);
/// Moves a module to compute_device() and returns it (a no-op on the CPU).
template <class ModuleHolder>
ModuleHolder& place(ModuleHolder& model) {
  model->to(compute_device());
  return model;
}

}  // namespace tldr
