#pragma once
// What the commands share (stages/commands.cpp, stages/study.cpp): worker tasks as data, running
// them as worker processes (or on the data-parallel ranks), alignment and evaluation of many runs.

#include "stages.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace tldr {

/// What a worker process does (the JSON of --worker-task names it; see task_name).
enum class task_kind {
  align,        ///< one alignment run (the oracle sealed: selection sees the reward model only)
  evaluate,     ///< one model on the test split (oracle, reward model, ROUGE-L, chrF, KL)
  temperature,  ///< one model at one temperature on the validation split (reward model only)
};
const char* task_name(task_kind k);
/// The task named `name`; std::invalid_argument listing the known names otherwise.
task_kind task_of(const std::string& name);

/// What an evaluation worker needs: a name, a model file, a temperature, a seed and how many test
/// prompts (0: all).
struct evaluation {
  std::string name;
  std::filesystem::path model;
  double temperature;
  std::uint64_t seed;
  std::size_t prompts = 0;
};
/// A run's selected checkpoint (best.pt) at its settings' temperature, on the whole test split.
evaluation evaluation_of(const run_context& ctx, const run_spec& r);
/// The SFT model at `temperature`, sampling seed `seed`: "sft-t<T>-s<seed>".
evaluation sft_evaluation(const run_context& ctx, double temperature, std::uint64_t seed);

/// Trains the runs not trained yet, as worker processes (--jobs at once).
void align_all(run_context& ctx, const std::vector<run_spec>& runs, const std::filesystem::path& self_config,
               spdlog::logger& log);
/// Evaluates what has no eval/<name>.jsonl yet (and gold first), then the LLM judge when asked.
void evaluate_all(run_context& ctx, const std::vector<evaluation>& evals, const std::filesystem::path& self_config,
                  spdlog::logger& log);
/// The validation reward of each (model, temperature) not measured yet (sweep/temperature/<name>.json),
/// as worker processes; returns the mean reward-model score of each, in order.
struct temperature_trial {
  std::string name;
  std::filesystem::path model;
  double temperature;
};
std::vector<double> validate_temperatures(run_context& ctx, const std::vector<temperature_trial>& trials,
                                          std::uint64_t seed, const std::filesystem::path& self_config,
                                          spdlog::logger& log);

/// Seconds since t0, and a stage's wall time in the log.
double seconds_since(std::chrono::steady_clock::time_point t0);
template <class Stage>
void timed(spdlog::logger& log, const char* name, Stage&& stage) {
  const auto t0 = std::chrono::steady_clock::now();
  stage();
  log.info("stage {} finished in {}", name, format_duration(seconds_since(t0)));
}

}  // namespace tldr
