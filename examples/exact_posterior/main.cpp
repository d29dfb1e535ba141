// exact_posterior: train every estimator and reduction against an exactly known posterior and
// report how close each gets, over several seeds (lab.hpp has the science; this file is the
// command line and output).
//
//   exact_posterior --results DIR [options]      (exact_posterior --help)
//
// Writes DIR/training.csv, final.csv, summary.md; by_step.csv with --report-steps;
// variance.csv and variance_runs.csv unless --variance-seeds 0; and, when gnuplot is installed,
// kl_vs_step.png, final_kl_vs_n.png, reward_vs_kl.png and variance.png (with their .dat/.gp).

#include "lab.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

std::string format(double v, int digits = 4) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(digits);
  os << v;
  return os.str();
}

/// Three significant digits for numbers of any size (variances span 1e-4 .. 1e2).
std::string sig(double v) {
  if (!std::isfinite(v)) return "–";
  const double a = std::abs(v);
  if (a == 0) return "0";
  if (a >= 100) return format(v, 0);
  if (a >= 10) return format(v, 1);
  if (a >= 1) return format(v, 2);
  const int digits = 2 - int(std::floor(std::log10(a)));
  return format(v, std::min(digits, 8));
}

/// As short as the value needs (learning rates: 0.05, 0.0125, 0.003125).
std::string plain(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

std::string mean_sd_range(const lab::spread& s) {
  return sig(s.mean) + " ± " + sig(s.sd) + " (" + sig(s.min) + "–" + sig(s.max) + ")";
}

std::string median_range(const lab::spread& s) { return sig(s.median) + " [" + sig(s.min) + "–" + sig(s.max) + "]"; }

/// Writes a gnuplot script and runs it; returns false when gnuplot is missing or fails.
bool plot(const std::filesystem::path& dir, const std::string& name, const std::string& script,
          const std::string& size = "1000,650") {
  const auto path = dir / (name + ".gp");
  std::ofstream(path)
      << "set terminal pngcairo size " << size << " font ',11'\nset output '" << (dir / (name + ".png")).string()
      << "'\nset datafile separator ','\nset key outside right\nset grid\n"
      // eleven distinguishable colours: gnuplot's default cycle repeats after eight
      << "set linetype 1 lc rgb '#7b2cbf'\nset linetype 2 lc rgb '#2a9d8f'\nset linetype 3 lc rgb '#219ebc'\n"
         "set linetype 4 lc rgb '#e9a800'\nset linetype 5 lc rgb '#f4743b'\nset linetype 6 lc rgb '#264653'\n"
         "set linetype 7 lc rgb '#e63946'\nset linetype 8 lc rgb '#000000'\nset linetype 9 lc rgb '#8d99ae'\n"
         "set linetype 10 lc rgb '#6a994e'\nset linetype 11 lc rgb '#bc6c25'\nset linetype cycle 11\n"
      << script;
  return std::system(("gnuplot '" + path.string() + "' 2>/dev/null").c_str()) == 0;
}

/// Runs task(0..count-1) on `threads` threads, the given order first to last; prints progress.
void parallel(std::size_t count, int threads, const std::vector<std::size_t>& order,
              const std::function<void(std::size_t)>& task, const char* what) {
  const auto start = std::chrono::steady_clock::now();
  std::atomic<std::size_t> next{0}, done{0};
  std::mutex print;
  double printed = -1;
  const auto worker = [&] {
    for (std::size_t k; (k = next++) < count;) {
      task(order[k]);
      const std::size_t finished = ++done;
      const std::lock_guard lock(print);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (finished < count && seconds - printed < 1) continue;
      printed = seconds;
      std::fprintf(stderr, "\r%s [%zu/%zu] %.0f s, ETA %.0f s   ", what, finished, count, seconds,
                   seconds / double(finished) * double(count - finished));
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, threads); ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  std::fprintf(stderr, "\n");
}

struct schedule {
  double lr;
  int steps;
};

/// An arm under one schedule: a row of the tables.
struct row {
  lab::arm arm;
  schedule sched;
  std::string label;
};

struct job {
  std::size_t row;
  int n;
  unsigned seed;
  lab::run result;
};

using M = lab::measurement;

/// Seconds since the command line was read (the summary's wall time and the progress lines).
struct stopwatch {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); }
};

// --- the command line ----------------------------------------------------------------------------

/// What the command line sets; the defaults are --help's.
struct settings {
  std::string results;
  lab::space_config space_config;
  lab::train_config train_config;
  std::vector<double> learning_rates{0.05};
  std::vector<int> step_counts{800}, report_steps;
  std::vector<int> sample_counts{2, 4, 8, 16, 32, 64};
  std::vector<std::string> arm_ids;
  int seeds = 5, threads = int(std::max(1u, std::thread::hardware_concurrency())), reference_n = 0;
  double average_tail = 0.5;
  int variance_n = 32, variance_repeats = 400, variance_seeds = 10;
  std::vector<double> lambdas{0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2};
  std::vector<int> variance_steps{0, 9, 50, 59, 100, 109, 200, 209, 400, 409, 790, 799};
  bool plots = true;
};

