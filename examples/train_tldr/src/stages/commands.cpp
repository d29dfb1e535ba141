// The commands but the study (stages/study.cpp): the shared stages, the main one (Table 1's analog
// from one seed) and export.

#include "checkpoint.hpp"
#include "fail.hpp"
#include "hf_model.hpp"
#include "ranks.hpp"
#include "runs.hpp"

#include <spdlog/fmt/fmt.h>

#include <array>
#include <memory>
#include <utility>

namespace tldr {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
constexpr std::array<std::pair<shared_stage, const char*>, 5> shared_stage_names{
    {{shared_stage::data, "data"},
     {shared_stage::tokenizer, "tokenizer"},
     {shared_stage::sft, "sft"},
     {shared_stage::pairs, "pairs"},
     {shared_stage::rm, "rm"}}};
}  // namespace

std::optional<shared_stage> shared_stage_of(std::string_view name) {
  for (const auto& [stage, n] : shared_stage_names)
    if (name == n) return stage;
  return std::nullopt;
}

std::unique_ptr<run_context> run_shared_stages(const config& settings, std::shared_ptr<spdlog::logger> log,
                                               shared_stage until) {
  const auto wanted = [&](shared_stage s) { return static_cast<int>(s) <= static_cast<int>(until); };
  // Data parallel: rank 0 alone prepares the data and the tokenizer; the others wait, then read.
  if (ranks().is_main()) timed(*log, "data", [&] { prepare_data(settings, *log); });
  ranks().barrier();
  if (!wanted(shared_stage::tokenizer)) return nullptr;
  if (ranks().is_main()) timed(*log, "tokenizer", [&] { prepare_tokenizer(settings, *log); });
  ranks().barrier();
  auto ctx = std::make_unique<run_context>(settings, log);
  if (wanted(shared_stage::sft)) timed(*log, "sft", [&] { train_sft(*ctx); });
  if (wanted(shared_stage::pairs)) timed(*log, "pairs", [&] { make_pairs(*ctx); });
  if (wanted(shared_stage::rm)) timed(*log, "rm", [&] { train_reward_model(*ctx); });
  return ctx;
}

std::string run_main(const config& settings, const fs::path& self_config, std::shared_ptr<spdlog::logger> log) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto ctx = run_shared_stages(settings, log);
  const auto& c = ctx->settings();
  std::vector<run_spec> runs;
  for (const auto& id : c.align.arms)
    runs.push_back({id, c.align.samples, c.seed, c.align.settings_of(id), c.align.refreshes, c.align.patience});
  ctx->seal_oracle("the main command's alignment (validation and checkpoint choice)");
  timed(*log, "align", [&] { align_all(*ctx, runs, self_config, *log); });
  ctx->seal_oracle("");
  const double sft_t = c.align.sft_temperature;
  std::vector<evaluation> evals{sft_evaluation(*ctx, sft_t, c.seed)};
  std::vector<table_row> rows{{"sft", "SFT", {evals.front().name}}};
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
      "Test split, {} prompts; one seed ({}); n = {} samples per prompt; each run's checkpoint chosen by the reward "
      "model on the validation split. Win-rates against the gold summary (ties half) with 95% bootstrap intervals "
      "over prompts (one seed: no seed noise in them); oracle: the experiment's ground-truth scorer "
      "(docs/oracle.md); KL from samples at temperature 1.\n\n{}\n{}",
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
    fail(
        "export: this run's tokenizer is a SentencePiece model; a Hugging Face folder needs the tokenizer.json of a "
        "run started with --model-dir");
  Gpt model(c.model);
  load_model(checkpoint, *model);
  if (ranks().is_main()) save_hf_model(model, folder, c.tokenizer_file(), ctx.tok().eos_id());
  ranks().barrier();
}

}  // namespace tldr
