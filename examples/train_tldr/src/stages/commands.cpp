// The commands: the main one (Table 1's analog from one seed), the study (sweep on validation,
// then every arm with seeds) and the worker that runs one alignment or evaluation.

#include "checkpoint.hpp"
#include "fail.hpp"
#include "hf_model.hpp"
#include "jobs.hpp"
#include "llm_judge.hpp"
#include "progress.hpp"
#include "ranks.hpp"
#include "stages.hpp"

#include <spdlog/fmt/fmt.h>

#include <chrono>
#include <memory>
#include <span>

namespace tldr {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using clock = std::chrono::steady_clock;
double seconds_since(clock::time_point t0) { return std::chrono::duration<double>(clock::now() - t0).count(); }

template <class Stage>
void timed(spdlog::logger& log, const char* name, Stage&& stage) {
  const auto t0 = clock::now();
  stage();
  log.info("stage {} finished in {}", name, format_duration(seconds_since(t0)));
}

std::string sft_eval_name(double temperature, std::uint64_t seed) {
  return "sft-t" + setting_text(temperature) + "-s" + std::to_string(seed);
}

job worker_job(const std::string& name, const json& task, const fs::path& self_config) {
  return {name, {"--config", self_config.string(), "--worker-task", task.dump()}};
}

int parallel_jobs(const config& c) { return c.jobs > 0 ? c.jobs : c.threads; }

/// The runs as worker processes, --jobs at once; data parallel, one after another in this process,
/// each spread over the ranks (a worker per rank would need a group per run).
void run_all(const run_context& ctx, const std::vector<job>& jobs, spdlog::logger& log) {
  if (ranks().world() == 1) return run_jobs(jobs, parallel_jobs(ctx.settings()), ctx.path("logs"), log);
  for (const auto& j : jobs) {
    log.info("{}: on {} ranks", j.name, ranks().world());
    run_task(ctx, json::parse(j.args.back()));
  }
}

/// Trains the runs not trained yet, as workers.
void align_all(const run_context& ctx, const std::vector<run_spec>& runs, const fs::path& self_config,
               spdlog::logger& log) {
  std::vector<job> jobs;
  for (const auto& r : runs) {
    if (main_has(run_dir(ctx, r) / "history.json")) continue;
    jobs.push_back(worker_job(r.name(), {{"task", "align"}, {"arm", r.arm}, {"samples", r.samples}, {"seed", r.seed},
                                         {"beta", r.settings.beta}, {"lr", r.settings.lr}},
                              self_config));
  }
  if (!jobs.empty()) log.info("alignment: {} run(s), {} at a time", jobs.size(), parallel_jobs(ctx.settings()));
  run_all(ctx, jobs, log);
}

/// What an evaluation worker needs: a name, a model file, a temperature and a seed.
struct evaluation {
  std::string name;
  fs::path model;
  double temperature;
  std::uint64_t seed;
};
evaluation evaluation_of(const run_context& ctx, const run_spec& r) {
  return {r.eval_name(), run_dir(ctx, r) / "best.pt", r.settings.temperature, r.seed};
}
evaluation sft_evaluation(const run_context& ctx, double temperature, std::uint64_t seed) {
  return {sft_eval_name(temperature, seed), ctx.path("sft/model.pt"), temperature, seed};
}

void evaluate_all(const run_context& ctx, const std::vector<evaluation>& evals, const fs::path& self_config,
                  spdlog::logger& log) {
  evaluate_gold(ctx);
  std::vector<job> jobs;
  for (const auto& e : evals) {
    if (main_has(ctx.path("eval/" + e.name + ".jsonl"))) continue;
    jobs.push_back(worker_job("eval-" + e.name, {{"task", "evaluate"}, {"name", e.name}, {"model", e.model.string()},
                                                 {"temperature", e.temperature}, {"seed", e.seed}},
                              self_config));
  }
  if (!jobs.empty()) log.info("evaluation: {} model(s) on the test split", jobs.size());
  run_all(ctx, jobs, log);
  if (ctx.settings().judge.kind == "llm" && ranks().is_main()) {  // in this process, after the workers: one cache
    std::vector<std::string> names;
    for (const auto& e : evals) names.push_back(e.name);
    judge_evaluations(ctx, names);
  }
  ranks().barrier();
}

double best_validation(const run_context& ctx, const run_spec& r) {
  double best = -1e300;
  for (const auto& p : read_history(run_dir(ctx, r) / "history.json"))
    if (p.refresh > 0) best = std::max(best, p.oracle_mean);
  return best;
}

std::string sections(const std::vector<std::pair<std::string, json>>& parts) {
  std::string md;
  for (const auto& [title, summary] : parts) {
    md += "### " + title + "\n\n" + rows_markdown(summary) + "\n";
    if (summary.contains("matchups")) md += matchups_markdown(summary) + "\n";
  }
  return md;
}

/// The sweep (validation split only): every swept arm over β × learning rate at seed `seed`, the
/// best by the best checkpoint's validation oracle score; then its decoding temperature. Written
/// to sweep/choice.json, which later commands read instead of sweeping again. When the method
/// table gains an arm after the choice was written, only the new arms are swept and added: a
/// choice once written never changes.
json sweep(const run_context& ctx, const fs::path& self_config, spdlog::logger& log) {
  const auto& c = ctx.settings();
  const auto file = ctx.path("sweep/choice.json");
  json choice = main_has(file) ? json::parse(read_text(file))
                                 : json{{"seed", c.seed},
                                        {"samples", c.align.samples},
                                        {"selection", "best checkpoint's mean oracle score on the validation prompts"}};
  const auto chosen = [&](const std::string& arm) { return choice.contains("settings") && choice["settings"].contains(arm); };
  std::vector<run_spec> grid;
  for (const auto& a : all_arms())
    if (a.swept() && !chosen(a.id))
      for (double beta : c.study.betas)
        for (double lr : c.study.lrs) grid.push_back({a.id, c.align.samples, c.seed, {beta, lr, c.eval.valid_temperature}});
  if (grid.empty() && chosen("sft")) return choice;
  log.info("sweep: {} runs on the validation split", grid.size());
  align_all(ctx, grid, self_config, log);

  std::map<std::string, run_spec> best;
  for (const auto& r : grid) {
    const double v = best_validation(ctx, r);
    choice["grid"].push_back({{"arm", r.arm}, {"beta", r.settings.beta}, {"lr", r.settings.lr}, {"valid_oracle", v}});
    if (!best.contains(r.arm) || v > best_validation(ctx, best.at(r.arm))) best[r.arm] = r;
  }
  // Decoding temperature, per swept arm and for SFT, on the best checkpoint.
  std::vector<job> jobs;
  std::vector<std::tuple<std::string, fs::path, double, std::string>> trials;  // arm, model, t, name
  for (const auto& [arm, r] : best)
    for (double t : c.study.temperatures) trials.emplace_back(arm, run_dir(ctx, r) / "best.pt", t, r.name() + "-t" + setting_text(t));
  if (!chosen("sft"))
    for (double t : c.study.temperatures) trials.emplace_back("sft", ctx.path("sft/model.pt"), t, sft_eval_name(t, c.seed));
  for (const auto& [arm, model, t, name] : trials)
    if (!main_has(ctx.path("sweep/temperature/" + name + ".json")))
      jobs.push_back(worker_job("valid-" + name, {{"task", "temperature"}, {"name", name}, {"model", model.string()},
                                                  {"temperature", t}, {"seed", c.seed}},
                                self_config));
  run_all(ctx, jobs, log);
  std::map<std::string, std::pair<double, double>> best_t;  // arm → (temperature, score)
  for (const auto& [arm, model, t, name] : trials) {
    const double v = validate_temperature(ctx, name, model, t, c.seed);
    choice["temperatures"].push_back({{"arm", arm}, {"temperature", t}, {"valid_oracle", v}});
    if (!best_t.contains(arm) || v > best_t.at(arm).second) best_t[arm] = {t, v};
  }
  for (const auto& [arm, tv] : best_t) {
    json entry{{"temperature", tv.first}, {"valid_oracle", tv.second}};
    if (arm != "sft") {
      entry["beta"] = best.at(arm).settings.beta;
      entry["lr"] = best.at(arm).settings.lr;
    }
    choice["settings"][arm] = entry;
  }
  atomic_write_text(file, choice.dump(2));
  log.info("sweep: choice written to {}", file.string());
  return choice;
}

std::string sweep_markdown(const json& choice) {
  std::string md = "| arm | β | learning rate | best validation oracle score |\n|---|---|---|---|\n";
  for (const auto& g : choice.at("grid"))
    md += fmt::format("| {} | {:g} | {:g} | {:.4f} |\n", g.at("arm").get<std::string>(), g.at("beta").get<double>(),
                      g.at("lr").get<double>(), g.at("valid_oracle").get<double>());
  md += "\n| arm | temperature | validation oracle score |\n|---|---|---|\n";
  for (const auto& t : choice.at("temperatures"))
    md += fmt::format("| {} | {:g} | {:.4f} |\n", t.at("arm").get<std::string>(), t.at("temperature").get<double>(),
                      t.at("valid_oracle").get<double>());
  md += "\nChosen:\n\n| arm | β | learning rate | temperature |\n|---|---|---|---|\n";
  for (const auto& [arm, s] : choice.at("settings").items())
    md += fmt::format("| {} | {} | {} | {:g} |\n", arm, s.contains("beta") ? setting_text(s.at("beta")) : "—",
                      s.contains("lr") ? setting_text(s.at("lr")) : "—", s.at("temperature").get<double>());
  return md;
}

}  // namespace