/// Declares every option on `app`, each bound to its field of `s`.
void add_options(CLI::App& app, settings& s) {
  app.add_option("--results", s.results, "folder for the CSV files, summary and plots")->required();
  app.add_option("--prompts", s.space_config.prompts, "number of prompts x")->capture_default_str();
  app.add_option("--vocab", s.space_config.vocab, "tokens V; outputs are all V^L sequences")->capture_default_str();
  app.add_option("--length", s.space_config.length, "sequence length L")->capture_default_str();
  app.add_option("--beta", s.space_config.beta, "KL coefficient of the Bradley-Terry goodness")->capture_default_str();
  app.add_option("--space-seed", s.space_config.seed, "seed of the prior and rewards")->capture_default_str();
  app.add_option("--lr", s.learning_rates,
                 "Adam learning rate(s), paired with --steps (comma-separated; one value applies to all)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--steps", s.step_counts, "optimiser steps per run, paired with --lr")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--refresh", s.train_config.refresh, "steps between proposal refreshes")->capture_default_str();
  app.add_option("--evaluate-every", s.train_config.evaluate_every, "steps between exact measurements")
      ->capture_default_str();
  app.add_option("--report-steps", s.report_steps,
                 "steps at which to tabulate the measurements (multiples of --evaluate-every)")
      ->delimiter(',');
  app.add_option("--average-tail", s.average_tail,
                 "also measure the policy with logits averaged over this last fraction of each run (0: off)")
      ->capture_default_str();
  app.add_option("--samples", s.sample_counts, "samples per prompt n (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--reference-n", s.reference_n,
                 "n of the per-step plot and the all-measurements table (default: 32 if run, else the largest)");
  app.add_option("--arms", s.arm_ids, "arms to run (comma-separated ids; default: all)")->delimiter(',');
  app.add_option("--seeds", s.seeds, "training runs per (arm, schedule, n), with sampling seeds 1000, 1001, ...")
      ->capture_default_str();
  app.add_option("--threads", s.threads, "runs in parallel")->capture_default_str();
  app.add_option("--variance-n", s.variance_n, "n for the gradient-variance experiments")->capture_default_str();
  app.add_option("--variance-repeats", s.variance_repeats, "batches per variance estimate")->capture_default_str();
  app.add_option("--variance-seeds", s.variance_seeds, "seeds 7, 8, ... of the variance experiments (0: skip them)")
      ->capture_default_str();
  app.add_option("--variance-lambdas", s.lambdas, "policy = prior: proposals posterior^(1-λ) prior^λ")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--variance-steps", s.variance_steps,
                 "policy along a BRAIn run (lr and refresh as above): steps at which to measure")
      ->delimiter(',')
      ->capture_default_str();
  app.add_flag("!--no-plots", s.plots, "skip the PNG plots");
}

/// Checks what CLI11 cannot (options that must agree with each other) and fills in --reference-n's
/// default; prints why and returns false when the command line is bad.
bool check_settings(settings& s) {
  if (s.learning_rates.size() != s.step_counts.size() && s.learning_rates.size() != 1 && s.step_counts.size() != 1) {
    std::fprintf(stderr,
                 "exact_posterior: --lr and --steps need the same number of values, or one of them a single value\n");
    return false;
  }
  for (int step : s.report_steps)
    if (step % s.train_config.evaluate_every != 0) {
      std::fprintf(stderr, "exact_posterior: --report-steps must be multiples of --evaluate-every (%d)\n",
                   s.train_config.evaluate_every);
      return false;
    }
  const auto& ns = s.sample_counts;
  if (s.reference_n == 0) s.reference_n = std::find(ns.begin(), ns.end(), 32) != ns.end() ? 32 : ns.back();
  if (std::find(ns.begin(), ns.end(), s.reference_n) == ns.end()) {
    std::fprintf(stderr, "exact_posterior: --reference-n must be one of --samples\n");
    return false;
  }
  return true;
}

/// The (lr, steps) pairs of --lr and --steps, in order; a single value applies to all.
std::vector<schedule> schedules_of(const settings& s) {
  std::vector<schedule> schedules;
  for (std::size_t k = 0; k < std::max(s.learning_rates.size(), s.step_counts.size()); ++k)
    schedules.push_back({s.learning_rates[std::min(k, s.learning_rates.size() - 1)],
                         s.step_counts[std::min(k, s.step_counts.size() - 1)]});
  return schedules;
}

/// The arms --arms names (all when it is not given), in the lab's order; empty when none matches.
std::vector<lab::arm> chosen_arms(const settings& s) {
  std::vector<lab::arm> arms;
  for (const auto& a : lab::all_arms())
    if (s.arm_ids.empty() || std::find(s.arm_ids.begin(), s.arm_ids.end(), a.id) != s.arm_ids.end()) arms.push_back(a);
  return arms;
}

void print_unknown_arms() {
  std::fprintf(stderr, "exact_posterior: no arm matches --arms; ids:");
  for (const auto& a : lab::all_arms()) std::fprintf(stderr, " %s", a.id.c_str());
  std::fprintf(stderr, "\n");
}

/// The tables' rows: every arm under every schedule, labelled with the schedule when there are several.
std::vector<row> rows_of(const std::vector<lab::arm>& arms, const std::vector<schedule>& schedules) {
  std::vector<row> rows;
  for (const auto& a : arms)
    for (const auto& sc : schedules)
      rows.push_back({a, sc,
                      schedules.size() == 1
                          ? a.name
                          : a.name + ", lr " + plain(sc.lr) + ", " + std::to_string(sc.steps) + " steps"});
  return rows;
}

// --- training ------------------------------------------------------------------------------------

/// What the training runs and every output read: the settings, the space and its exact figures,
/// the rows, and (once trained) the runs.
struct experiment {
  const settings& s;
  const lab::space& space;
  std::vector<schedule> schedules;
  std::vector<row> rows;
  std::filesystem::path dir;
  double prior_kl = 0;          // KL(posterior || prior)
  double posterior_reward = 0;  // E_posterior[r]
  std::vector<job> jobs{};      // train_all fills it

  /// Measurements over seeds: (row, n, step) -> spread of a field; step -1 is the run's end, -2 the
  /// tail average.
  lab::spread over_seeds(std::size_t r, int n, int step, double M::* field) const {
    std::vector<double> v;
    for (const auto& j : jobs)
      if (j.row == r && j.n == n) {
        if (step == -2) {
          if (j.result.tail_average) v.push_back((*j.result.tail_average).*field);
        } else {
          v.push_back((step == -1 ? j.result.trace.back() : lab::at_step(j.result.trace, step)).*field);
        }
      }
    return lab::spread_of(v);
  }

