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
/// difference, their spread over seeds, the hierarchical bootstrap interval of the mean difference
/// at `level` (seeds, then prompts within seeds: both noises) and how many seeds have ours ahead.
/// Shapes must match.
struct paired_difference {
  std::vector<double> per_seed;
  spread over_seeds;
  interval both;  ///< hierarchical bootstrap (seeds and prompts)
  std::size_t seeds_ahead = 0;
};
paired_difference paired_difference_of(const std::vector<std::vector<double>>& ours,
                                       const std::vector<std::vector<double>>& theirs, std::int64_t resamples,
                                       std::uint64_t seed, double level = 0.95);

/// The mean of values[s][i] (seed s, prompt i) with a percentile interval from a hierarchical
/// bootstrap: each resample draws seeds with replacement, then, within each drawn seed, its prompts
/// with replacement, and averages. So the interval holds the seed-to-seed spread (trained models
/// differ) as well as the prompt noise; with one seed it is the prompt bootstrap. `level` is the
/// interval's coverage (0.95: the 2.5% and 97.5% quantiles). Seeds may have different prompt
/// counts but none may be empty. Deterministic given `seed`.
interval hierarchical_bootstrap(const std::vector<std::vector<double>>& values, std::int64_t resamples,
                                std::uint64_t seed, double level = 0.95);

/// A comparison's verdict from the interval of its difference (ours − theirs) and an equivalence
/// margin: ahead when the interval lies above 0, behind when below 0, level when it lies inside
/// (−margin, margin), undecided otherwise.
enum class verdict { ahead, level, behind, undecided };
verdict verdict_of(const interval& difference, double margin);
const char* name_of(verdict v);

}  // namespace tldr
