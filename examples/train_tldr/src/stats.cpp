#include "stats.hpp"

#include "fail.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace tldr {

std::vector<double> outcomes(const std::vector<double>& ours, const std::vector<double>& theirs) {
  if (ours.size() != theirs.size()) fail("outcomes: ", ours.size(), " scores against ", theirs.size());
  std::vector<double> out(ours.size());
  for (std::size_t i = 0; i < ours.size(); ++i) out[i] = ours[i] > theirs[i] ? 1.0 : ours[i] == theirs[i] ? 0.5 : 0.0;
  return out;
}

win_tie_loss tally(const std::vector<double>& ours, const std::vector<double>& theirs) {
  const auto o = outcomes(ours, theirs);
  if (o.empty()) fail("tally: no scores");
  win_tie_loss t;
  for (double v : o) (v == 1.0 ? t.win : v == 0.5 ? t.tie : t.loss) += 1.0;
  const double n = static_cast<double>(o.size());
  return {t.win / n, t.tie / n, t.loss / n};
}

double mean_of(const std::vector<double>& values) {
  if (values.empty()) fail("mean_of: no values");
  return std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
}

interval pooled_bootstrap(const std::vector<std::vector<double>>& values, std::int64_t resamples, std::uint64_t seed) {
  if (values.empty() || values.front().empty()) fail("pooled_bootstrap: no values");
  if (resamples < 1) fail("pooled_bootstrap: resamples = ", resamples, " must be >= 1");
  const std::size_t prompts = values.front().size();
  for (std::size_t s = 0; s < values.size(); ++s)
    if (values[s].size() != prompts)
      fail("pooled_bootstrap: seed ", s, " has ", values[s].size(), " values but seed 0 has ", prompts);
  // Per prompt, the mean over seeds: a resample of prompts then averages these.
  std::vector<double> per_prompt(prompts, 0.0);
  for (const auto& row : values)
    for (std::size_t i = 0; i < prompts; ++i) per_prompt[i] += row[i] / static_cast<double>(values.size());
  interval out;
  out.value = mean_of(per_prompt);
  std::mt19937_64 rng(seed);
  std::vector<double> means(static_cast<std::size_t>(resamples));
  for (auto& m : means) {
    double s = 0;
    for (std::size_t i = 0; i < prompts; ++i) s += per_prompt[rng() % prompts];
    m = s / static_cast<double>(prompts);
  }
  std::sort(means.begin(), means.end());
  const auto at = [&](double q) { return means[static_cast<std::size_t>(std::floor(q * double(means.size() - 1)))]; };
  out.low = at(0.025);
  out.high = at(0.975);
  return out;
}

interval bootstrap_win_rate(const std::vector<double>& ours, const std::vector<double>& theirs, std::int64_t resamples,
                            std::uint64_t seed) {
  if (ours.empty()) fail("bootstrap_win_rate: no scores");
  return pooled_bootstrap({outcomes(ours, theirs)}, resamples, seed);
}

spread spread_of(const std::vector<double>& values) {
  spread s;
  s.count = values.size();
  s.mean = mean_of(values);
  s.min = *std::min_element(values.begin(), values.end());
  s.max = *std::max_element(values.begin(), values.end());
  if (values.size() > 1) {
    double ss = 0;
    for (double v : values) ss += (v - s.mean) * (v - s.mean);
    s.sd = std::sqrt(ss / static_cast<double>(values.size() - 1));
  }
  return s;
}

paired_difference paired_difference_of(const std::vector<std::vector<double>>& ours,
                                       const std::vector<std::vector<double>>& theirs, std::int64_t resamples,
                                       std::uint64_t seed, double level) {
  if (ours.size() != theirs.size() || ours.empty())
    fail("paired_difference_of: ", ours.size(), " seeds of ours against ", theirs.size(), " of theirs");
  std::vector<std::vector<double>> differences;
  paired_difference out;
  for (std::size_t s = 0; s < ours.size(); ++s) {
    if (ours[s].size() != theirs[s].size())
      fail("paired_difference_of: seed ", s, " has ", ours[s].size(), " values of ours and ", theirs[s].size(),
           " of theirs");
    std::vector<double> d(ours[s].size());
    for (std::size_t i = 0; i < d.size(); ++i) d[i] = ours[s][i] - theirs[s][i];
    out.per_seed.push_back(mean_of(d));
    out.seeds_ahead += out.per_seed.back() > 0;
    differences.push_back(std::move(d));
  }
  out.over_seeds = spread_of(out.per_seed);
  out.both = hierarchical_bootstrap(differences, resamples, seed, level);
  return out;
}

interval hierarchical_bootstrap(const std::vector<std::vector<double>>& values, std::int64_t resamples,
                                std::uint64_t seed, double level) {
  if (values.empty()) fail("hierarchical_bootstrap: no seeds");
  for (std::size_t s = 0; s < values.size(); ++s)
    if (values[s].empty()) fail("hierarchical_bootstrap: seed ", s, " has no values");
  if (resamples < 1) fail("hierarchical_bootstrap: resamples = ", resamples, " must be >= 1");
  if (!(level > 0 && level < 1)) fail("hierarchical_bootstrap: level = ", level, " must be in (0, 1)");
  interval out;
  double total = 0;
  for (const auto& row : values) total += mean_of(row);
  out.value = total / static_cast<double>(values.size());  // each seed weighs the same
  std::mt19937_64 rng(seed);
  const std::size_t seeds = values.size();
  std::vector<double> means(static_cast<std::size_t>(resamples));
  for (auto& m : means) {
    double sum = 0;
    for (std::size_t k = 0; k < seeds; ++k) {
      const auto& row = values[rng() % seeds];
      double s = 0;
      for (std::size_t i = 0; i < row.size(); ++i) s += row[rng() % row.size()];
      sum += s / static_cast<double>(row.size());
    }
    m = sum / static_cast<double>(seeds);
  }
  std::sort(means.begin(), means.end());
  const auto at = [&](double q) { return means[static_cast<std::size_t>(std::floor(q * double(means.size() - 1)))]; };
  out.low = at((1 - level) / 2);
  out.high = at(1 - (1 - level) / 2);
  return out;
}

verdict verdict_of(const interval& d, double margin) {
  if (d.low > 0) return verdict::ahead;
  if (d.high < 0) return verdict::behind;
  if (d.low > -margin && d.high < margin) return verdict::level;
  return verdict::undecided;
}

const char* name_of(verdict v) {
  switch (v) {
    case verdict::ahead:
      return "ahead";
    case verdict::level:
      return "level";
    case verdict::behind:
      return "behind";
    case verdict::undecided:
      return "undecided";
  }
  return "?";
}

}  // namespace tldr