  /// The final KL(posterior || policy) of each seed of (row, n).
  std::vector<double> final_kls(std::size_t r, int n) const {
    std::vector<double> v;
    for (const auto& j : jobs)
      if (j.row == r && j.n == n) v.push_back(j.result.trace.back().kl_posterior_policy);
    return v;
  }
};

/// Every (row, n, seed) run, spread over threads longest first (so that the last ones to finish are
/// short); each is deterministic given its seed.
std::vector<job> train_all(const experiment& e) {
  const settings& s = e.s;
  std::vector<job> jobs;
  for (std::size_t r = 0; r < e.rows.size(); ++r)
    for (int n : s.sample_counts)
      for (int k = 0; k < s.seeds; ++k) jobs.push_back({r, n, unsigned(1000 + k), {}});
  std::vector<std::size_t> order(jobs.size());
  std::iota(order.begin(), order.end(), 0);
  const auto cost = [&](std::size_t k) { return double(e.rows[jobs[k].row].sched.steps) * (8.0 + jobs[k].n); };
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return cost(a) > cost(b); });
  parallel(
      jobs.size(), s.threads, order,
      [&](std::size_t k) {
        lab::train_config c = s.train_config;
        const schedule& sc = e.rows[jobs[k].row].sched;
        c.learning_rate = sc.lr, c.steps = sc.steps, c.seed = jobs[k].seed;
        c.average_from = s.average_tail > 0 ? sc.steps - int(std::lround(s.average_tail * sc.steps)) : -1;
        jobs[k].result = lab::train(e.space, e.rows[jobs[k].row].arm, jobs[k].n, c);
      },
      "training");
  return jobs;
}

// --- the training CSVs ---------------------------------------------------------------------------

/// training.csv: every measurement of every run.
void write_training_csv(const experiment& e) {
  std::ofstream csv(e.dir / "training.csv");
  csv << "arm_id,arm,lr,steps,n,seed,step,kl_posterior_policy,kl_policy_posterior,expected_reward,kl_policy_prior\n";
  for (const auto& j : e.jobs) {
    const row& r = e.rows[j.row];
    for (const auto& m : j.result.trace)
      csv << r.arm.id << ",\"" << r.arm.name << "\"," << r.sched.lr << ',' << r.sched.steps << ',' << j.n << ','
          << j.seed << ',' << m.step << ',' << m.kl_posterior_policy << ',' << m.kl_policy_posterior << ','
          << m.expected_reward << ',' << m.kl_policy_prior << '\n';
  }
}

/// final.csv: per (row, n), the runs' end (and tail average) over seeds.
void write_final_csv(const experiment& e) {
  std::ofstream csv(e.dir / "final.csv");
  csv << "arm_id,arm,lr,steps,n,seeds,kl_posterior_policy,sd,min,max,median,kl_policy_posterior,expected_reward,"
         "expected_reward_sd,kl_policy_prior,kl_policy_prior_sd,tail_average_kl_posterior_policy,tail_average_sd,"
         "tail_average_min,tail_average_max\n";
  for (std::size_t r = 0; r < e.rows.size(); ++r)
    for (int n : e.s.sample_counts) {
      const auto kl = e.over_seeds(r, n, -1, &M::kl_posterior_policy);
      const auto avg = e.over_seeds(r, n, -2, &M::kl_posterior_policy);
      const auto reward = e.over_seeds(r, n, -1, &M::expected_reward);
      const auto prior = e.over_seeds(r, n, -1, &M::kl_policy_prior);
      csv << e.rows[r].arm.id << ",\"" << e.rows[r].arm.name << "\"," << e.rows[r].sched.lr << ','
          << e.rows[r].sched.steps << ',' << n << ',' << kl.count << ',' << kl.mean << ',' << kl.sd << ',' << kl.min
          << ',' << kl.max << ',' << kl.median << ',' << e.over_seeds(r, n, -1, &M::kl_policy_posterior).mean << ','
          << reward.mean << ',' << reward.sd << ',' << prior.mean << ',' << prior.sd << ',' << avg.mean << ',' << avg.sd
          << ',' << avg.min << ',' << avg.max << '\n';
    }
}

/// by_step.csv: per (row, n) and each of --report-steps the row reaches, the measurements over seeds.
void write_by_step_csv(const experiment& e) {
  std::ofstream csv(e.dir / "by_step.csv");
  csv << "arm_id,arm,lr,steps,n,step,kl_posterior_policy,sd,min,max,expected_reward,expected_reward_sd,"
         "kl_policy_prior,kl_policy_prior_sd\n";
  for (std::size_t r = 0; r < e.rows.size(); ++r)
    for (int step : e.s.report_steps) {
      if (step > e.rows[r].sched.steps) continue;
      for (int n : e.s.sample_counts) {
        const auto kl = e.over_seeds(r, n, step, &M::kl_posterior_policy);
        const auto reward = e.over_seeds(r, n, step, &M::expected_reward);
        const auto prior = e.over_seeds(r, n, step, &M::kl_policy_prior);
        csv << e.rows[r].arm.id << ",\"" << e.rows[r].arm.name << "\"," << e.rows[r].sched.lr << ','
            << e.rows[r].sched.steps << ',' << n << ',' << step << ',' << kl.mean << ',' << kl.sd << ',' << kl.min
            << ',' << kl.max << ',' << reward.mean << ',' << reward.sd << ',' << prior.mean << ',' << prior.sd << '\n';
      }
    }
}

// --- gradient variance ---------------------------------------------------------------------------

/// One configuration's spreads over seeds.
struct variance_summary {
  lab::spread to_posterior, policy_to_posterior, policy_to_proposal, exact_norm;
  std::vector<lab::spread> variance, ratio, mse, mean_norm, typical, top_share;  // per estimator
};

