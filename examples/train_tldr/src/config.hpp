#pragma once
// Every setting of the pipeline, with the defaults of the README's demo (about 20 minutes on two
// cores). main.cpp binds each field to a command-line option and to the config file (CLI11: TOML
// or INI, flat keys named like the options, e.g. `sft-steps = 1200` ≡ --sft-steps 1200).

#include "data.hpp"
#include "model.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>

namespace tldr {

struct sft_config {
  std::int64_t steps = 800, batch = 32, checkpoint_every = 100;
  double lr = 1e-3, weight_decay = 0.01;
};

struct pairs_config {
  std::int64_t train_prompts = 5000, valid_prompts = 300;
  double label_temperature = 0.03;  ///< Bradley–Terry noise of the simulated labellers, in judge-score units
  double gold_fraction = 0.25;      ///< share of pairs comparing a sample with the gold summary
};

struct rm_config {
  std::int64_t epochs = 1, batch = 32, checkpoint_every = 100;
  double lr = 6e-4, weight_decay = 0.01;
};

/// Algorithm 1 (brain-math.md §8) and its DPO-sft baseline.
struct align_config {
  std::int64_t refreshes = 6;        ///< T
  std::int64_t prompts = 64;         ///< m per refresh
  std::int64_t samples = 16;         ///< n per prompt
  std::int64_t epochs = 1;           ///< passes over the refresh's groups: K = epochs * m / groups_per_step
  std::int64_t groups_per_step = 8;  ///< groups (prompts) per minibatch
  double lr = 2e-4, clip = 1.0;
  /// The KL coefficient of both methods: BRAIn's Bradley–Terry goodness log g = r / beta (eq. 21)
  /// and DPO's beta, so that both aim at the same target p(y|x) exp(r(x,y) / beta) (eq. 23).
  /// 0.05: both methods' best validation win-rate was higher than at 0.1 (docs/train_tldr.md).
  double beta = 0.05;
  std::int64_t validate_every = 1;   ///< refreshes between validations
};

struct eval_config {
  std::int64_t valid_prompts = 200;  ///< per validation during alignment
  std::int64_t test_prompts = 0;     ///< 0: the whole test split
  std::int64_t bootstrap = 2000;
  /// Decoding of the validation and test samples (0: greedy). 0.7: greedy decoding of these small
  /// models loops ("s for the s for the s"), and temperature 1 adds junk (docs/train_tldr.md).
  double temperature = 0.7;
};

struct config {
  std::filesystem::path workdir = "runs/tldr";
  std::uint64_t seed = 1;
  int threads = 2;
  // Data: Debian's package descriptions by default, or real TL;DR JSONL files.
  dataset_options data;
  std::filesystem::path train_jsonl, valid_jsonl, test_jsonl;
  std::filesystem::path apt_lists = "/var/lib/apt/lists";
  std::filesystem::path tokenizer_model;  ///< an existing SentencePiece model instead of training one
  int vocab = 2000;
  std::int64_t max_prompt_tokens = 96, max_response_tokens = 24;
  gpt_config model;
  sft_config sft;
  pairs_config pairs;
  rm_config rm;
  align_config align;
  eval_config eval;
};

nlohmann::json to_json(const config&);

}  // namespace tldr
