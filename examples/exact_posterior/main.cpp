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
bool plot(const std::filesystem::path& dir, const std::string& name, const std::string& script, const std::string& size = "1000,650") {
  const auto path = dir / (name + ".gp");
  std::ofstream(path) << "set terminal pngcairo size " << size << " font ',11'\nset output '" << (dir / (name + ".png")).string()
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
void parallel(std::size_t count, int threads, const std::vector<std::size_t>& order, const std::function<void(std::size_t)>& task,
              const char* what) {
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The exact-posterior lab: every estimator against the true posterior p(y|x) exp(r/beta) / Z"};
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
  app.add_option("--results", results, "folder for the CSV files, summary and plots")->required();
  app.add_option("--prompts", space_config.prompts, "number of prompts x")->capture_default_str();
  app.add_option("--vocab", space_config.vocab, "tokens V; outputs are all V^L sequences")->capture_default_str();
  app.add_option("--length", space_config.length, "sequence length L")->capture_default_str();
  app.add_option("--beta", space_config.beta, "KL coefficient of the Bradley-Terry goodness")->capture_default_str();
  app.add_option("--space-seed", space_config.seed, "seed of the prior and rewards")->capture_default_str();
  app.add_option("--lr", learning_rates, "Adam learning rate(s), paired with --steps (comma-separated; one value applies to all)")
      ->delimiter(',')->capture_default_str();
  app.add_option("--steps", step_counts, "optimiser steps per run, paired with --lr")->delimiter(',')->capture_default_str();
  app.add_option("--refresh", train_config.refresh, "steps between proposal refreshes")->capture_default_str();
  app.add_option("--evaluate-every", train_config.evaluate_every, "steps between exact measurements")->capture_default_str();
  app.add_option("--report-steps", report_steps, "steps at which to tabulate the measurements (multiples of --evaluate-every)")
      ->delimiter(',');
  app.add_option("--average-tail", average_tail, "also measure the policy with logits averaged over this last fraction of each run (0: off)")
      ->capture_default_str();
  app.add_option("--samples", sample_counts, "samples per prompt n (comma-separated)")->delimiter(',')->capture_default_str();
  app.add_option("--reference-n", reference_n, "n of the per-step plot and the all-measurements table (default: 32 if run, else the largest)");
  app.add_option("--arms", arm_ids, "arms to run (comma-separated ids; default: all)")->delimiter(',');
  app.add_option("--seeds", seeds, "training runs per (arm, schedule, n), with sampling seeds 1000, 1001, ...")->capture_default_str();
  app.add_option("--threads", threads, "runs in parallel")->capture_default_str();
  app.add_option("--variance-n", variance_n, "n for the gradient-variance experiments")->capture_default_str();
  app.add_option("--variance-repeats", variance_repeats, "batches per variance estimate")->capture_default_str();
  app.add_option("--variance-seeds", variance_seeds, "seeds 7, 8, ... of the variance experiments (0: skip them)")->capture_default_str();
  app.add_option("--variance-lambdas", lambdas, "policy = prior: proposals posterior^(1-λ) prior^λ")->delimiter(',')->capture_default_str();
  app.add_option("--variance-steps", variance_steps, "policy along a BRAIn run (lr and refresh as above): steps at which to measure")
      ->delimiter(',')->capture_default_str();
  app.add_flag("!--no-plots", plots, "skip the PNG plots");
  CLI11_PARSE(app, argc, argv);

  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  if (learning_rates.size() != step_counts.size() && learning_rates.size() != 1 && step_counts.size() != 1) {
    std::fprintf(stderr, "exact_posterior: --lr and --steps need the same number of values, or one of them a single value\n");
    return 2;
  }
  std::vector<schedule> schedules;
  for (std::size_t k = 0; k < std::max(learning_rates.size(), step_counts.size()); ++k)
    schedules.push_back({learning_rates[std::min(k, learning_rates.size() - 1)], step_counts[std::min(k, step_counts.size() - 1)]});
  for (int step : report_steps)
    if (step % train_config.evaluate_every != 0) {
      std::fprintf(stderr, "exact_posterior: --report-steps must be multiples of --evaluate-every (%d)\n", train_config.evaluate_every);
      return 2;
    }
  if (reference_n == 0)
    reference_n = std::find(sample_counts.begin(), sample_counts.end(), 32) != sample_counts.end() ? 32 : sample_counts.back();
  if (std::find(sample_counts.begin(), sample_counts.end(), reference_n) == sample_counts.end()) {
    std::fprintf(stderr, "exact_posterior: --reference-n must be one of --samples\n");
    return 2;
  }

  const lab::space space = lab::make_space(space_config);
  std::vector<lab::arm> arms;
  for (const auto& a : lab::all_arms())
    if (arm_ids.empty() || std::find(arm_ids.begin(), arm_ids.end(), a.id) != arm_ids.end()) arms.push_back(a);
  if (arms.empty()) {
    std::fprintf(stderr, "exact_posterior: no arm matches --arms; ids:");
    for (const auto& a : lab::all_arms()) std::fprintf(stderr, " %s", a.id.c_str());
    std::fprintf(stderr, "\n");
    return 2;
  }
  std::vector<row> rows;
  for (const auto& a : arms)
    for (const auto& sc : schedules)
      rows.push_back({a, sc, schedules.size() == 1 ? a.name : a.name + ", lr " + plain(sc.lr) + ", " + std::to_string(sc.steps) + " steps"});

  const std::filesystem::path dir(results);
  std::filesystem::create_directories(dir);
  const double prior_kl = brain::exact_kl(space.log_posterior, space.log_prior).mean();
  const double posterior_reward = brain::exact_expectation(space.log_posterior, space.reward).mean();
  std::fprintf(stderr, "space: %d prompts x %lld outputs (%d^%d), %lld parameters; KL(posterior || prior) = %.4f\n",
               space.prompts, (long long)space.outputs, space.vocab, space.length, (long long)space.parameters(), prior_kl);

  // Training runs, spread over threads (longest first); each is deterministic given its seed.
  std::vector<job> jobs;
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (int n : sample_counts)
      for (int s = 0; s < seeds; ++s) jobs.push_back({r, n, unsigned(1000 + s), {}});
  std::vector<std::size_t> order(jobs.size());
  std::iota(order.begin(), order.end(), 0);
  const auto cost = [&](std::size_t k) { return double(rows[jobs[k].row].sched.steps) * (8.0 + jobs[k].n); };
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return cost(a) > cost(b); });
  parallel(jobs.size(), threads, order, [&](std::size_t k) {
    lab::train_config c = train_config;
    const schedule& sc = rows[jobs[k].row].sched;
    c.learning_rate = sc.lr, c.steps = sc.steps, c.seed = jobs[k].seed;
    c.average_from = average_tail > 0 ? sc.steps - int(std::lround(average_tail * sc.steps)) : -1;
    jobs[k].result = lab::train(space, rows[jobs[k].row].arm, jobs[k].n, c);
  }, "training");
  const double training_seconds = elapsed();
  std::fprintf(stderr, "training: %zu runs in %.1f s\n", jobs.size(), training_seconds);

  {
    std::ofstream csv(dir / "training.csv");
    csv << "arm_id,arm,lr,steps,n,seed,step,kl_posterior_policy,kl_policy_posterior,expected_reward,kl_policy_prior\n";
    for (const auto& j : jobs)
      for (const auto& m : j.result.trace)
        csv << rows[j.row].arm.id << ",\"" << rows[j.row].arm.name << "\"," << rows[j.row].sched.lr << ',' << rows[j.row].sched.steps
            << ',' << j.n << ',' << j.seed << ',' << m.step << ',' << m.kl_posterior_policy << ',' << m.kl_policy_posterior << ','
            << m.expected_reward << ',' << m.kl_policy_prior << '\n';
  }
  // Measurements over seeds: (row, n, step) -> spread of a field; step -1 is the run's end, -2 the tail average.
  const auto over_seeds = [&](std::size_t r, int n, int step, double lab::measurement::*field) {
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
  };
  const auto values = [&](std::size_t r, int n) {
    std::vector<double> v;
    for (const auto& j : jobs)
      if (j.row == r && j.n == n) v.push_back(j.result.trace.back().kl_posterior_policy);
    return v;
  };
  using M = lab::measurement;
  {
    std::ofstream csv(dir / "final.csv");
    csv << "arm_id,arm,lr,steps,n,seeds,kl_posterior_policy,sd,min,max,median,kl_policy_posterior,expected_reward,expected_reward_sd,"
           "kl_policy_prior,kl_policy_prior_sd,tail_average_kl_posterior_policy,tail_average_sd,tail_average_min,tail_average_max\n";
    for (std::size_t r = 0; r < rows.size(); ++r)
      for (int n : sample_counts) {
        const auto kl = over_seeds(r, n, -1, &M::kl_posterior_policy), avg = over_seeds(r, n, -2, &M::kl_posterior_policy);
        const auto reward = over_seeds(r, n, -1, &M::expected_reward), prior = over_seeds(r, n, -1, &M::kl_policy_prior);
        csv << rows[r].arm.id << ",\"" << rows[r].arm.name << "\"," << rows[r].sched.lr << ',' << rows[r].sched.steps << ',' << n << ','
            << kl.count << ',' << kl.mean << ',' << kl.sd << ',' << kl.min << ',' << kl.max << ',' << kl.median << ','
            << over_seeds(r, n, -1, &M::kl_policy_posterior).mean << ',' << reward.mean << ',' << reward.sd << ',' << prior.mean << ','
            << prior.sd << ',' << avg.mean << ',' << avg.sd << ',' << avg.min << ',' << avg.max << '\n';
      }
  }
  std::vector<std::pair<std::size_t, int>> reported;  // (row, step) with step <= the row's steps
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (int step : report_steps)
      if (step <= rows[r].sched.steps) reported.push_back({r, step});
  if (!report_steps.empty()) {
    std::ofstream csv(dir / "by_step.csv");
    csv << "arm_id,arm,lr,steps,n,step,kl_posterior_policy,sd,min,max,expected_reward,expected_reward_sd,kl_policy_prior,kl_policy_prior_sd\n";
    for (const auto& [r, step] : reported)
      for (int n : sample_counts) {
        const auto kl = over_seeds(r, n, step, &M::kl_posterior_policy), reward = over_seeds(r, n, step, &M::expected_reward),
                   prior = over_seeds(r, n, step, &M::kl_policy_prior);
        csv << rows[r].arm.id << ",\"" << rows[r].arm.name << "\"," << rows[r].sched.lr << ',' << rows[r].sched.steps << ',' << n << ','
            << step << ',' << kl.mean << ',' << kl.sd << ',' << kl.min << ',' << kl.max << ',' << reward.mean << ',' << reward.sd << ','
            << prior.mean << ',' << prior.sd << '\n';
      }
  }

  // Gradient variance, two configurations, `variance_seeds` seeds each: the policy at the prior
  // with proposals between the posterior and beyond the prior; and the policy and proposal a
  // BRAIn run actually has (the proposal is the policy of the last refresh).
  std::vector<std::vector<lab::variance_point>> by_lambda(std::size_t(std::max(0, variance_seeds))),
      along_run(std::size_t(std::max(0, variance_seeds)));
  double variance_seconds = 0;
  if (variance_seeds > 0) {
    const double before = elapsed();
    std::vector<std::size_t> tasks(std::size_t(2 * variance_seeds));
    std::iota(tasks.begin(), tasks.end(), 0);
    parallel(tasks.size(), threads, tasks, [&](std::size_t k) {
      const std::size_t s = k / 2;
      const unsigned seed = unsigned(7 + s);
      if (k % 2 == 0) {
        by_lambda[s] = lab::gradient_variance(space, variance_n, variance_repeats, lambdas, seed);
      } else {
        lab::train_config c = train_config;
        c.learning_rate = schedules.front().lr;
        along_run[s] = lab::trajectory_variance(space, variance_n, variance_repeats, c, variance_steps, seed);
      }
    }, "variance");
    variance_seconds = elapsed() - before;
    std::fprintf(stderr, "variance: %d seeds x (%zu + %zu) configurations in %.1f s\n", variance_seeds, lambdas.size(),
                 variance_steps.size(), variance_seconds);
  }
  // Per configuration (index into the per-seed vectors, estimators in blocks of 4): spreads over seeds.
  const std::size_t estimators = lab::variance_estimators().size();
  struct variance_summary {
    lab::spread to_posterior, policy_to_posterior, policy_to_proposal, exact_norm;
    std::vector<lab::spread> variance, ratio, mse, mean_norm, typical, top_share;  // per estimator
  };
  const auto summarise_variance = [&](const std::vector<std::vector<lab::variance_point>>& per_seed) {
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
        for (const auto& seed_points : per_seed) ratio.push_back(seed_points[c + e].stats.variance / seed_points[c].stats.variance);
        v.ratio.push_back(lab::spread_of(ratio));
        v.mse.push_back(collect(e, [](const auto& p) { return p.stats.mse; }));
        v.mean_norm.push_back(collect(e, [](const auto& p) { return p.stats.mean_norm; }));
        v.typical.push_back(collect(e, [](const auto& p) { return p.stats.median_sq_deviation; }));
        v.top_share.push_back(collect(e, [](const auto& p) { return p.stats.top_share; }));
      }
      out.push_back(v);
    }
    return out;
  };
  const auto lambda_summary = summarise_variance(by_lambda), run_summary = summarise_variance(along_run);
  if (variance_seeds > 0) {
    std::ofstream runs(dir / "variance_runs.csv");
    runs << "configuration,lambda,step,lag,seed,kl_proposal_posterior,kl_policy_posterior,kl_policy_proposal,exact_norm,estimator,"
            "variance,mean_norm,mse,median_sq_deviation,top_share\n";
    for (bool along : {false, true})
      for (const auto& seed_points : along ? along_run : by_lambda)
        for (const auto& p : seed_points)
          runs << (along ? "along BRAIn run" : "policy = prior") << ',' << p.lambda << ',' << p.step << ',' << p.lag << ',' << p.seed
               << ',' << p.kl_proposal_posterior << ',' << p.kl_policy_posterior << ',' << p.kl_policy_proposal << ','
               << p.exact_norm << ',' << p.stats.estimator << ',' << p.stats.variance << ',' << p.stats.mean_norm << ','
               << p.stats.mse << ',' << p.stats.median_sq_deviation << ',' << p.stats.top_share << '\n';
    std::ofstream csv(dir / "variance.csv");
    csv << "configuration,lambda,step,lag,seeds,kl_proposal_posterior,kl_policy_proposal,estimator,variance_mean,variance_sd,"
           "variance_min,variance_max,variance_median,ratio_to_brain_median,ratio_min,ratio_max,mse_median,mean_norm_median,"
           "exact_norm_median,median_sq_deviation_median,top_share_median,top_share_max\n";
    for (bool along : {false, true}) {
      const auto& summary = along ? run_summary : lambda_summary;
      for (std::size_t c = 0; c < summary.size(); ++c)
        for (std::size_t e = 0; e < estimators; ++e) {
          const auto& v = summary[c];
          csv << (along ? "along BRAIn run" : "policy = prior") << ',' << (along ? NAN : lambdas[c]) << ','
              << (along ? variance_steps[c] : -1) << ',' << (along ? along_run[0][c * estimators].lag : -1) << ',' << variance_seeds
              << ',' << v.to_posterior.mean << ',' << v.policy_to_proposal.mean << ',' << lab::variance_estimators()[e].first << ','
              << v.variance[e].mean << ',' << v.variance[e].sd << ',' << v.variance[e].min << ',' << v.variance[e].max << ','
              << v.variance[e].median << ',' << v.ratio[e].median << ',' << v.ratio[e].min << ',' << v.ratio[e].max << ','
              << v.mse[e].median << ',' << v.mean_norm[e].median << ',' << v.exact_norm.median << ',' << v.typical[e].median << ','
              << v.top_share[e].median << ',' << v.top_share[e].max << '\n';
        }
    }
  }

  // The summary.
  std::ostringstream md;
  md << "# Exact-posterior lab\n\n"
     << space.prompts << " prompts; outputs: all " << space.outputs << " sequences of " << space.length << " tokens over "
     << space.vocab << "; tabular autoregressive prior and policy (" << space.parameters() << " logits); Bradley–Terry "
     << "goodness with beta = " << space.beta << ". KL(posterior ‖ prior) = " << format(prior_kl)
     << ", E_posterior[r] = " << format(posterior_reward)
     << ", E_prior[r] = " << format(brain::exact_expectation(space.log_prior, space.reward).mean()) << ".\n\n"
     << "Each run: Adam from the prior (";
  for (std::size_t k = 0; k < schedules.size(); ++k)
    md << (k ? "; " : "") << "lr " << plain(schedules[k].lr) << " for " << schedules[k].steps << " steps";
  md << "), n fresh samples per prompt per step from the proposal (refreshed from the policy every " << train_config.refresh
     << " steps where the arm updates it, else the prior); " << seeds << " seeds (1000–" << 999 + seeds << ") per cell. ";
  if (average_tail > 0)
    md << "The tail average is the policy whose logits are the mean of the iterates over the last " << format(100 * average_tail, 0)
       << "% of the run. ";
  md << "Wall time " << format(elapsed(), 1) << " s on " << threads << " thread(s): training " << format(training_seconds, 1) << " s";
  if (variance_seeds > 0) md << ", variance " << format(variance_seconds, 1) << " s";
  md << ".\n\nCells: mean ± sd (min–max) over seeds.\n\n";
  const auto n_table = [&](const std::string& title, int step) {
    md << "## " << title << "\n\n| arm |";
    for (int n : sample_counts) md << " n = " << n << " |";
    md << "\n|---|";
    for (std::size_t k = 0; k < sample_counts.size(); ++k) md << "---|";
    md << '\n';
    for (std::size_t r = 0; r < rows.size(); ++r) {
      md << "| " << rows[r].label << " |";
      for (int n : sample_counts) md << ' ' << mean_sd_range(over_seeds(r, n, step, &M::kl_posterior_policy)) << " |";
      md << '\n';
    }
    md << '\n';
  };
  n_table("Final KL(posterior ‖ policy)", -1);
  if (average_tail > 0) n_table("KL(posterior ‖ tail-averaged policy)", -2);

  md << "## Every measurement at n = " << reference_n << "\n\n"
     << "| arm | KL(posterior ‖ π) | KL(π ‖ posterior) | E_π[r] | KL(π ‖ prior) |\n|---|---|---|---|---|\n"
     << "| *the posterior itself* | 0 | 0 | " << format(posterior_reward) << " | " << format(prior_kl) << " |\n";
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto reward = over_seeds(r, reference_n, -1, &M::expected_reward), prior = over_seeds(r, reference_n, -1, &M::kl_policy_prior);
    md << "| " << rows[r].label << " | " << mean_sd_range(over_seeds(r, reference_n, -1, &M::kl_posterior_policy)) << " | "
       << format(over_seeds(r, reference_n, -1, &M::kl_policy_posterior).mean) << " | " << format(reward.mean, 3) << " ± "
       << format(reward.sd, 3) << " | " << format(prior.mean, 3) << " ± " << format(prior.sd, 3) << " |\n";
  }

  if (!report_steps.empty()) {
    md << "\n## KL(posterior ‖ policy) at steps " << report_steps.front() << "–" << report_steps.back() << "\n\n| arm | n |";
    for (int step : report_steps) md << " step " << step << " |";
    md << "\n|---|---|";
    for (std::size_t k = 0; k < report_steps.size(); ++k) md << "---|";
    md << '\n';
    for (std::size_t r = 0; r < rows.size(); ++r)
      for (int n : sample_counts) {
        md << "| " << rows[r].label << " | " << n << " |";
        for (int step : report_steps)
          md << ' ' << (step <= rows[r].sched.steps ? mean_sd_range(over_seeds(r, n, step, &M::kl_posterior_policy)) : "") << " |";
        md << '\n';
      }
    md << "\n## E_π[r] / KL(π ‖ prior) at the same steps (posterior: " << format(posterior_reward, 3) << " / " << format(prior_kl, 3)
       << "), mean ± sd\n\n| arm | n |";
    for (int step : report_steps) md << " step " << step << " |";
    md << "\n|---|---|";
    for (std::size_t k = 0; k < report_steps.size(); ++k) md << "---|";
    md << '\n';
    for (std::size_t r = 0; r < rows.size(); ++r)
      for (int n : sample_counts) {
        md << "| " << rows[r].label << " | " << n << " |";
        for (int step : report_steps) {
          if (step > rows[r].sched.steps) {
            md << " |";
            continue;
          }
          const auto reward = over_seeds(r, n, step, &M::expected_reward), prior = over_seeds(r, n, step, &M::kl_policy_prior);
          md << ' ' << format(reward.mean, 3) << " ± " << format(reward.sd, 3) << " / " << format(prior.mean, 3) << " ± "
             << format(prior.sd, 3) << " |";
        }
        md << '\n';
      }
  }

  // The bridge of Table 3, one relaxation at a time, where all four arms ran.
  for (const auto& sc : schedules) {
    const auto find = [&](const std::string& id) {
      for (std::size_t r = 0; r < rows.size(); ++r)
        if (rows[r].arm.id == id && rows[r].sched.lr == sc.lr && rows[r].sched.steps == sc.steps) return int(r);
      return -1;
    };
    const int hard = find("dpo-sft"), soft = find("dpo-sft-iw"), group = find("dpo-sft-iw-n"), refreshed = find("brain");
    if (hard < 0 || soft < 0 || group < 0 || refreshed < 0) continue;
    const auto factor = [&](int a, int b, int n) {
      const auto f = lab::ratio_of(values(std::size_t(a), n), values(std::size_t(b), n));
      return sig(f.of_means) + "× (" + sig(f.low) + "–" + sig(f.high) + ")";
    };
    md << "\n## The bridge (Table 3) after " << sc.steps << " steps: the factor by which each relaxation divides the final "
       << "KL(posterior ‖ policy)\n\nRatio of the mean KLs; in brackets the smallest and largest ratio within a seed (the arms "
       << "with the proposal fixed at the prior draw identical samples under the same seed).\n\n| n | argmax → soft pair labels (DPO-sft / DPO-sft+IW) | pairs → one group of n (DPO-sft+IW / "
       << "DPO-sft+IW+n) | fixed → refreshed proposal (DPO-sft+IW+n / BRAIn) | all (DPO-sft / BRAIn) |\n|---|---|---|---|---|\n";
    for (int n : sample_counts)
      md << "| " << n << " | " << factor(hard, soft, n) << " | " << factor(soft, group, n) << " | " << factor(group, refreshed, n)
         << " | " << factor(hard, refreshed, n) << " |\n";
  }

  if (variance_seeds > 0) {
    const auto variance_table = [&](bool along) {
      const auto& summary = along ? run_summary : lambda_summary;
      md << (along ? "| step | lag | KL(q ‖ posterior) | KL(π ‖ q) |" : "| λ | KL(q ‖ posterior) |")
         << " estimator | variance: mean ± sd | median [min–max] | ratio to BRAIn: median [min–max] | largest batch's share: "
         << "median [max] | typical batch (median ‖g_b − ḡ‖²) | E‖g − g*‖² | ‖ḡ‖ (‖g*‖) |\n"
         << (along ? "|---|---|---|---|" : "|---|---|") << "---|---|---|---|---|---|---|---|\n";
      for (std::size_t c = 0; c < summary.size(); ++c)
        for (std::size_t e = 0; e < estimators; ++e) {
          const auto& v = summary[c];
          if (along)
            md << "| " << variance_steps[c] << " | " << along_run[0][c * estimators].lag << " | " << format(v.to_posterior.mean, 3)
               << " | " << sig(v.policy_to_proposal.mean) << " |";
          else
            md << "| " << sig(lambdas[c]) << " | " << format(v.to_posterior.mean, 3) << " |";
          md << ' ' << lab::variance_estimators()[e].first << " | " << sig(v.variance[e].mean) << " ± " << sig(v.variance[e].sd)
             << " | " << median_range(v.variance[e]) << " | " << (e == 0 ? std::string("1") : median_range(v.ratio[e])) << " | "
             << format(v.top_share[e].median, 3) << " [" << format(v.top_share[e].max, 3) << "] | " << sig(v.typical[e].median)
             << " | " << sig(v.mse[e].median) << " | " << format(v.mean_norm[e].median, 3) << " (" << format(v.exact_norm.median, 3)
             << ") |\n";
        }
    };
    md << "\n## Gradient variance\n\nn = " << variance_n << "; " << variance_repeats << " batches per estimate; seeds 7–"
       << 6 + variance_seeds << " (each seed: its own batches, shared by the four estimators; along the run, also its own "
       << "training run). Variance = E‖g − E g‖² of the direction g = Σ_i w_i ∇log q_θ(y_i) (mean over prompts); the ratio to "
       << "BRAIn is taken per seed (same batches). Largest batch's share = max_b ‖g_b − ḡ‖² / Σ_b ‖g_b − ḡ‖² (1/" << variance_repeats
       << " if all batches scattered alike). g* = E_posterior[∇log q_θ], the exact ascent direction on −KL(posterior ‖ q_θ), "
       << "which DPG and GDC++ (exact Z) estimate without bias; E‖g − g*‖² = variance + squared bias against it; ‖ḡ‖ is the "
       << "norm of the mean of the batches. Medians over seeds where not said otherwise.\n\n"
       << "### Policy = prior, proposal q_λ ∝ posterior^(1−λ) · prior^λ (Algorithm 1 has this only at λ = 1, where it starts)\n\n";
    variance_table(false);
    md << "\n### Along a BRAIn run (n = " << variance_n << ", lr " << plain(schedules.front().lr) << ", refresh every "
       << train_config.refresh << " steps): policy θ_step, proposal = the policy at the last refresh (lag steps earlier)\n\n";
    variance_table(true);
  }

  if (plots) {
    bool ok = true;
    const bool many = schedules.size() > 1;
    {  // Data blocks for gnuplot: one block per row, separated by two blank lines (closed before plotting).
      std::ofstream curves(dir / "kl_vs_step.dat"), by_n(dir / "final_kl_vs_n.dat"), frontier(dir / "reward_vs_kl.dat");
      for (std::size_t r = 0; r < rows.size(); ++r) {
        std::map<int, std::vector<double>> at_step;
        for (const auto& j : jobs)
          if (j.row == r && j.n == reference_n)
            for (const auto& m : j.result.trace) at_step[m.step].push_back(m.kl_posterior_policy);
        for (const auto& [step, v] : at_step) curves << step << ',' << lab::spread_of(v).mean << '\n';
        curves << "\n\n";
        for (int n : sample_counts) {
          const auto s = over_seeds(r, n, -1, &M::kl_posterior_policy);
          by_n << n << ',' << s.mean << ',' << s.min << ',' << s.max << '\n';
        }
        by_n << "\n\n";
        frontier << over_seeds(r, reference_n, -1, &M::kl_policy_prior).mean << ','
                 << over_seeds(r, reference_n, -1, &M::expected_reward).mean << "\n\n\n";
      }
    }
    // Colour by arm, dash pattern by schedule.
    const auto series = [&](const std::string& file, const std::string& using_, const std::string& style) {
      std::string s = "plot ";
      for (std::size_t r = 0; r < rows.size(); ++r)
        s += (r ? ", '' " : "'" + (dir / file).string() + "' ") + "index " + std::to_string(r) + " using " + using_ + " with " + style +
             " lt " + std::to_string(r / schedules.size() + 1) + " dt " + std::to_string(r % schedules.size() + 1) + " title '" +
             rows[r].label + "'";
      return s;
    };
    ok = plot(dir, "kl_vs_step",
              "set title 'KL(posterior || policy) during training, n = " + std::to_string(reference_n) + ", mean over seeds'\n"
                  "set xlabel 'step'\nset ylabel 'nats'\nset logscale y\n" + (many ? "set logscale x\n" : "") +
                  series("kl_vs_step.dat", many ? "($1 > 0 ? $1 : 1/0):2" : "1:2", "lines lw 2") + "\n", many ? "1200,650" : "1000,650") &&
         ok;
    ok = plot(dir, "final_kl_vs_n",
              "set title 'final KL(posterior || policy) against samples per prompt: mean, bars min-max over seeds'\nset xlabel 'n'\n"
              "set ylabel 'nats'\nset logscale xy\n" + series("final_kl_vs_n.dat", "1:2:3:4", "yerrorlines lw 2") + "\n",
              many ? "1200,650" : "1000,650") && ok;
    ok = plot(dir, "reward_vs_kl",
              "set title 'expected reward against KL(policy || prior), n = " + std::to_string(reference_n) +
                  ", mean over seeds; the star is the posterior' noenhanced\nset xlabel 'KL(policy || prior)'\n"
                  "set ylabel 'E[r] under the policy'\n" + series("reward_vs_kl.dat", "1:2", "points pt 7 ps 2") +
                  ", '-' using 1:2 with points pt 3 ps 4 lc 'black' title 'posterior'\n" + format(prior_kl) + ',' +
                  format(posterior_reward) + "\ne\n", many ? "1200,650" : "1000,650") && ok;
    if (variance_seeds > 0) {
      std::ofstream var_dat(dir / "variance.dat");
      double low = INFINITY, high = 0;
      // Blocks 0-3: policy = prior, per estimator; 4-7: along the run at lag 0; 8-11: at the largest lag.
      for (std::size_t e = 0; e < estimators; ++e) {
        for (const auto& v : lambda_summary) {
          var_dat << v.to_posterior.mean << ',' << v.variance[e].median << ',' << v.variance[e].min << ',' << v.variance[e].max << '\n';
          low = std::min(low, v.variance[e].min), high = std::max(high, v.variance[e].max);
        }
        var_dat << "\n\n";
      }
      int max_lag = 0;
      for (std::size_t c = 0; c < run_summary.size(); ++c) max_lag = std::max(max_lag, along_run[0][c * estimators].lag);
      for (int lag : {0, max_lag})
        for (std::size_t e = 0; e < estimators; ++e) {
          for (std::size_t c = 0; c < run_summary.size(); ++c)
            if (along_run[0][c * estimators].lag == lag) {
              const auto& v = run_summary[c];
              var_dat << v.to_posterior.mean << ',' << v.variance[e].median << ',' << v.variance[e].min << ',' << v.variance[e].max << '\n';
              low = std::min(low, v.variance[e].min), high = std::max(high, v.variance[e].max);
            }
          var_dat << "\n\n";
        }
      var_dat.close();
      const std::string file = "'" + (dir / "variance.dat").string() + "'";
      std::string left = "set title 'policy = prior, proposal between posterior and beyond the prior' noenhanced\n"
                         "set key inside top center\nplot ",
                  right = "set title 'along a BRAIn run: policy = proposal (lag 0) and " + std::to_string(max_lag) +
                          " steps ahead' noenhanced\nset key inside bottom right\nset logscale x\nplot ";
      for (std::size_t e = 0; e < estimators; ++e) {
        const std::string name = lab::variance_estimators()[e].first, lt = " lt " + std::to_string(e + 1);
        left += (e ? ", " : "") + file + " index " + std::to_string(e) + " using 1:2:3:4 with yerrorlines lw 2" + lt + " title '" + name + "'";
        right += (e ? ", " : "") + file + " index " + std::to_string(4 + e) + " using 1:2:3:4 with yerrorlines lw 2" + lt + " title '" +
                 name + ", lag 0', " + file + " index " + std::to_string(8 + e) + " using 1:2:3:4 with yerrorlines lw 2 dt 2" + lt +
                 " title '" + name + ", lag " + std::to_string(max_lag) + "'";
      }
      ok = plot(dir, "variance",
                "set multiplot layout 1,2 title 'gradient variance (n = " + std::to_string(variance_n) + "), median and min-max over " +
                    std::to_string(variance_seeds) + " seeds' noenhanced\nset xlabel 'KL(q || posterior)'\n"
                    "set ylabel 'E||g - Eg||^2' noenhanced\nset logscale y\nset yrange [" + sig(low / 2) + ":" + sig(high * 2) + "]\n" +
                    left + "\n" + right + "\nunset multiplot\n", "1500,650") && ok;
    }
    if (ok) {
      md << "\n## Plots\n\n![KL during training](kl_vs_step.png)\n\n![final KL against n](final_kl_vs_n.png)\n\n"
         << "![reward against KL to the prior](reward_vs_kl.png)\n";
      if (variance_seeds > 0) md << "\n![gradient variance](variance.png)\n";
    } else {
      std::fprintf(stderr, "exact_posterior: gnuplot missing or failed; the .gp scripts are in %s\n", dir.c_str());
    }
  }
  std::ofstream(dir / "summary.md") << md.str();
  std::printf("%s", md.str().c_str());
  std::fprintf(stderr, "done in %.1f s; results in %s\n", elapsed(), dir.c_str());
  return 0;
}