std::unique_ptr<run_context> run_shared_stages(const config& settings, std::shared_ptr<spdlog::logger> log,
                                               const std::string& until) {
  const std::vector<std::string> order{"data", "tokenizer", "sft", "pairs", "rm"};
  const auto last = std::find(order.begin(), order.end(), until);
  if (last == order.end()) throw std::invalid_argument("run_shared_stages: unknown stage '" + until + "'");
  const auto wanted = [&](const char* stage) { return std::find(order.begin(), last + 1, stage) != last + 1; };
  // Data parallel: rank 0 alone prepares the data and the tokenizer; the others wait, then read.
  if (ranks().is_main()) timed(*log, "data", [&] { prepare_data(settings, *log); });
  ranks().barrier();
  if (!wanted("tokenizer")) return nullptr;
  if (ranks().is_main()) timed(*log, "tokenizer", [&] { prepare_tokenizer(settings, *log); });
  ranks().barrier();
  auto ctx = std::make_unique<run_context>(settings, log);
  if (wanted("sft")) timed(*log, "sft", [&] { train_sft(*ctx); });
  if (wanted("pairs")) timed(*log, "pairs", [&] { make_pairs(*ctx); });
  if (wanted("rm")) timed(*log, "rm", [&] { train_reward_model(*ctx); });
  return ctx;
}

