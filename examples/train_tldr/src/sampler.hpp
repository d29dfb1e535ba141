#pragma once
// Sampling responses from a GPT with a KV cache, recording for each response its log-probability
// under the distribution actually sampled from (the proposal, for importance weights) and under
// the raw model at temperature 1; and teacher-forced log p(response | prompt) for scoring.

#include "model.hpp"

#include <torch/torch.h>

#include <cstdint>
#include <span>
#include <vector>

namespace tldr {

struct sampling_options {
  std::int64_t samples_per_prompt = 1, max_new_tokens = 24;
  double temperature = 1.0;               ///< 0: greedy
  std::int64_t top_k = 0;                 ///< 0: no top-k filter
  double top_p = 1.0;                     ///< in (0, 1]; 1: no nucleus filter
  std::int64_t eos_id = -1, pad_id = -1;  ///< must be set (in [0, vocab))
  /// Rows decoded together (memory bound); a chunk holds whole prompts, at least one.
  std::int64_t max_batch_rows = 512;
};

struct samples {
  /// [B·n] in prompt-major order (prompt 0's n samples first); each response runs up to and
  /// including eos, or stops without eos after max_new_tokens.
  std::vector<std::vector<std::int64_t>> responses;
  /// [B·n] float: sum over the response tokens of log q(token) under the distribution sampled from
  /// (after temperature, top-k, top-p: brain::libtorch::sampled_log_softmax); 0 for greedy decoding.
  torch::Tensor log_proposal;
  /// [B·n] float: the same tokens' log-probability under the raw model (temperature 1, no filters).
  torch::Tensor log_model;
};

/// Samples options.samples_per_prompt responses per prompt. Each prompt must be non-empty, with at
/// most context - max_new_tokens tokens (the caller truncates). Runs without gradients, with the
/// model in eval mode (its mode is restored afterwards).
///
/// The uniform behind token t of sample j of prompt i is a hash of (seed, keys[i], j, t), drawn on
/// the CPU: a prompt's samples do not depend on the other prompts beside it, on max_batch_rows or
/// on the device, so data-parallel ranks that each sample a share of the prompts (keys: the
/// prompts' indices in the whole set) draw what one process would. No keys: 0, 1, 2, ...
samples sample(Gpt& model, const std::vector<std::vector<std::int64_t>>& prompts, const sampling_options& options,
               std::uint64_t seed, std::span<const std::uint64_t> keys = {});

/// log p(responses[i] | prompts[i]) [N] float by a teacher-forced forward, through brain's fused
/// log-prob kernel. Differentiable when grad mode is on (so usable as a training loss); rows are
/// processed max_batch_rows at a time (0: all at once). Prompts must be non-empty and each
/// prompt + response must fit in the context.
torch::Tensor sequence_log_prob(Gpt& model, const std::vector<std::vector<std::int64_t>>& prompts,
                                const std::vector<std::vector<std::int64_t>>& responses, std::int64_t pad_id,
                                std::int64_t max_batch_rows = 512);

}  // namespace tldr
