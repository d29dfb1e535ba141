#pragma once
// The stages of the experiment, each cached in the work directory and skipped when its output
// exists; long ones checkpoint atomically and resume where a killed run stopped:
//
//   data → tokenizer → sft → pairs → rm → align (one run per arm, n and seed) → evaluate → report
//
// The shared stages (data to rm) run once per work directory; alignment and evaluation runs are
// independent of each other and run as single-threaded worker processes (src/jobs.hpp), so their
// results do not depend on how many run at once.

#include "arms.hpp"
#include "context.hpp"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tldr {

// ---- shared stages (stages/data.cpp, sft.cpp, pairs.cpp, reward_model.cpp) ------------------

void prepare_data(const config& settings, spdlog::logger& log);  ///< data/{train,valid,test}.jsonl
/// tokenizer/spm.model, or tokenizer/tokenizer.json copied from --model-dir.
void prepare_tokenizer(const config& settings, spdlog::logger& log);
void train_sft(const run_context& ctx);           ///< sft/model.pt
void make_pairs(const run_context& ctx);          ///< pairs/{train,valid}.jsonl: rankings
void train_reward_model(const run_context& ctx);  ///< rm/model.pt

/// One prompt's responses as the simulated labeller ranked them: k responses, so that every pair of
/// them is a comparison (InstructGPT's K-way rankings, which give k(k-1)/2 comparisons for k
/// forward passes of the reward model).
struct ranking_record {
  std::size_t index = 0;           ///< the prompt's index in its split
  std::vector<tokens> responses;   ///< k
  std::vector<double> oracle;      ///< each response's noiseless oracle score
  std::vector<std::size_t> order;  ///< the labeller's ranking, best first
  std::int64_t gold = -1;          ///< the response that is the gold summary (-1: none)
};
std::vector<ranking_record> read_rankings(const std::filesystem::path& file);

/// A labelled comparison: the prompt's index in its split and the two responses.
struct preference_record {
  std::size_t index = 0;
  tokens chosen, rejected;
  double oracle_chosen = 0, oracle_rejected = 0;  ///< noiseless oracle scores
  bool against_gold = false;                      ///< one side is the gold summary
};
/// The k(k-1)/2 comparisons of a ranking, chosen = ranked higher, in ranking order.
std::vector<preference_record> pairs_of(const ranking_record& r);
/// The labeller's ranking of responses with these oracle scores: descending score / temperature +
/// Gumbel(0, 1) noise (Plackett–Luce), so that each pair's order follows Bradley–Terry,
/// P(i above j) = σ((s_i - s_j) / temperature) (eq. 16's model). Ties of the noisy keys go to the
/// lower index.
std::vector<std::size_t> noisy_ranking(const std::vector<double>& scores, double temperature, std::uint64_t seed);

// ---- alignment (stages/align.cpp) -----------------------------------------------------------

/// One validation of an alignment run: the policy after `refresh` refreshes (0: the SFT model),
/// measured with the reward model only (the oracle is for the test split).
struct validation_point {
  std::int64_t refresh = 0, step = 0;
  double rm_mean = 0;  ///< mean reward-model score of one sample per validation prompt: the selection metric
  double rm_win = 0;   ///< win-rate against the gold summary under the reward model (ties half)
  double words = 0;
  double kl = 0;                    ///< KL(policy ‖ SFT) estimated from samples at temperature 1
  double loss = 0, target_ess = 0;  ///< means over the refresh's steps (0 before training)
  std::int64_t skipped_steps = 0;   ///< minibatches without any pair (RSO)
  /// The refresh's sampler mismatch (rollout_report): mean |log q - log mu| of the decoder's log-probs
  /// against the recomputed ones, and the share the default correction masked; -1: not sampled. Logged,
  /// not saved in history.json.
  double sampler_abs_log_ratio = -1, sampler_masked = 0;
};

/// Algorithm 1 for one run: runs/<run.name()>/{best.pt, history.json, checkpoints/refresh-R.pt},
/// best.pt the checkpoint with the highest validation rm_mean among the refreshes (the SFT model
/// at refresh 0 is validated, not a candidate); stops after align.refreshes refreshes, or earlier
/// once align.patience validations in a row brought no improvement. Resumes from runs/<name>/state.pt.
void align(const run_context& ctx, const run_spec& run);
std::filesystem::path run_dir(const run_context& ctx, const run_spec& run);
std::vector<validation_point> read_history(const std::filesystem::path& file);

// ---- evaluation (stages/evaluate.cpp) --------------------------------------------------------