std::string run_main(const config& settings, const fs::path& self_config, std::shared_ptr<spdlog::logger> log) {
  const auto t0 = clock::now();
  const auto ctx = run_shared_stages(settings, log);
  const auto& c = ctx->settings();
  std::vector<run_spec> runs;
  for (const auto& id : c.align.arms) runs.push_back({id, c.align.samples, c.seed, c.align.settings_of(id)});
  timed(*log, "align", [&] { align_all(*ctx, runs, self_config, *log); });
  const double sft_t = c.align.settings_of("sft").temperature;
  std::vector<evaluation> evals{sft_evaluation(*ctx, sft_t, c.seed)};
  std::vector<table_row> rows{{"sft", "SFT", {sft_eval_name(sft_t, c.seed)}}};
  std::vector<matchup> matchups;
  for (const auto& r : runs) evals.push_back(evaluation_of(*ctx, r));
  for (const auto& a : all_arms())  // rows in the method table's order, whatever order the runs went in
    for (const auto& r : runs)
      if (r.arm == a.id) rows.push_back({r.arm, a.label, {r.eval_name()}});
  for (const auto& r : rows)
    if (r.id != "brain" && std::any_of(runs.begin(), runs.end(), [](const auto& x) { return x.arm == "brain"; }))
      matchups.push_back({"brain", r.id});
  timed(*log, "evaluate", [&] { evaluate_all(*ctx, evals, self_config, *log); });
  const auto summary = summarize(*ctx, rows, matchups);
  const auto md = fmt::format(
      "Test split, {} prompts; one seed ({}); n = {} samples per prompt. Win-rates against the gold summary (ties "
      "half) with 95% bootstrap intervals; oracle: the experiment's ground-truth scorer (docs/oracle.md); KL from "
      "samples at temperature 1.\n\n{}\n{}",
      summary.at("prompts").get<std::size_t>(), c.seed, c.align.samples, rows_markdown(summary),
      matchups_markdown(summary));
  atomic_write_text(ctx->path("eval/results.json"), summary.dump(2));
  atomic_write_text(ctx->path("eval/results.md"), md);
  plot_frontier(summary, ctx->path("eval/frontier.png"), *log);
  if (!c.model_dir.empty())  // started from a Hugging Face folder: each arm's policy goes back as one
    for (const auto& r : runs) {
      export_model(*ctx, run_dir(*ctx, r) / "best.pt", ctx->path("export/" + r.name()));
      log->info("export: {} as a Hugging Face folder in {}", r.name(), ctx->path("export/" + r.name()).string());
    }
  log->info("all stages finished in {}", format_duration(seconds_since(t0)));
  return md;
}

