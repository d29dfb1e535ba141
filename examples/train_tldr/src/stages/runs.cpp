// Worker tasks and the many-run helpers of the commands (stages/runs.hpp).

#include "runs.hpp"

#include "checkpoint.hpp"
#include "fail.hpp"
#include "jobs.hpp"
#include "llm_judge.hpp"
#include "progress.hpp"
#include "ranks.hpp"

#include <array>
#include <utility>

namespace tldr {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::array<std::pair<task_kind, const char*>, 3> task_names{
    {{task_kind::align, "align"}, {task_kind::evaluate, "evaluate"}, {task_kind::temperature, "temperature"}}};

job worker_job(const std::string& name, const json& task, const fs::path& self_config) {
  return {name, {"--config", self_config.string(), "--worker-task", task.dump()}};
}

int parallel_jobs(const config& c) { return c.jobs > 0 ? c.jobs : c.threads; }

/// The runs as worker processes, --jobs at once. One at a time, and data parallel, they run one
/// after another in this process (data parallel: each spread over the ranks; a worker per rank
/// would need a group per run): a worker would only add its start, about a second of loading
/// LibTorch, to runs that take about as long in the miniature pipeline.
void run_all(run_context& ctx, const std::vector<job>& jobs, spdlog::logger& log) {
  const int parallel = parallel_jobs(ctx.settings());
  if (ranks().world() == 1 && parallel > 1) return run_jobs(jobs, parallel, ctx.path("logs"), log);
  for (const auto& j : jobs) {
    log.info("{}: {}", j.name, ranks().world() == 1 ? "in this process" : fmt::format("on {} ranks", ranks().world()));
    const std::string sealed = ctx.sealed();  // run_task seals the oracle for selection tasks
    run_task(ctx, json::parse(j.args.back()));
    ctx.seal_oracle(sealed);
  }
}

}  // namespace

const char* task_name(task_kind k) {
  for (const auto& [kind, name] : task_names)
    if (kind == k) return name;
  return "?";
}

task_kind task_of(const std::string& name) {
  std::string known;
  for (const auto& [kind, n] : task_names) {
    if (name == n) return kind;
    known += (known.empty() ? "" : ", ") + std::string(n);
  }
  fail("worker: unknown task '", name, "' (known: ", known, ")");
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

evaluation evaluation_of(const run_context& ctx, const run_spec& r) {
  return {r.eval_name(), run_dir(ctx, r) / "best.pt", r.settings.temperature, r.seed};
}

evaluation sft_evaluation(const run_context& ctx, double temperature, std::uint64_t seed) {
  return {"sft-t" + setting_text(temperature) + "-s" + std::to_string(seed), ctx.path("sft/model.pt"), temperature,
          seed};
}

void align_all(run_context& ctx, const std::vector<run_spec>& runs, const fs::path& self_config, spdlog::logger& log) {
  std::vector<job> jobs;
  for (const auto& r : runs) {
    if (main_has(run_dir(ctx, r) / "history.json")) continue;
    jobs.push_back(worker_job(r.name(),
                              {{"task", task_name(task_kind::align)},
                               {"arm", r.arm},
                               {"samples", r.samples},
                               {"seed", r.seed},
                               {"beta", r.settings.beta},
                               {"lr", r.settings.lr},
                               {"refreshes", r.refreshes},
                               {"patience", r.patience}},
                              self_config));
  }
  if (!jobs.empty()) log.info("alignment: {} run(s), {} at a time", jobs.size(), parallel_jobs(ctx.settings()));
  run_all(ctx, jobs, log);
}

void evaluate_all(run_context& ctx, const std::vector<evaluation>& evals, const fs::path& self_config,
                  spdlog::logger& log) {
  evaluate_gold(ctx);
  std::vector<job> jobs;
  for (const auto& e : evals) {
    if (main_has(ctx.path("eval/" + e.name + ".jsonl"))) continue;
    jobs.push_back(worker_job("eval-" + e.name,
                              {{"task", task_name(task_kind::evaluate)},
                               {"name", e.name},
                               {"model", e.model.string()},
                               {"temperature", e.temperature},
                               {"seed", e.seed},
                               {"prompts", e.prompts}},
                              self_config));
  }
  if (!jobs.empty()) log.info("evaluation: {} model(s) on the test split", jobs.size());
  run_all(ctx, jobs, log);
  if (ctx.settings().judge.kind == judge_kind::llm && ranks().is_main()) {  // after the workers: one cache
    std::vector<std::string> names;
    for (const auto& e : evals)
      if (e.prompts == 0) names.push_back(e.name);
    judge_evaluations(ctx, names);
  }
  ranks().barrier();
}

std::vector<double> validate_temperatures(run_context& ctx, const std::vector<temperature_trial>& trials,
                                          std::uint64_t seed, const fs::path& self_config, spdlog::logger& log) {
  std::vector<job> jobs;
  for (const auto& t : trials)
    if (!main_has(ctx.path("sweep/temperature/" + t.name + ".json")))
      jobs.push_back(worker_job("valid-" + t.name,
                                {{"task", task_name(task_kind::temperature)},
                                 {"name", t.name},
                                 {"model", t.model.string()},
                                 {"temperature", t.temperature},
                                 {"seed", seed}},
                                self_config));
  run_all(ctx, jobs, log);
  std::vector<double> out;
  for (const auto& t : trials)
    out.push_back(
        json::parse(read_text(ctx.path("sweep/temperature/" + t.name + ".json"))).at("rm_mean").get<double>());
  return out;
}

void run_task(run_context& ctx, const json& j) {
  switch (task_of(j.at("task").get<std::string>())) {
    case task_kind::align:
      ctx.seal_oracle("an alignment run (its validation and checkpoint choice)");
      align(ctx, run_spec{j.at("arm"),
                          j.at("samples"),
                          j.at("seed"),
                          {j.at("beta"), j.at("lr"), 0.0},
                          j.at("refreshes"),
                          j.at("patience")});
      return;
    case task_kind::evaluate:
      evaluate_model(ctx, j.at("name"), j.at("model").get<std::string>(), j.at("temperature"), j.at("seed"),
                     j.value("prompts", std::size_t{0}));
      return;
    case task_kind::temperature:
      ctx.seal_oracle("the choice of a decoding temperature");
      (void)validate_temperature(ctx, j.at("name"), j.at("model").get<std::string>(), j.at("temperature"),
                                 j.at("seed"));
      return;
  }
}

void run_worker(const config& settings, const std::string& task, std::shared_ptr<spdlog::logger> log) {
  run_context ctx(settings, log, /*write_config=*/false);
  run_task(ctx, json::parse(task));
}

}  // namespace tldr
