#pragma once
// Every random draw of the pipeline has its own seed, derived from (run seed, purpose, index), so
// that nothing depends on how far an earlier process got: a resumed run draws exactly what an
// uninterrupted one would have drawn, and a stage run on its own draws what it draws inside `all`.

#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tldr {

/// What a seed is for; one value per kind of draw, never reused.
enum class purpose : std::uint64_t {
  sft_init = 1,
  sft_order,
  pairs_prompts,
  pairs_sampling,
  pairs_labels,
  rm_init,
  rm_order,
  align_prompts,
  align_sampling,
  align_minibatch,
  align_pairing,
  valid_sampling,
  test_sampling,
  test_kl_sampling,
  bootstrap,
  dpo_pairs,
  sample_draw,
};

/// splitmix64 of (seed, purpose, a, b): independent, reproducible streams.
std::uint64_t derive_seed(std::uint64_t seed, purpose p, std::uint64_t a = 0, std::uint64_t b = 0);

/// A seeded permutation of 0..n-1 (Fisher–Yates by hand: std::shuffle's use of the engine is
/// implementation-defined, this is the same on every standard library).
std::vector<std::size_t> permutation(std::size_t n, std::uint64_t seed);

/// A LibTorch CPU generator with this seed.
torch::Generator cpu_generator(std::uint64_t seed);

/// Seeds LibTorch's global generator, which its module constructors draw initial weights from:
/// every stage that creates a model calls this first, so its weights do not depend on what ran
/// before it in the same process.
void seed_global_generator(std::uint64_t seed);

}  // namespace tldr