/// Both variance experiments: each seed's points (configurations in order, the estimators of one
/// configuration consecutive), their spreads per configuration, and the time they took.
struct variance_results {
  std::vector<std::vector<lab::variance_point>> by_lambda, along_run;
  std::vector<variance_summary> lambda_summary, run_summary;
  double seconds = 0;
};

/// Per configuration (index into the per-seed vectors, estimators in blocks of
/// lab::variance_estimators().size()): spreads over seeds; the ratio to BRAIn is taken per seed.
std::vector<variance_summary> summarise_variance(const std::vector<std::vector<lab::variance_point>>& per_seed) {
  const std::size_t estimators = lab::variance_estimators().size();
  std::vector<variance_summary> out;
  if (per_seed.empty() || per_seed[0].empty()) return out;
  for (std::size_t c = 0; c < per_seed[0].size(); c += estimators) {
    variance_summary v;
    const auto collect = [&](std::size_t e, const std::function<double(const lab::variance_point&)>& f) {
      std::vector<double> x;
      for (const auto& seed_points : per_seed) x.push_back(f(seed_points[c + e]));
      return lab::spread_of(x);
    };
    v.to_posterior = collect(0, [](const auto& p) { return std::max(0.0, p.kl_proposal_posterior); });
    v.policy_to_posterior = collect(0, [](const auto& p) { return std::max(0.0, p.kl_policy_posterior); });
    v.policy_to_proposal = collect(0, [](const auto& p) { return std::max(0.0, p.kl_policy_proposal); });
    v.exact_norm = collect(0, [](const auto& p) { return p.exact_norm; });
    for (std::size_t e = 0; e < estimators; ++e) {
      v.variance.push_back(collect(e, [](const auto& p) { return p.stats.variance; }));
      std::vector<double> ratio;
      for (const auto& seed_points : per_seed)
        ratio.push_back(seed_points[c + e].stats.variance / seed_points[c].stats.variance);
      v.ratio.push_back(lab::spread_of(ratio));
      v.mse.push_back(collect(e, [](const auto& p) { return p.stats.mse; }));
      v.mean_norm.push_back(collect(e, [](const auto& p) { return p.stats.mean_norm; }));
      v.typical.push_back(collect(e, [](const auto& p) { return p.stats.median_sq_deviation; }));
      v.top_share.push_back(collect(e, [](const auto& p) { return p.stats.top_share; }));
    }
    out.push_back(v);
  }
  return out;
}

/// Gradient variance, two configurations, `variance_seeds` seeds each: the policy at the prior
/// with proposals between the posterior and beyond the prior; and the policy and proposal a
/// BRAIn run actually has (the proposal is the policy of the last refresh).
variance_results measure_variance(const experiment& e, const stopwatch& clock) {
  const settings& s = e.s;
  variance_results v;
  v.by_lambda.resize(std::size_t(std::max(0, s.variance_seeds)));
  v.along_run.resize(std::size_t(std::max(0, s.variance_seeds)));
  if (s.variance_seeds > 0) {
    const double before = clock.seconds();
    std::vector<std::size_t> tasks(std::size_t(2 * s.variance_seeds));
    std::iota(tasks.begin(), tasks.end(), 0);
    parallel(
        tasks.size(), s.threads, tasks,
        [&](std::size_t k) {
          const std::size_t seed_index = k / 2;
          const unsigned seed = unsigned(7 + seed_index);
          if (k % 2 == 0) {
            v.by_lambda[seed_index] =
                lab::gradient_variance(e.space, s.variance_n, s.variance_repeats, s.lambdas, seed);
          } else {
            lab::train_config c = s.train_config;
            c.learning_rate = e.schedules.front().lr;
            v.along_run[seed_index] =
                lab::trajectory_variance(e.space, s.variance_n, s.variance_repeats, c, s.variance_steps, seed);
          }
        },
        "variance");
    v.seconds = clock.seconds() - before;
    std::fprintf(stderr, "variance: %d seeds x (%zu + %zu) configurations in %.1f s\n", s.variance_seeds,
                 s.lambdas.size(), s.variance_steps.size(), v.seconds);
  }
  v.lambda_summary = summarise_variance(v.by_lambda);
  v.run_summary = summarise_variance(v.along_run);
  return v;
}

/// variance_runs.csv: every seed's point of both experiments.
void write_variance_runs_csv(const experiment& e, const variance_results& v) {
  std::ofstream runs(e.dir / "variance_runs.csv");
  runs << "configuration,lambda,step,lag,seed,kl_proposal_posterior,kl_policy_posterior,kl_policy_proposal,"
          "exact_norm,estimator,variance,mean_norm,mse,median_sq_deviation,top_share\n";
  for (bool along : {false, true})
    for (const auto& seed_points : along ? v.along_run : v.by_lambda)
      for (const auto& p : seed_points)
        runs << (along ? "along BRAIn run" : "policy = prior") << ',' << p.lambda << ',' << p.step << ',' << p.lag
             << ',' << p.seed << ',' << p.kl_proposal_posterior << ',' << p.kl_policy_posterior << ','
             << p.kl_policy_proposal << ',' << p.exact_norm << ',' << p.stats.estimator << ',' << p.stats.variance
             << ',' << p.stats.mean_norm << ',' << p.stats.mse << ',' << p.stats.median_sq_deviation << ','
             << p.stats.top_share << '\n';
}

