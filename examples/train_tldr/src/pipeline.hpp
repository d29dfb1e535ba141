#pragma once
// The stages of the demo, each cached in the work directory and skipped when its output exists:
//   data → tokenizer → sft → pairs → rm → align (dpo_sft, brain) → evaluate → report.
// Long stages (sft, rm, align) checkpoint atomically and resume where a killed run stopped.

#include "config.hpp"
#include "judge.hpp"
#include "model.hpp"
#include "tokenizer.hpp"

#include <spdlog/logger.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tldr {

/// A prompt with its gold summary, tokenised.
struct encoded_example {
  std::string id, post, gold_text;
  tokens prompt, gold;
};

/// One recorded validation of an alignment run (a point of the plot).
struct validation_point {
  std::int64_t refresh = 0, step = 0;
  double rm_win = 0, judge_win = 0, mean_reward = 0, mean_length = 0;
};

struct win_rate {
  double rate = 0, low = 0, high = 0;  ///< mean and 95% bootstrap interval, ties count half
};

class pipeline {
 public:
  explicit pipeline(config cfg);

  void run_all();  ///< every stage, then prints the results table
  void prepare_data();
  void prepare_tokenizer();
  void train_sft();
  void make_pairs();
  void train_reward_model();
  void align(const std::string& method);  ///< "brain" or "dpo_sft"
  void evaluate();
  [[nodiscard]] std::string results_markdown() const;

  [[nodiscard]] const config& settings() const { return cfg_; }
  [[nodiscard]] std::filesystem::path path(const std::string& relative) const { return cfg_.workdir / relative; }

 private:
  void load_data();
  Gpt load_policy(const std::filesystem::path& file);
  RewardModel load_reward_model();
  ::torch::Tensor rewards(RewardModel& rm, const std::vector<const tokens*>& prompts,
                          const std::vector<const tokens*>& responses);
  std::vector<validation_point> read_history(const std::string& method) const;

  config cfg_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<encoded_example> train_, valid_, test_;
  std::optional<tokenizer> tok_;
  std::optional<judge> judge_;
  std::vector<example> raw_train_;
};

/// Win-rate of `ours` against `theirs` per prompt (ties half) with a percentile bootstrap.
win_rate bootstrap_win_rate(const std::vector<double>& ours, const std::vector<double>& theirs, std::int64_t resamples,
                            std::uint64_t seed);

}  // namespace tldr
