#pragma once
// The run context: everything the stages after the tokenizer share, built once and never changed
// afterwards — the resolved settings (written to config.json only once resolved), the tokenizer,
// the oracle, the encoded splits and the log.

#include "config.hpp"
#include "oracle.hpp"
#include "sampler.hpp"
#include "tokenizer.hpp"

#include <spdlog/logger.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tldr {

/// A prompt with its gold summary, as text and tokens.
struct encoded_example {
  std::string id, post, gold_text;
  tokens prompt, gold;
};

/// The log of a work directory: the console and <workdir>/<file> (data-parallel ranks other than 0:
/// <workdir>/logs/rank-R.log alone).
std::shared_ptr<spdlog::logger> open_log(const std::filesystem::path& workdir,
                                         const std::string& file = "train_tldr.log");

class run_context {
 public:
  /// Loads the tokenizer and the splits of a work directory whose data and tokenizer stages are
  /// done, resolves the settings (the model's vocabulary is the tokenizer's), builds the oracle on
  /// the training split, then writes config.json (warning when it differs from an existing one:
  /// cached stages are kept as they are). Worker processes pass write_config = false.
  run_context(config settings, std::shared_ptr<spdlog::logger> log, bool write_config = true);

  [[nodiscard]] const config& settings() const { return cfg_; }
  [[nodiscard]] const tokenizer& tok() const { return *tok_; }
  /// The experiment's true reward. Throws std::logic_error while the oracle is sealed: the
  /// study's selection (sweep, alignment runs, temperature choice) must see the reward model only.
  [[nodiscard]] const class oracle& oracle() const;
  /// Seals the oracle (`why` names the phase for the error) or, with an empty `why`, unseals it.
  void seal_oracle(std::string why) { sealed_ = std::move(why); }
  /// Why the oracle is sealed now ("" when it is not).
  [[nodiscard]] const std::string& sealed() const { return sealed_; }
  [[nodiscard]] spdlog::logger& log() const { return *log_; }
  [[nodiscard]] std::filesystem::path path(const std::string& relative) const { return cfg_.workdir / relative; }
  /// n samples per prompt of at most max-response-tokens at `temperature` (0: greedy), ending at eos.
  [[nodiscard]] sampling_options decoding(std::int64_t samples_per_prompt, double temperature) const;

  [[nodiscard]] const std::vector<encoded_example>& train() const { return train_; }
  [[nodiscard]] const std::vector<encoded_example>& valid() const { return valid_; }
  [[nodiscard]] const std::vector<encoded_example>& test() const { return test_; }

  /// The prompts and gold summaries of examples [0, count) of a split, as the models take them.
  [[nodiscard]] static std::vector<tokens> prompts_of(const std::vector<encoded_example>& split, std::size_t count);
  [[nodiscard]] static std::vector<tokens> golds_of(const std::vector<encoded_example>& split, std::size_t count);

 private:
  config cfg_;
  std::shared_ptr<spdlog::logger> log_;
  std::optional<tokenizer> tok_;
  std::optional<class oracle> oracle_;
  std::string sealed_;  // why the oracle may not be used now; empty: it may
  std::vector<encoded_example> train_, valid_, test_;
};

}  // namespace tldr