/// variance.csv: per configuration and estimator, the spreads over seeds.
void write_variance_csv(const experiment& e, const variance_results& v) {
  const std::size_t estimators = lab::variance_estimators().size();
  std::ofstream csv(e.dir / "variance.csv");
  csv << "configuration,lambda,step,lag,seeds,kl_proposal_posterior,kl_policy_proposal,estimator,variance_mean,"
         "variance_sd,variance_min,variance_max,variance_median,ratio_to_brain_median,ratio_min,ratio_max,"
         "mse_median,mean_norm_median,exact_norm_median,median_sq_deviation_median,top_share_median,"
         "top_share_max\n";
  for (bool along : {false, true}) {
    const auto& summary = along ? v.run_summary : v.lambda_summary;
    for (std::size_t c = 0; c < summary.size(); ++c)
      for (std::size_t k = 0; k < estimators; ++k) {
        const auto& x = summary[c];
        csv << (along ? "along BRAIn run" : "policy = prior") << ',' << (along ? NAN : e.s.lambdas[c]) << ','
            << (along ? e.s.variance_steps[c] : -1) << ',' << (along ? v.along_run[0][c * estimators].lag : -1) << ','
            << e.s.variance_seeds << ',' << x.to_posterior.mean << ',' << x.policy_to_proposal.mean << ','
            << lab::variance_estimators()[k].first << ',' << x.variance[k].mean << ',' << x.variance[k].sd << ','
            << x.variance[k].min << ',' << x.variance[k].max << ',' << x.variance[k].median << ',' << x.ratio[k].median
            << ',' << x.ratio[k].min << ',' << x.ratio[k].max << ',' << x.mse[k].median << ',' << x.mean_norm[k].median
            << ',' << x.exact_norm.median << ',' << x.typical[k].median << ',' << x.top_share[k].median << ','
            << x.top_share[k].max << '\n';
      }
  }
}

// --- the summary ---------------------------------------------------------------------------------

/// The title and the paragraph that says what was run, and how long it took.
void write_summary_header(std::ostream& md, const experiment& e, double wall_seconds, double training_seconds,
                          double variance_seconds) {
  const settings& s = e.s;
  const lab::space& space = e.space;
  md << "# Exact-posterior lab\n\n"
     << space.prompts << " prompts; outputs: all " << space.outputs << " sequences of " << space.length
     << " tokens over " << space.vocab << "; tabular autoregressive prior and policy (" << space.parameters()
     << " logits); Bradley–Terry " << "goodness with beta = " << space.beta
     << ". KL(posterior ‖ prior) = " << format(e.prior_kl) << ", E_posterior[r] = " << format(e.posterior_reward)
     << ", E_prior[r] = " << format(brain::exact_expectation(space.log_prior, space.reward).mean()) << ".\n\n"
     << "Each run: Adam from the prior (";
  for (std::size_t k = 0; k < e.schedules.size(); ++k)
    md << (k ? "; " : "") << "lr " << plain(e.schedules[k].lr) << " for " << e.schedules[k].steps << " steps";
  md << "), n fresh samples per prompt per step from the proposal (refreshed from the policy every "
     << s.train_config.refresh << " steps where the arm updates it, else the prior); " << s.seeds << " seeds (1000–"
     << 999 + s.seeds << ") per cell. ";
  if (s.average_tail > 0)
    md << "The tail average is the policy whose logits are the mean of the iterates over the last "
       << format(100 * s.average_tail, 0) << "% of the run. ";
  md << "Wall time " << format(wall_seconds, 1) << " s on " << s.threads << " thread(s): training "
     << format(training_seconds, 1) << " s";
  if (s.variance_seeds > 0) md << ", variance " << format(variance_seconds, 1) << " s";
  md << ".\n\nCells: mean ± sd (min–max) over seeds.\n\n";
}

/// A table of KL(posterior || policy) at one step (-1: the end, -2: the tail average): a row per
/// arm, a column per n.
void write_n_table(std::ostream& md, const experiment& e, const std::string& title, int step) {
  md << "## " << title << "\n\n| arm |";
  for (int n : e.s.sample_counts) md << " n = " << n << " |";
  md << "\n|---|";
  for (std::size_t k = 0; k < e.s.sample_counts.size(); ++k) md << "---|";
  md << '\n';
  for (std::size_t r = 0; r < e.rows.size(); ++r) {
    md << "| " << e.rows[r].label << " |";
    for (int n : e.s.sample_counts)
      md << ' ' << mean_sd_range(e.over_seeds(r, n, step, &M::kl_posterior_policy)) << " |";
    md << '\n';
  }
  md << '\n';
}

/// Every final measurement at --reference-n, beside the posterior's own.
void write_reference_table(std::ostream& md, const experiment& e) {
  const int n = e.s.reference_n;
  md << "## Every measurement at n = " << n << "\n\n"
     << "| arm | KL(posterior ‖ π) | KL(π ‖ posterior) | E_π[r] | KL(π ‖ prior) |\n|---|---|---|---|---|\n"
     << "| *the posterior itself* | 0 | 0 | " << format(e.posterior_reward) << " | " << format(e.prior_kl) << " |\n";
  for (std::size_t r = 0; r < e.rows.size(); ++r) {
    const auto reward = e.over_seeds(r, n, -1, &M::expected_reward);
    const auto prior = e.over_seeds(r, n, -1, &M::kl_policy_prior);
    md << "| " << e.rows[r].label << " | " << mean_sd_range(e.over_seeds(r, n, -1, &M::kl_posterior_policy)) << " | "
       << format(e.over_seeds(r, n, -1, &M::kl_policy_posterior).mean) << " | " << format(reward.mean, 3) << " ± "
       << format(reward.sd, 3) << " | " << format(prior.mean, 3) << " ± " << format(prior.sd, 3) << " |\n";
  }
}

/// The header of a table with a row per (arm, n) and a column per --report-steps.
void write_step_columns(std::ostream& md, const std::vector<int>& report_steps) {
  for (int step : report_steps) md << " step " << step << " |";
  md << "\n|---|---|";
  for (std::size_t k = 0; k < report_steps.size(); ++k) md << "---|";
  md << '\n';
}