/// Per test prompt: the gold summary's scores (eval/gold.jsonl).
void evaluate_gold(const run_context& ctx);
/// One summary per test prompt (the first `prompts` ones; 0: all) from `model_file` at `temperature`
/// (sampling seed `seed`), scored by the reward model, the oracle, ROUGE-L and chrF against gold,
/// plus a temperature-1 sample's log π − log p_SFT (the KL estimate): eval/<name>.jsonl.
void evaluate_model(const run_context& ctx, const std::string& name, const std::filesystem::path& model_file,
                    double temperature, std::uint64_t seed, std::size_t prompts = 0);
/// The mean reward-model score of one sample per validation prompt (the eval-valid-prompts first
/// ones) at `temperature`: the study's temperature choice, cached in sweep/temperature/<name>.json.
double validate_temperature(const run_context& ctx, const std::string& name, const std::filesystem::path& model_file,
                            double temperature, std::uint64_t seed);

/// What an evaluation file holds, per test prompt (rouge_l, chrf and kl are empty for gold).
struct eval_columns {
  std::vector<double> rm, oracle, words, rouge_l, chrf, kl;
};
eval_columns read_eval(const std::filesystem::path& file);

// ---- report (stages/report.cpp) ----------------------------------------------------------------

/// A row of a results table: a model and its evaluation names (eval/<name>.jsonl), one per seed.
struct table_row {
  std::string id, label;
  std::vector<std::string> evals;
};
/// Head to head: row `ours` against row `theirs` on the same prompts, seed by seed (their evals
/// paired by position), as in Table 2.
struct matchup {
  std::string ours, theirs;
};
/// Per row and metric: the per-seed means, their mean and standard deviation, and for the
/// a 95% hierarchical bootstrap interval (seeds resampled, then prompts within seeds); per matchup:
/// win / tie / loss under the oracle and the reward model, per seed and over seeds.
nlohmann::json summarize(const run_context& ctx, const std::vector<table_row>& rows,
                         const std::vector<matchup>& matchups);
/// The summary's rows as a markdown table (mean ± sd over seeds, [hierarchical 95% interval]).
std::string rows_markdown(const nlohmann::json& summary);
/// The summary's matchups as a markdown table.
std::string matchups_markdown(const nlohmann::json& summary);
/// A PNG of mean oracle score against KL(policy ‖ SFT), a point per row and seed (gnuplot; a
/// warning and no file when gnuplot is missing).
void plot_frontier(const nlohmann::json& summary, const std::filesystem::path& png, spdlog::logger& log);
/// `text` as a gnuplot string literal: single-quoted, a quote inside doubled ("BRAIn's settings").
std::string gnuplot_quoted(std::string_view text);
/// Writes `commands` (after gnuplot's terminal and output lines for `png`) to png's .gp file and
/// runs gnuplot on it; a warning (no exception) when gnuplot is missing or fails.
void draw_with_gnuplot(const std::string& commands, const std::filesystem::path& png, int width, int height,
                       spdlog::logger& log);

// ---- the commands (stages/commands.cpp) ----------------------------------------------------------

/// The stages every command shares, in order.
enum class shared_stage { data, tokenizer, sft, pairs, rm };
/// The stage named `name` (data, tokenizer, sft, pairs, rm), if any.
std::optional<shared_stage> shared_stage_of(std::string_view name);
/// The shared stages from data up to `until`, each skipped when done; returns the run context
/// (null when `until` is data).
std::unique_ptr<run_context> run_shared_stages(const config& settings, std::shared_ptr<spdlog::logger> log,
                                               shared_stage until = shared_stage::rm);
/// The main command: the shared stages, the arms of settings.align.arms at settings.seed, their
/// evaluation and SFT's, then the table (Table 1's analog); returns the report's markdown.
std::string run_main(const config& settings, const std::filesystem::path& self_config,
                     std::shared_ptr<spdlog::logger> log);
/// `train_tldr study` (stages/study.cpp; docs/train_tldr.md, "The protocol"): the pre-registration,
/// the sweep on the validation split with the reward model (its choice is written to
/// sweep/choice.json before any test number exists), then every row with fresh seeds, evaluated on
/// the test split; returns the report's markdown.
std::string run_study(const config& settings, const std::filesystem::path& self_config,
                      std::shared_ptr<spdlog::logger> log);
/// `train_tldr export`: a checkpoint of the run (a policy: sft/model.pt, runs/NAME/best.pt) as a
/// Hugging Face GPT-2 folder with the run's tokenizer.json (runs started from --model-dir only).
void export_model(const run_context& ctx, const std::filesystem::path& checkpoint, const std::filesystem::path& folder);
/// A worker process's task (JSON made by the commands above): "align", "evaluate" or "temperature".
void run_worker(const config& settings, const std::string& task, std::shared_ptr<spdlog::logger> log);
/// The same task in this process, with its run context (data parallel: every rank runs it).
void run_task(run_context& ctx, const nlohmann::json& task);

}  // namespace tldr
