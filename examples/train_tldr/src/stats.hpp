#pragma once
// Statistics of the evaluation: per-prompt outcomes, win / tie / loss tallies, spreads over seeds
// and percentile-bootstrap intervals that resample prompts (with all seeds of a prompt together).

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tldr {

/// A point estimate with its 95% interval.
struct interval {
  double value = 0, low = 0, high = 0;
};

/// Per prompt: 1 when ours[i] > theirs[i], 0.5 on a tie, 0 otherwise. Sizes must match
/// (std::invalid_argument naming both counts otherwise).
std::vector<double> outcomes(const std::vector<double>& ours, const std::vector<double>& theirs);

/// Fractions of prompts won, tied and lost (Table 2's form); they sum to 1.
struct win_tie_loss {
  double win = 0, tie = 0, loss = 0;
};
win_tie_loss tally(const std::vector<double>& ours, const std::vector<double>& theirs);

/// Mean over seeds (rows) and prompts (columns) of values[s][i], with a 95% percentile-bootstrap
/// interval that resamples prompts with replacement and keeps every seed's value of a drawn
/// prompt: seeds share the prompts, so the prompt is the unit that varies. Every row must have
/// the same, non-zero length. Deterministic given `seed`.
interval pooled_bootstrap(const std::vector<std::vector<double>>& values, std::int64_t resamples, std::uint64_t seed);

/// Win-rate of ours against theirs (ties half) with its bootstrap interval, for one seed.
interval bootstrap_win_rate(const std::vector<double>& ours, const std::vector<double>& theirs, std::int64_t resamples,
                            std::uint64_t seed);

/// Mean, sample standard deviation (n - 1; 0 for one value), minimum and maximum.
struct spread {
  double mean = 0, sd = 0, min = 0, max = 0;
  std::size_t count = 0;
};
spread spread_of(const std::vector<double>& values);

double mean_of(const std::vector<double>& values);

/// ours − theirs prompt by prompt, seed s against seed s (the same prompts): each seed's mean
/// difference, their spread over seeds (the seed noise), the pooled bootstrap interval of the mean
/// difference (the prompt noise) and how many seeds have ours ahead. Shapes must match.
struct paired_difference {
  std::vector<double> per_seed;
  spread over_seeds;
  interval pooled;
  std::size_t seeds_ahead = 0;
};
paired_difference paired_difference_of(const std::vector<std::vector<double>>& ours,
                                       const std::vector<std::vector<double>>& theirs, std::int64_t resamples,
                                       std::uint64_t seed);

}  // namespace tldr