/// The measurements at --report-steps: KL(posterior || policy), then E[r] / KL(policy || prior);
/// cells past a row's last step are empty.
void write_step_tables(std::ostream& md, const experiment& e) {
  const std::vector<int>& steps = e.s.report_steps;
  md << "\n## KL(posterior ‖ policy) at steps " << steps.front() << "–" << steps.back() << "\n\n| arm | n |";
  write_step_columns(md, steps);
  for (std::size_t r = 0; r < e.rows.size(); ++r)
    for (int n : e.s.sample_counts) {
      md << "| " << e.rows[r].label << " | " << n << " |";
      for (int step : steps)
        md << ' '
           << (step <= e.rows[r].sched.steps ? mean_sd_range(e.over_seeds(r, n, step, &M::kl_posterior_policy)) : "")
           << " |";
      md << '\n';
    }
  md << "\n## E_π[r] / KL(π ‖ prior) at the same steps (posterior: " << format(e.posterior_reward, 3) << " / "
     << format(e.prior_kl, 3) << "), mean ± sd\n\n| arm | n |";
  write_step_columns(md, steps);
  for (std::size_t r = 0; r < e.rows.size(); ++r)
    for (int n : e.s.sample_counts) {
      md << "| " << e.rows[r].label << " | " << n << " |";
      for (int step : steps) {
        if (step > e.rows[r].sched.steps) {
          md << " |";
          continue;
        }
        const auto reward = e.over_seeds(r, n, step, &M::expected_reward);
        const auto prior = e.over_seeds(r, n, step, &M::kl_policy_prior);
        md << ' ' << format(reward.mean, 3) << " ± " << format(reward.sd, 3) << " / " << format(prior.mean, 3) << " ± "
           << format(prior.sd, 3) << " |";
      }
      md << '\n';
    }
}

/// The bridge of Table 3, one relaxation at a time, per schedule where all four arms ran.
void write_bridge_tables(std::ostream& md, const experiment& e) {
  for (const auto& sc : e.schedules) {
    const auto find = [&](const std::string& id) {
      for (std::size_t r = 0; r < e.rows.size(); ++r)
        if (e.rows[r].arm.id == id && e.rows[r].sched.lr == sc.lr && e.rows[r].sched.steps == sc.steps) return int(r);
      return -1;
    };
    const int hard = find("dpo-sft"), soft = find("dpo-sft-iw"), group = find("dpo-sft-iw-n");
    const int refreshed = find("brain");
    if (hard < 0 || soft < 0 || group < 0 || refreshed < 0) continue;
    const auto factor = [&](int a, int b, int n) {
      const auto f = lab::ratio_of(e.final_kls(std::size_t(a), n), e.final_kls(std::size_t(b), n));
      return sig(f.of_means) + "× (" + sig(f.low) + "–" + sig(f.high) + ")";
    };
    md << "\n## The bridge (Table 3) after " << sc.steps << " steps: the factor by which each relaxation divides "
       << "the final KL(posterior ‖ policy)\n\nRatio of the mean KLs; in brackets the smallest and largest ratio "
       << "within a seed (the arms with the proposal fixed at the prior draw identical samples under the same "
       << "seed).\n\n| n | argmax → soft pair labels (DPO-sft / DPO-sft+IW) | pairs → one group of n (DPO-sft+IW / "
       << "DPO-sft+IW+n) | fixed → refreshed proposal (DPO-sft+IW+n / BRAIn) | all (DPO-sft / BRAIn) |\n"
       << "|---|---|---|---|---|\n";
    for (int n : e.s.sample_counts)
      md << "| " << n << " | " << factor(hard, soft, n) << " | " << factor(soft, group, n) << " | "
         << factor(group, refreshed, n) << " | " << factor(hard, refreshed, n) << " |\n";
  }
}

/// One variance table: policy = prior (a row per λ and estimator), or along the run (a row per
/// step and estimator).
void write_variance_table(std::ostream& md, const experiment& e, const variance_results& v, bool along) {
  const std::size_t estimators = lab::variance_estimators().size();
  const auto& summary = along ? v.run_summary : v.lambda_summary;
  md << (along ? "| step | lag | KL(q ‖ posterior) | KL(π ‖ q) |" : "| λ | KL(q ‖ posterior) |")
     << " estimator | variance: mean ± sd | median [min–max] | ratio to BRAIn: median [min–max] | largest batch's "
     << "share: median [max] | typical batch (median ‖g_b − ḡ‖²) | E‖g − g*‖² | ‖ḡ‖ (‖g*‖) |\n"
     << (along ? "|---|---|---|---|" : "|---|---|") << "---|---|---|---|---|---|---|---|\n";
  for (std::size_t c = 0; c < summary.size(); ++c)
    for (std::size_t k = 0; k < estimators; ++k) {
      const auto& x = summary[c];
      if (along)
        md << "| " << e.s.variance_steps[c] << " | " << v.along_run[0][c * estimators].lag << " | "
           << format(x.to_posterior.mean, 3) << " | " << sig(x.policy_to_proposal.mean) << " |";
      else
        md << "| " << sig(e.s.lambdas[c]) << " | " << format(x.to_posterior.mean, 3) << " |";
      md << ' ' << lab::variance_estimators()[k].first << " | " << sig(x.variance[k].mean) << " ± "
         << sig(x.variance[k].sd) << " | " << median_range(x.variance[k]) << " | "
         << (k == 0 ? std::string("1") : median_range(x.ratio[k])) << " | " << format(x.top_share[k].median, 3) << " ["
         << format(x.top_share[k].max, 3) << "] | " << sig(x.typical[k].median) << " | " << sig(x.mse[k].median)
         << " | " << format(x.mean_norm[k].median, 3) << " (" << format(x.exact_norm.median, 3) << ") |\n";
    }
}

