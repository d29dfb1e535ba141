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
};

}  // namespace brain::inline v0
