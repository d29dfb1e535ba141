#pragma once
// Options shared by the public functions.

#include <brain/config.hpp>
#include <brain/errors.hpp>

#include <cmath>

namespace brain::inline v0 {

/// How the target weights are formed from the importance weights alpha (eq. 6).
enum class target_rule {
  softmax,  ///< alpha-bar = alpha / sum(alpha): self-normalised importance sampling (eqs. 6, 21)
  argmax,   ///< all weight on the largest alpha (first one on ties): DPO's hard labels (Theorem 6.1)
};

/// How the estimators correct for samples drawn by another engine than the trainer's model
/// (samples::log_sampler), with the sequence ratio c = q / mu (rollouts.hpp; TRL's
/// vllm_importance_sampling_mode at the sequence level).
enum class sampler_correction {
  none,      ///< c = 1: the samples are read as drawn from q (the log_sampler only feeds rollout_report)
  truncate,  ///< c = min(max(q / mu, lower), upper): truncated importance sampling (TIS; TRL sequence_truncate)
  mask,      ///< c = q / mu inside [lower, upper], else 0: masked importance sampling (MIS; TRL sequence_mask)
};

/// The sampler correction and its bounds; TRL's defaults (sequence_mask, clip_max 3, no clip_min).
struct sampler_options {
  sampler_correction correction = sampler_correction::mask;
  double lower = 0.0;  ///< [vllm_importance_sampling_clip_min; None = 0]
  double upper = 3.0;  ///< [vllm_importance_sampling_clip_max]

  void validate() const {
    if (!(lower >= 0.0 && lower <= 1.0))
      detail::fail("sampler_options", "lower = ", detail::describe_value(lower), " must be in [0, 1]");
    if (!(upper >= 1.0) || std::isnan(upper))
      detail::fail("sampler_options", "upper = ", detail::describe_value(upper), " must be >= 1 (inf: no upper bound)");
  }
};

/// What the estimators do with a group whose kept rewards are all equal (no reward signal, yet
/// the KL and baseline terms still give it a gradient: trl#5598).
enum class uninformative_groups {
  keep,  ///< use it as any other group
  drop,  ///< skip it: zero coefficients and value, left out of the mean over prompts
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
  /// The correction applied when samples carry log_sampler (rollouts.hpp).
  sampler_options sampler = {};
  /// Groups whose kept rewards are all equal: keep or drop (rollouts.hpp).
  uninformative_groups uninformative = uninformative_groups::keep;
};

}  // namespace brain::inline v0