/// The gradient-variance section: what is measured, then both tables.
void write_variance_section(std::ostream& md, const experiment& e, const variance_results& v) {
  const settings& s = e.s;
  md << "\n## Gradient variance\n\nn = " << s.variance_n << "; " << s.variance_repeats << " batches per estimate; "
     << "seeds 7–" << 6 + s.variance_seeds << " (each seed: its own batches, shared by the four estimators; along "
     << "the run, also its own training run). Variance = E‖g − E g‖² of the direction g = Σ_i w_i ∇log q_θ(y_i) "
     << "(mean over prompts); the ratio to BRAIn is taken per seed (same batches). Largest batch's share = max_b "
     << "‖g_b − ḡ‖² / Σ_b ‖g_b − ḡ‖² (1/" << s.variance_repeats << " if all batches scattered alike). g* = "
     << "E_posterior[∇log q_θ], the exact ascent direction on −KL(posterior ‖ q_θ), which DPG and GDC++ (exact Z) "
     << "estimate without bias; E‖g − g*‖² = variance + squared bias against it; ‖ḡ‖ is the norm of the mean of "
     << "the batches. Medians over seeds where not said otherwise.\n\n"
     << "### Policy = prior, proposal q_λ ∝ posterior^(1−λ) · prior^λ (Algorithm 1 has this only at λ = 1, where "
     << "it starts)\n\n";
  write_variance_table(md, e, v, false);
  md << "\n### Along a BRAIn run (n = " << s.variance_n << ", lr " << plain(e.schedules.front().lr)
     << ", refresh every " << s.train_config.refresh
     << " steps): policy θ_step, proposal = the policy at the last refresh (lag steps earlier)\n\n";
  write_variance_table(md, e, v, true);
}

// --- the plots -----------------------------------------------------------------------------------

/// Data blocks for gnuplot: one block per row, separated by two blank lines (the files are closed
/// on return, before plotting).
void write_plot_data(const experiment& e) {
  std::ofstream curves(e.dir / "kl_vs_step.dat"), by_n(e.dir / "final_kl_vs_n.dat"),
      frontier(e.dir / "reward_vs_kl.dat");
  for (std::size_t r = 0; r < e.rows.size(); ++r) {
    std::map<int, std::vector<double>> at_step;
    for (const auto& j : e.jobs)
      if (j.row == r && j.n == e.s.reference_n)
        for (const auto& m : j.result.trace) at_step[m.step].push_back(m.kl_posterior_policy);
    for (const auto& [step, v] : at_step) curves << step << ',' << lab::spread_of(v).mean << '\n';
    curves << "\n\n";
    for (int n : e.s.sample_counts) {
      const auto s = e.over_seeds(r, n, -1, &M::kl_posterior_policy);
      by_n << n << ',' << s.mean << ',' << s.min << ',' << s.max << '\n';
    }
    by_n << "\n\n";
    frontier << e.over_seeds(r, e.s.reference_n, -1, &M::kl_policy_prior).mean << ','
             << e.over_seeds(r, e.s.reference_n, -1, &M::expected_reward).mean << "\n\n\n";
  }
}

/// A gnuplot plot command with a series per row: colour by arm, dash pattern by schedule.
std::string series(const experiment& e, const std::string& file, const std::string& using_, const std::string& style) {
  std::string s = "plot ";
  const std::size_t schedules = e.schedules.size();
  for (std::size_t r = 0; r < e.rows.size(); ++r)
    s += (r ? ", '' " : "'" + (e.dir / file).string() + "' ") + "index " + std::to_string(r) + " using " + using_ +
         " with " + style + " lt " + std::to_string(r / schedules + 1) + " dt " + std::to_string(r % schedules + 1) +
         " title '" + e.rows[r].label + "'";
  return s;
}

/// kl_vs_step.png, final_kl_vs_n.png and reward_vs_kl.png; false when one failed (all are tried).
bool plot_training(const experiment& e) {
  const bool many = e.schedules.size() > 1;
  const std::string size = many ? "1200,650" : "1000,650", n = std::to_string(e.s.reference_n);
  bool ok = true;
  ok = plot(e.dir, "kl_vs_step",
            "set title 'KL(posterior || policy) during training, n = " + n +
                ", mean over seeds'\n"
                "set xlabel 'step'\nset ylabel 'nats'\nset logscale y\n" +
                (many ? "set logscale x\n" : "") +
                series(e, "kl_vs_step.dat", many ? "($1 > 0 ? $1 : 1/0):2" : "1:2", "lines lw 2") + "\n",
            size) &&
       ok;
  ok = plot(e.dir, "final_kl_vs_n",
            "set title 'final KL(posterior || policy) against samples per prompt: mean, bars min-max over seeds'\n"
            "set xlabel 'n'\nset ylabel 'nats'\nset logscale xy\n" +
                series(e, "final_kl_vs_n.dat", "1:2:3:4", "yerrorlines lw 2") + "\n",
            size) &&
       ok;
  ok = plot(e.dir, "reward_vs_kl",
            "set title 'expected reward against KL(policy || prior), n = " + n +
                ", mean over seeds; the star is the posterior' noenhanced\nset xlabel 'KL(policy || prior)'\n"
                "set ylabel 'E[r] under the policy'\n" +
                series(e, "reward_vs_kl.dat", "1:2", "points pt 7 ps 2") +
                ", '-' using 1:2 with points pt 3 ps 4 lc 'black' title 'posterior'\n" + format(e.prior_kl) + ',' +
                format(e.posterior_reward) + "\ne\n",
            size) &&
       ok;
  return ok;
}

