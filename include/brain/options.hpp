#pragma once
// Options shared by the public functions.

#include <brain/config.hpp>

namespace brain::inline v0 {

/// How the target weights are formed from the importance weights alpha (eq. 6).
enum class target_rule {
  softmax,  ///< alpha-bar = alpha / sum(alpha): self-normalised importance sampling (eqs. 6, 21)
  argmax,   ///< all weight on the largest alpha (first one on ties): DPO's hard labels (Theorem 6.1)
};

/// Options shared by the public functions.
struct options {
  target_rule target = target_rule::softmax;
  /// Check shapes and values and throw std::invalid_argument on bad input. Turn off only in hot
  /// loops whose inputs are known good: unchecked bad input gives NaN.
  bool validate = true;
  /// Backends that run asynchronously (LibTorch on CUDA tensors, brain_loss's fused kernel): do
  /// not wait for this call's checks. The kernel's status travels to the host behind it, and is
  /// read at the next brain_loss on that device and thread or by check_deferred_validation()
  /// (brain/backends/torch.hpp), which then throw naming the earlier call's bad row and check
  /// (not the column: its inputs may have changed). No device-to-host wait at all in a training
  /// step. Backends that validate synchronously (the CPU) ignore it. Needs validate.
  bool defer_validation = false;
};

}  // namespace brain::inline v0
