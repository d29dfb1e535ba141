// exact_posterior: train every estimator and reduction against an exactly known posterior and
// report how close each gets (lab.hpp has the science; this file is the command line and output).
//
//   exact_posterior --results DIR [options]      (exact_posterior --help)
//
// Writes DIR/training.csv, final.csv, variance.csv, summary.md and, when gnuplot is installed,
// kl_vs_step.png, final_kl_vs_n.png, reward_vs_kl.png and variance.png.

#include "lab.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

struct job {
  std::size_t arm;
  int n;
  unsigned seed;
  std::vector<lab::measurement> trace;
};

struct stats {
  double mean = 0, sd = 0;
};
stats summarise(const std::vector<double>& v) {
  stats s;
  for (double x : v) s.mean += x / double(v.size());
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean) / std::max<double>(1, double(v.size()) - 1);
  s.sd = std::sqrt(s.sd);
  return s;
}

std::string format(double v, int digits = 4) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(digits);
  os << v;
  return os.str();
}

/// Writes a gnuplot script and runs it; returns false when gnuplot is missing or fails.
bool plot(const std::filesystem::path& dir, const std::string& name, const std::string& script) {
  const auto path = dir / (name + ".gp");
  std::ofstream(path) << "set terminal pngcairo size 1000,650 font ',11'\nset output '" << (dir / (name + ".png")).string()
                      << "'\nset datafile separator ','\nset key outside right\nset grid\n"
                      // eleven distinguishable colours: gnuplot's default cycle repeats after eight
                      << "set linetype 1 lc rgb '#7b2cbf'\nset linetype 2 lc rgb '#2a9d8f'\nset linetype 3 lc rgb '#219ebc'\n"
                         "set linetype 4 lc rgb '#e9a800'\nset linetype 5 lc rgb '#f4743b'\nset linetype 6 lc rgb '#264653'\n"
                         "set linetype 7 lc rgb '#e63946'\nset linetype 8 lc rgb '#000000'\nset linetype 9 lc rgb '#8d99ae'\n"
                         "set linetype 10 lc rgb '#6a994e'\nset linetype 11 lc rgb '#bc6c25'\nset linetype cycle 11\n"
                      << script;
  return std::system(("gnuplot '" + path.string() + "' 2>/dev/null").c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The exact-posterior lab: every estimator against the true posterior p(y|x) exp(r/beta) / Z"};
  std::string results;
  lab::space_config space_config;
  lab::train_config train_config;
  train_config.steps = 800;
  std::vector<int> sample_counts{2, 4, 8, 16, 32, 64};
  std::vector<std::string> arm_ids;
  int seeds = 3, threads = int(std::max(1u, std::thread::hardware_concurrency()));
  int variance_n = 32, variance_repeats = 400;
  bool plots = true;
  app.add_option("--results", results, "folder for the CSV files, summary and plots")->required();
  app.add_option("--prompts", space_config.prompts, "number of prompts x")->capture_default_str();
  app.add_option("--vocab", space_config.vocab, "tokens V; outputs are all V^L sequences")->capture_default_str();
  app.add_option("--length", space_config.length, "sequence length L")->capture_default_str();
  app.add_option("--beta", space_config.beta, "KL coefficient of the Bradley-Terry goodness")->capture_default_str();
  app.add_option("--space-seed", space_config.seed, "seed of the prior and rewards")->capture_default_str();
  app.add_option("--steps", train_config.steps, "optimiser steps per run")->capture_default_str();
  app.add_option("--refresh", train_config.refresh, "steps between proposal refreshes")->capture_default_str();
  app.add_option("--lr", train_config.learning_rate, "Adam learning rate")->capture_default_str();
  app.add_option("--evaluate-every", train_config.evaluate_every, "steps between exact measurements")->capture_default_str();
  app.add_option("--samples", sample_counts, "samples per prompt n (comma-separated)")->delimiter(',')->capture_default_str();
  app.add_option("--arms", arm_ids, "arms to run (comma-separated ids; default: all)")->delimiter(',');
  app.add_option("--seeds", seeds, "training runs per (arm, n), with different sampling seeds")->capture_default_str();
  app.add_option("--threads", threads, "runs in parallel")->capture_default_str();
  app.add_option("--variance-n", variance_n, "n for the gradient-variance experiment")->capture_default_str();
  app.add_option("--variance-repeats", variance_repeats, "batches per variance estimate")->capture_default_str();
  app.add_flag("!--no-plots", plots, "skip the PNG plots");
  CLI11_PARSE(app, argc, argv);

  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
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
  const std::filesystem::path dir(results);
  std::filesystem::create_directories(dir);
  const double prior_kl = brain::exact_kl(space.log_posterior, space.log_prior).mean();
  std::fprintf(stderr, "space: %d prompts x %lld outputs (%d^%d), %lld parameters; KL(posterior || prior) = %.4f\n",
               space.prompts, (long long)space.outputs, space.vocab, space.length, (long long)space.parameters(), prior_kl);

  // Training runs, spread over threads; each is deterministic given its seed.
  std::vector<job> jobs;
  for (std::size_t a = 0; a < arms.size(); ++a)
    for (int n : sample_counts)
      for (int s = 0; s < seeds; ++s) jobs.push_back({a, n, unsigned(1000 + s), {}});
  std::atomic<std::size_t> next{0}, done{0};
  std::mutex print;
  const auto worker = [&] {
    for (std::size_t k; (k = next++) < jobs.size();) {
      lab::train_config c = train_config;
      c.seed = jobs[k].seed;
      jobs[k].trace = lab::train(space, arms[jobs[k].arm], jobs[k].n, c);
      const std::size_t finished = ++done;
      const std::lock_guard lock(print);
      const double rate = double(finished) / elapsed();
      std::fprintf(stderr, "\r[%zu/%zu] %.1f runs/s, ETA %.0f s   ", finished, jobs.size(), rate,
                   double(jobs.size() - finished) / rate);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, threads); ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  std::fprintf(stderr, "\ntraining: %zu runs in %.1f s\n", jobs.size(), elapsed());

  {
    std::ofstream csv(dir / "training.csv");
    csv << "arm_id,arm,n,seed,step,kl_posterior_policy,kl_policy_posterior,expected_reward,kl_policy_prior\n";
    for (const auto& j : jobs)
      for (const auto& m : j.trace)
        csv << arms[j.arm].id << ",\"" << arms[j.arm].name << "\"," << j.n << ',' << j.seed << ',' << m.step << ','
            << m.kl_posterior_policy << ',' << m.kl_policy_posterior << ',' << m.expected_reward << ',' << m.kl_policy_prior
            << '\n';
  }
  // Final measurements, mean and sd over seeds: [arm][n] -> per metric.
  std::map<std::pair<std::size_t, int>, std::vector<lab::measurement>> finals;
  for (const auto& j : jobs) finals[{j.arm, j.n}].push_back(j.trace.back());
  const auto final_stat = [&](std::size_t a, int n, double lab::measurement::*field) {
    std::vector<double> v;
    for (const auto& m : finals[{a, n}]) v.push_back(m.*field);
    return summarise(v);
  };
  {
    std::ofstream csv(dir / "final.csv");
    csv << "arm_id,arm,n,kl_posterior_policy,sd,kl_policy_posterior,expected_reward,kl_policy_prior\n";
    for (std::size_t a = 0; a < arms.size(); ++a)
      for (int n : sample_counts) {
        const auto kl = final_stat(a, n, &lab::measurement::kl_posterior_policy);
        csv << arms[a].id << ",\"" << arms[a].name << "\"," << n << ',' << kl.mean << ',' << kl.sd << ','
            << final_stat(a, n, &lab::measurement::kl_policy_posterior).mean << ','
            << final_stat(a, n, &lab::measurement::expected_reward).mean << ','
            << final_stat(a, n, &lab::measurement::kl_policy_prior).mean << '\n';
      }
  }

  // Gradient variance against the distance of the proposal from the posterior.
  const std::vector<double> lambdas{0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2};
  const auto variance = lab::gradient_variance(space, variance_n, variance_repeats, lambdas, 7);
  {
    std::ofstream csv(dir / "variance.csv");
    csv << "lambda,kl_proposal_posterior,estimator,variance,mean_norm\n";
    for (const auto& v : variance)
      csv << v.lambda << ',' << v.kl_proposal_posterior << ',' << v.estimator << ',' << v.variance << ',' << v.mean_norm << '\n';
  }
  std::fprintf(stderr, "variance: %zu estimates in %.1f s total\n", variance.size(), elapsed());

  // The summary.
  const int reference_n = std::find(sample_counts.begin(), sample_counts.end(), 32) != sample_counts.end() ? 32 : sample_counts.back();
  std::ostringstream md;
  md << "# Exact-posterior lab\n\n"
     << space.prompts << " prompts; outputs: all " << space.outputs << " sequences of " << space.length << " tokens over "
     << space.vocab << "; tabular autoregressive prior and policy (" << space.parameters() << " logits); Bradley–Terry "
     << "goodness with beta = " << space.beta << ". KL(posterior ‖ prior) = " << format(prior_kl)
     << ", E_posterior[r] = " << format(brain::exact_expectation(space.log_posterior, space.reward).mean())
     << ", E_prior[r] = " << format(brain::exact_expectation(space.log_prior, space.reward).mean()) << ".\n\n"
     << "Each run: " << train_config.steps << " Adam steps (lr " << train_config.learning_rate << ") from the prior, n fresh "
     << "samples per prompt per step from the proposal (refreshed from the policy every " << train_config.refresh
     << " steps where the arm updates it, else the prior); " << seeds << " seeds per cell. Wall time "
     << format(elapsed(), 1) << " s on " << threads << " thread(s).\n\n";
  md << "## Final KL(posterior ‖ policy), mean ± sd over seeds\n\n| arm |";
  for (int n : sample_counts) md << " n = " << n << " |";
  md << "\n|---|";
  for (std::size_t k = 0; k < sample_counts.size(); ++k) md << "---|";
  md << '\n';
  for (std::size_t a = 0; a < arms.size(); ++a) {
    md << "| " << arms[a].name << " |";
    for (int n : sample_counts) {
      const auto s = final_stat(a, n, &lab::measurement::kl_posterior_policy);
      md << ' ' << format(s.mean) << " ± " << format(s.sd) << " |";
    }
    md << '\n';
  }
  md << "\n## Every measurement at n = " << reference_n << "\n\n"
     << "| arm | KL(posterior ‖ π) | KL(π ‖ posterior) | E_π[r] | KL(π ‖ prior) |\n|---|---|---|---|---|\n"
     << "| *the posterior itself* | 0 | 0 | " << format(brain::exact_expectation(space.log_posterior, space.reward).mean())
     << " | " << format(brain::exact_kl(space.log_posterior, space.log_prior).mean()) << " |\n";
  for (std::size_t a = 0; a < arms.size(); ++a)
    md << "| " << arms[a].name << " | " << format(final_stat(a, reference_n, &lab::measurement::kl_posterior_policy).mean)
       << " | " << format(final_stat(a, reference_n, &lab::measurement::kl_policy_posterior).mean) << " | "
       << format(final_stat(a, reference_n, &lab::measurement::expected_reward).mean) << " | "
       << format(final_stat(a, reference_n, &lab::measurement::kl_policy_prior).mean) << " |\n";
  md << "\n## Gradient variance as the proposal moves away from the posterior\n\n"
     << "Policy = prior; proposal q_λ ∝ posterior^(1−λ) · prior^λ; n = " << variance_n << "; " << variance_repeats
     << " batches per cell. Variance = E‖g − E g‖² of the direction Σ w_i ∇log q_θ(y_i); ‖E g‖ in brackets.\n\n"
     << "| λ | KL(q ‖ posterior) | BRAIn | no baseline | GDC++ | DPG | GDC++ / BRAIn | DPG / BRAIn |\n"
     << "|---|---|---|---|---|---|---|---|\n";
  for (std::size_t k = 0; k < variance.size(); k += 4) {
    md << "| " << variance[k].lambda << " | " << format(std::max(0.0, variance[k].kl_proposal_posterior), 3) << " |";
    for (std::size_t e = 0; e < 4; ++e)
      md << ' ' << format(variance[k + e].variance) << " [" << format(variance[k + e].mean_norm, 3) << "] |";
    md << ' ' << format(variance[k + 2].variance / variance[k].variance, 2) << " | "
       << format(variance[k + 3].variance / variance[k].variance, 2) << " |\n";
  }

  if (plots) {
    {  // Data blocks for gnuplot: one block per arm, separated by two blank lines (closed before plotting).
    std::ofstream curves(dir / "kl_vs_step.dat"), by_n(dir / "final_kl_vs_n.dat"), frontier(dir / "reward_vs_kl.dat");
    for (std::size_t a = 0; a < arms.size(); ++a) {
      std::map<int, std::vector<double>> at_step;
      for (const auto& j : jobs)
        if (j.arm == a && j.n == reference_n)
          for (const auto& m : j.trace) at_step[m.step].push_back(m.kl_posterior_policy);
      for (const auto& [step, v] : at_step) curves << step << ',' << summarise(v).mean << '\n';
      curves << "\n\n";
      for (int n : sample_counts) by_n << n << ',' << final_stat(a, n, &lab::measurement::kl_posterior_policy).mean << '\n';
      by_n << "\n\n";
      frontier << final_stat(a, reference_n, &lab::measurement::kl_policy_prior).mean << ','
               << final_stat(a, reference_n, &lab::measurement::expected_reward).mean << "\n\n\n";
    }
    std::ofstream var_dat(dir / "variance.dat");
    for (std::size_t e = 0; e < 4; ++e) {
      for (std::size_t k = e; k < variance.size(); k += 4)
        var_dat << variance[k].kl_proposal_posterior << ',' << variance[k].variance << '\n';
      var_dat << "\n\n";
    }
    }
    const auto series = [&](const std::string& file, const std::string& using_, const std::string& style) {
      std::string s = "plot ";
      for (std::size_t a = 0; a < arms.size(); ++a)
        s += (a ? ", '' " : "'" + (dir / file).string() + "' ") + "index " + std::to_string(a) + " using " + using_ +
             " with " + style + " title '" + arms[a].name + "'";
      return s;
    };
    bool ok = plot(dir, "kl_vs_step",
                   "set title 'KL(posterior || policy) during training, n = " + std::to_string(reference_n) +
                       "'\nset xlabel 'step'\nset ylabel 'nats'\nset logscale y\n" + series("kl_vs_step.dat", "1:2", "lines lw 2") + "\n");
    ok = plot(dir, "final_kl_vs_n",
              "set title 'final KL(posterior || policy) against samples per prompt'\nset xlabel 'n'\nset ylabel 'nats'\n"
              "set logscale xy\n" + series("final_kl_vs_n.dat", "1:2", "linespoints lw 2") + "\n") && ok;
    ok = plot(dir, "reward_vs_kl",
              "set title 'expected reward against KL(policy || prior), n = " + std::to_string(reference_n) +
                  "; the star is the posterior' noenhanced\nset xlabel 'KL(policy || prior)'\nset ylabel 'E[r] under the policy'\n" +
                  series("reward_vs_kl.dat", "1:2", "points pt 7 ps 2") +
                  ", '-' using 1:2 with points pt 3 ps 4 lc 'black' title 'posterior'\n" +
                  format(brain::exact_kl(space.log_posterior, space.log_prior).mean()) + ',' +
                  format(brain::exact_expectation(space.log_posterior, space.reward).mean()) + "\ne\n") && ok;
    ok = plot(dir, "variance",
              "set title 'gradient variance (n = " + std::to_string(variance_n) +
                  ") against KL(proposal || posterior)'\nset xlabel 'KL(q || posterior)'\nset ylabel 'E||g - Eg||^2' noenhanced\n"
                  "set xrange [0:*]\nset logscale y\nplot '" + (dir / "variance.dat").string() +
                  "' index 0 using 1:2 with linespoints lw 2 title 'BRAIn', '' index 1 using 1:2 with linespoints lw 2 "
                  "title 'no baseline', '' index 2 using 1:2 with linespoints lw 2 title 'GDC++', '' index 3 using 1:2 "
                  "with linespoints lw 2 title 'DPG'\n") && ok;
    if (ok)
      md << "\n## Plots\n\n![KL during training](kl_vs_step.png)\n\n![final KL against n](final_kl_vs_n.png)\n\n"
         << "![reward against KL to the prior](reward_vs_kl.png)\n\n![gradient variance](variance.png)\n";
    else
      std::fprintf(stderr, "exact_posterior: gnuplot missing or failed; the .gp scripts are in %s\n", dir.c_str());
  }
  std::ofstream(dir / "summary.md") << md.str();
  std::printf("%s", md.str().c_str());
  std::fprintf(stderr, "done in %.1f s; results in %s\n", elapsed(), dir.c_str());
  return 0;
}