/// variance.png (with variance.dat): both experiments side by side, median and min-max over seeds.
bool plot_variance(const experiment& e, const variance_results& v) {
  const std::size_t estimators = lab::variance_estimators().size();
  std::ofstream var_dat(e.dir / "variance.dat");
  double low = INFINITY, high = 0;
  const auto add_point = [&](const variance_summary& x, std::size_t k) {
    var_dat << x.to_posterior.mean << ',' << x.variance[k].median << ',' << x.variance[k].min << ','
            << x.variance[k].max << '\n';
    low = std::min(low, x.variance[k].min), high = std::max(high, x.variance[k].max);
  };
  // Blocks 0-3: policy = prior, per estimator; 4-7: along the run at lag 0; 8-11: at the largest lag.
  for (std::size_t k = 0; k < estimators; ++k) {
    for (const auto& x : v.lambda_summary) add_point(x, k);
    var_dat << "\n\n";
  }
  int max_lag = 0;
  for (std::size_t c = 0; c < v.run_summary.size(); ++c)
    max_lag = std::max(max_lag, v.along_run[0][c * estimators].lag);
  for (int lag : {0, max_lag})
    for (std::size_t k = 0; k < estimators; ++k) {
      for (std::size_t c = 0; c < v.run_summary.size(); ++c)
        if (v.along_run[0][c * estimators].lag == lag) add_point(v.run_summary[c], k);
      var_dat << "\n\n";
    }
  var_dat.close();
  const std::string file = "'" + (e.dir / "variance.dat").string() + "'";
  std::string left =
                  "set title 'policy = prior, proposal between posterior and beyond the prior' noenhanced\n"
                  "set key inside top center\nplot ",
              right = "set title 'along a BRAIn run: policy = proposal (lag 0) and " + std::to_string(max_lag) +
                      " steps ahead' noenhanced\nset key inside bottom right\nset logscale x\nplot ";
  for (std::size_t k = 0; k < estimators; ++k) {
    const std::string name = lab::variance_estimators()[k].first, lt = " lt " + std::to_string(k + 1);
    const std::string lines = " using 1:2:3:4 with yerrorlines lw 2";
    left += (k ? ", " : "") + file + " index " + std::to_string(k) + lines + lt + " title '" + name + "'";
    right += (k ? ", " : "") + file + " index " + std::to_string(4 + k) + lines + lt + " title '" + name +
             ", lag 0', " + file + " index " + std::to_string(8 + k) + lines + " dt 2" + lt + " title '" + name +
             ", lag " + std::to_string(max_lag) + "'";
  }
  return plot(e.dir, "variance",
              "set multiplot layout 1,2 title 'gradient variance (n = " + std::to_string(e.s.variance_n) +
                  "), median and min-max over " + std::to_string(e.s.variance_seeds) +
                  " seeds' noenhanced\nset xlabel 'KL(q || posterior)'\nset ylabel 'E||g - Eg||^2' noenhanced\n"
                  "set logscale y\nset yrange [" +
                  sig(low / 2) + ":" + sig(high * 2) + "]\n" + left + "\n" + right + "\nunset multiplot\n",
              "1500,650");
}

/// Every plot, and their section of the summary; when gnuplot is missing or fails, a note on stderr instead.
void write_plots(std::ostream& md, const experiment& e, const variance_results& v) {
  write_plot_data(e);
  bool ok = plot_training(e);
  if (e.s.variance_seeds > 0) ok = plot_variance(e, v) && ok;
  if (ok) {
    md << "\n## Plots\n\n![KL during training](kl_vs_step.png)\n\n![final KL against n](final_kl_vs_n.png)\n\n"
       << "![reward against KL to the prior](reward_vs_kl.png)\n";
    if (e.s.variance_seeds > 0) md << "\n![gradient variance](variance.png)\n";
  } else {
    std::fprintf(stderr, "exact_posterior: gnuplot missing or failed; the .gp scripts are in %s\n", e.dir.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The exact-posterior lab: every estimator against the true posterior p(y|x) exp(r/beta) / Z"};
  settings s;
  add_options(app, s);
  CLI11_PARSE(app, argc, argv);

  const stopwatch clock;
  if (!check_settings(s)) return 2;
  const std::vector<schedule> schedules = schedules_of(s);
  const lab::space space = lab::make_space(s.space_config);
  const std::vector<lab::arm> arms = chosen_arms(s);
  if (arms.empty()) {
    print_unknown_arms();
    return 2;
  }
  experiment e{.s = s, .space = space, .schedules = schedules, .rows = rows_of(arms, schedules), .dir = s.results};
  std::filesystem::create_directories(e.dir);
  e.prior_kl = brain::exact_kl(space.log_posterior, space.log_prior).mean();
  e.posterior_reward = brain::exact_expectation(space.log_posterior, space.reward).mean();
  std::fprintf(stderr, "space: %d prompts x %lld outputs (%d^%d), %lld parameters; KL(posterior || prior) = %.4f\n",
               space.prompts, (long long)space.outputs, space.vocab, space.length, (long long)space.parameters(),
               e.prior_kl);

  e.jobs = train_all(e);
  const double training_seconds = clock.seconds();
  std::fprintf(stderr, "training: %zu runs in %.1f s\n", e.jobs.size(), training_seconds);
  write_training_csv(e);
  write_final_csv(e);
  if (!s.report_steps.empty()) write_by_step_csv(e);

  const variance_results variance = measure_variance(e, clock);
  if (s.variance_seeds > 0) {
    write_variance_runs_csv(e, variance);
    write_variance_csv(e, variance);
  }

  std::ostringstream md;
  write_summary_header(md, e, clock.seconds(), training_seconds, variance.seconds);
  write_n_table(md, e, "Final KL(posterior ‖ policy)", -1);
  if (s.average_tail > 0) write_n_table(md, e, "KL(posterior ‖ tail-averaged policy)", -2);
  write_reference_table(md, e);
  if (!s.report_steps.empty()) write_step_tables(md, e);
  write_bridge_tables(md, e);
  if (s.variance_seeds > 0) write_variance_section(md, e, variance);
  if (s.plots) write_plots(md, e, variance);

  std::ofstream(e.dir / "summary.md") << md.str();
  std::printf("%s", md.str().c_str());
  std::fprintf(stderr, "done in %.1f s; results in %s\n", clock.seconds(), e.dir.c_str());
  return 0;
}