void export_model(const run_context& ctx, const fs::path& checkpoint, const fs::path& folder) {
  const auto& c = ctx.settings();
  if (!ctx.tok().is_byte_level())
    fail("export: this run's tokenizer is a SentencePiece model; a Hugging Face folder needs the tokenizer.json of a "
         "run started with --model-dir");
  Gpt model(c.model);
  load_model(checkpoint, *model);
  if (ranks().is_main()) save_hf_model(model, folder, c.tokenizer_file(), ctx.tok().eos_id());
  ranks().barrier();
}

std::string run_study(const config& settings, const fs::path& self_config, std::shared_ptr<spdlog::logger> log) {
  const auto t0 = clock::now();
  const auto ctx = run_shared_stages(settings, log);
  const auto& c = ctx->settings();
  // 1. The sweep, on the validation split; its choice is on disk before any test number exists.
  json choice;
  timed(*log, "sweep", [&] { choice = sweep(*ctx, self_config, *log); });
  align_config chosen = c.align;
  for (const auto& [arm, s] : choice.at("settings").items())
    chosen.settings[arm] = {s.value("beta", 0.0), s.value("lr", 0.0), s.at("temperature").get<double>()};

  // 2. Every arm with seeds; BRAIn and DPO-sft over n (§9.4).
  std::vector<std::uint64_t> seeds;
  for (std::int64_t s = 0; s < c.study.seeds; ++s) seeds.push_back(c.seed + std::uint64_t(s));
  std::map<std::string, std::vector<run_spec>> by_row;  // row id → one run per seed
  std::vector<run_spec> runs;
  const auto add = [&](const std::string& row, const std::string& arm, std::int64_t n) {
    const auto count = n == c.align.samples ? seeds.size() : std::size_t(c.study.samples_seeds);
    for (auto seed : std::span(seeds).first(count)) {
      run_spec r{arm, n, seed, chosen.settings_of(arm)};
      by_row[row].push_back(r);
      runs.push_back(r);
    }
  };
  for (const auto& a : all_arms()) add(a.id, a.id, c.align.samples);
  for (const std::string arm : {"brain", "dpo_sft"})
    for (auto n : c.study.samples)
      if (n != c.align.samples) add(arm + "-n" + std::to_string(n), arm, n);
  timed(*log, "align", [&] { align_all(*ctx, runs, self_config, *log); });
  const double sft_t = chosen.settings_of("sft").temperature;
  std::vector<evaluation> evals;
  for (auto seed : seeds) evals.push_back(sft_evaluation(*ctx, sft_t, seed));
  for (const auto& r : runs) evals.push_back(evaluation_of(*ctx, r));
  timed(*log, "evaluate", [&] { evaluate_all(*ctx, evals, self_config, *log); });

  // 3. The tables.
  const auto row = [&](const std::string& id, const std::string& label) {
    table_row t{id, label, {}};
    if (id == "sft")
      for (auto seed : seeds) t.evals.push_back(sft_eval_name(sft_t, seed));
    else
      for (const auto& r : by_row.at(id)) t.evals.push_back(r.eval_name());
    return t;
  };
  const auto label = [](const std::string& id) { return find_arm(id).label; };
  const auto table1 = summarize(*ctx,
                                {row("sft", "SFT"), row("dpo", label("dpo")), row("dpo_sft", label("dpo_sft")),
                                 row("rso", label("rso")), row("brain", label("brain"))},
                                {{"brain", "dpo"}, {"brain", "dpo_sft"}, {"brain", "rso"}, {"brain", "sft"}});
  const auto bridge = summarize(*ctx,
                                {row("dpo_sft", label("dpo_sft")), row("dpo_sft_iw", label("dpo_sft_iw")),
                                 row("dpo_sft_iw_n", label("dpo_sft_iw_n")), row("brain", label("brain"))},
                                {{"dpo_sft_iw", "dpo_sft"}, {"dpo_sft_iw_n", "dpo_sft_iw"}, {"brain", "dpo_sft_iw_n"}});
  const auto policy_gradient = summarize(*ctx, {row("brain", label("brain")), row("rloo", label("rloo")), row("grpo", label("grpo"))},
                                         {{"brain", "rloo"}, {"brain", "grpo"}});
  const auto ablations = summarize(*ctx,
                                   {row("brain", label("brain")), row("brain_no_baseline", label("brain_no_baseline")),
                                    row("dpo_sft_iw_n", "BRAIn, proposal never refreshed (= DPO-sft+IW+n)")},
                                   {{"brain", "brain_no_baseline"}, {"brain", "dpo_sft_iw_n"}});
  std::vector<table_row> n_rows;
  for (const std::string arm : {"brain", "dpo_sft"})
    for (auto n : c.study.samples)
      n_rows.push_back(row(n == c.align.samples ? arm : arm + "-n" + std::to_string(n), label(arm) + ", n = " + std::to_string(n)));
  const auto n_sweep = summarize(*ctx, n_rows, {});
  std::vector<table_row> all_rows{row("sft", "SFT")};
  for (const auto& a : all_arms()) all_rows.push_back(row(a.id, a.label));
  const auto everything = summarize(*ctx, all_rows, {});
  plot_frontier(everything, ctx->path("study/frontier.png"), *log);

  // Wall time: this invocation's, and the sum over every invocation of the study in this work
  // directory (a resumed study spreads over several).
  const double wall = seconds_since(t0);
  const auto timing_file = ctx->path("study/invocations.json");
  json invocations = fs::exists(timing_file) ? json::parse(read_text(timing_file)) : json::array();
  invocations.push_back({{"seconds", wall}, {"jobs", parallel_jobs(c)}, {"threads", c.threads}});
  atomic_write_text(timing_file, invocations.dump(2));
  double total = 0;
  for (const auto& i : invocations) total += i.at("seconds").get<double>();
  const auto md = fmt::format(
      "Test split, {} prompts; seeds {}..{} (alignment and decoding; SFT and the reward model are shared); n = {} "
      "unless stated. Cells: mean ± sd over seeds [pooled 95% bootstrap interval over prompts]. Oracle: the "
      "experiment's ground-truth scorer (docs/oracle.md). Settings chosen on the validation split (sweep below) "
      "before any test number was computed. Wall time: {} over {} invocation(s) of the command (the last: {}).\n\n{}### The sweep (validation split, seed {})\n\n{}",
      table1.at("prompts").get<std::size_t>(), seeds.front(), seeds.back(), c.align.samples, format_duration(total),
      invocations.size(), format_duration(wall),
      sections({{"Table 1: win-rates against gold, and metrics the labels never saw", table1},
                {"Table 3: the bridge from DPO-sft to BRAIn", bridge},
                {"Ablations: the baseline (§9.3) and the proposal update (§9.5)", ablations},
                {"The PPO family on the same samples (not in the paper): RLOO and GRPO", policy_gradient},
                {"The n sweep (§9.4)", n_sweep}}),
      c.seed, sweep_markdown(choice));
  atomic_write_text(ctx->path("study/results.md"), md);
  atomic_write_text(ctx->path("study/results.json"),
                    json{{"table1", table1}, {"bridge", bridge}, {"ablations", ablations}, {"policy_gradient", policy_gradient},
                         {"n_sweep", n_sweep},
                         {"all", everything}, {"sweep", choice}, {"wall_seconds", total}}.dump(2));
  log->info("study finished in {}", format_duration(wall));
  return md;
}

void run_task(const run_context& ctx, const json& j) {
  const auto kind = j.at("task").get<std::string>();
  if (kind == "align") {
    align(ctx, run_spec{j.at("arm"), j.at("samples"), j.at("seed"), {j.at("beta"), j.at("lr"), 0.0}});
  } else if (kind == "evaluate") {
    evaluate_model(ctx, j.at("name"), j.at("model").get<std::string>(), j.at("temperature"), j.at("seed"));
  } else if (kind == "temperature") {
    (void)validate_temperature(ctx, j.at("name"), j.at("model").get<std::string>(), j.at("temperature"), j.at("seed"));
  } else {
    throw std::invalid_argument("worker: unknown task '" + kind + "'");
  }
}

void run_worker(const config& settings, const std::string& task, std::shared_ptr<spdlog::logger> log) {
  const run_context ctx(settings, log, /*write_config=*/false);
  run_task(ctx, json::parse(task));
}

}  // namespace tldr
