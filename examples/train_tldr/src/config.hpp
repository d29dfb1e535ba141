#pragma once
// Every setting of the pipeline, with the defaults of the main command (scripts/train-tldr, about
// 20 minutes on two cores). main.cpp binds each field to a command-line option and to the config
// file (CLI11: TOML or INI, flat keys named like the options, e.g. `sft-steps = 1200`).

#include "arms.hpp"
#include "data.hpp"
#include "model.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace tldr {

struct sft_config {
  std::int64_t steps = 800, batch = 32, checkpoint_every = 100;
  double lr = 1e-3, weight_decay = 0.01;
};

/// The simulated labellers: per prompt, k SFT samples (for a share of prompts one of them replaced by
/// the gold summary), ranked by the oracle's scores with Plackett–Luce noise.
struct pairs_config {
  std::int64_t train_prompts = 5000, valid_prompts = 400;
  std::int64_t responses = 4;       ///< k per prompt: k(k-1)/2 comparisons
  double label_temperature = 0.03;  ///< Bradley–Terry noise of each comparison, in oracle-score units
  double gold_fraction = 0.0;  ///< share of prompts whose last response is the gold summary (docs/train_tldr.md: why 0)
  std::int64_t chunk_prompts = 256;  ///< prompts per resumable chunk
};

struct rm_config {
  std::int64_t epochs = 1, batch = 16 /* prompts, each with its k responses */, checkpoint_every = 100;
  double lr = 6e-4, weight_decay = 0.01;
};

/// Algorithm 1 (docs/math.md §8), shared by every arm.
struct align_config {
  std::int64_t refreshes = 6;        ///< T (the most, with patience)
  std::int64_t prompts = 64;         ///< m per refresh
  std::int64_t samples = 16;         ///< n per prompt (the paper's is 32: see the n sweep)
  std::int64_t epochs = 1;           ///< passes over each refresh's units: K = epochs * m / groups_per_step
  std::int64_t groups_per_step = 8;  ///< units (prompts) per minibatch
  double clip = 1.0;
  std::int64_t validate_every = 1;  ///< refreshes between validations
  /// Early stopping: stop once this many validations in a row did not improve the best validation
  /// reward (0: train all `refreshes`).
  std::int64_t patience = 0;
  /// The arms the main command trains (Table 1's rows), in the order they start: longest first,
  /// so that two workers finish at about the same time (RSO, which keeps few pairs, is quickest).
  std::vector<std::string> arms{"brain", "dpo_sft", "dpo", "rso"};
  /// β, learning rate and decoding temperature per swept arm id. Defaults: each arm's entry
  /// (arm::defaults); the study chooses its own on the validation split.
  std::map<std::string, arm_settings> settings = default_arm_settings();
  /// The decoding temperature of the SFT model's test summaries.
  double sft_temperature = 0.5;

  /// The swept arms' defaults (arm::defaults) by id.
  static std::map<std::string, arm_settings> default_arm_settings();
  /// An arm's settings: those of the arm it takes them from (arm::settings_from).
  [[nodiscard]] arm_settings settings_of(const std::string& arm_id) const;
};

struct eval_config {
  std::int64_t valid_prompts = 200;  ///< per validation during alignment
  std::int64_t test_prompts = 0;     ///< 0: the whole test split
  std::int64_t bootstrap = 2000;
  /// Decoding of the validation samples that pick each run's best checkpoint (the study then
  /// chooses each arm's test temperature on validation).
  double valid_temperature = 0.7;
};

/// `train_tldr study` (docs/train_tldr.md, "The protocol"): the sweep on the validation split with
/// the reward model, then every row with fresh seeds, evaluated on the test split with the oracle.
struct study_config {
  std::int64_t seeds = 6;        ///< seeds of the rows in a primary comparison (first_seed, first_seed + 1, ...)
  std::int64_t other_seeds = 3;  ///< seeds of the other rows (DPO, RSO)
  std::uint64_t first_seed = 1;
  std::uint64_t sweep_seed = 1001;  ///< the sweep's one seed: never a study seed
  /// The sweep per swept arm: β over `betas` at the middle learning rate, then the learning rate
  /// over `lrs` at the chosen β; a choice on an edge extends its axis by the grid's end ratio until
  /// it is interior, the limit is passed, or the arm's trial budget is spent.
  std::vector<double> betas{0.05, 0.1, 0.2};
  double beta_min = 0.01, beta_max = 2.0;
  std::vector<double> lrs{1e-4, 2e-4, 4e-4};
  double lr_min = 2.5e-5, lr_max = 1.6e-3;
  std::int64_t trials = 9;  ///< the trial budget of every swept arm (its β and learning-rate runs)
  std::vector<double> temperatures{0.1, 0.3, 0.5, 0.7, 1.0};  ///< decoding, chosen by the reward model on validation
  /// The pre-registered comparisons, "ours:theirs" by row id (an arm, or "arm@other" for an arm at
  /// another arm's settings); their verdicts use a Bonferroni-corrected level.
  std::vector<std::string> primaries{"brain:dpo_sft",
                                     "brain:rloo",
                                     "brain:grpo",
                                     "brain:brain_no_baseline",
                                     "brain:dpo_sft_iw_n",
                                     "dpo_sft_iw:dpo_sft@brain",
                                     "dpo_sft_iw@dpo_sft:dpo_sft",
                                     "dpo_sft_iw_n:dpo_sft_iw"};
  std::vector<std::string> secondaries{"brain:dpo", "brain:rso", "brain:sft"};  ///< reported at 95%, no correction
  double margin = 0.01;  ///< verdict "level": the difference's interval inside ±margin (oracle score)
  std::vector<std::int64_t> samples{4, 8, 16, 32};  ///< the n sweep (§9.4), for BRAIn and DPO-sft
  std::int64_t samples_seeds = 1;                   ///< seeds of the n sweep's extra runs
  std::int64_t curve_seeds = 3;                     ///< seeds whose every checkpoint is evaluated for the curves
  std::int64_t curve_prompts = 256;                 ///< test prompts of each curve point
  std::int64_t refreshes = 16;  ///< the most refreshes of a study run (align-refreshes is the main command's)
  std::int64_t patience = 3;    ///< a study run stops after this many validations without improvement
};

/// The evaluation's LLM judge (src/llm_judge.hpp, docs/train_tldr.md): "oracle" (the default)
/// reports the reward model and the oracle only; "llm" also asks an OpenAI-compatible server at
/// `url` to judge every summary against gold with the paper's prompt, both orders.
enum class judge_kind { oracle, llm };
struct judge_config {
  judge_kind kind = judge_kind::oracle;
  std::string url;                 ///< e.g. http://127.0.0.1:8080 (POST {url}/v1/chat/completions)
  std::string model;               ///< the server's model name, part of every cache key
  double connect_timeout = 10;     ///< seconds
  double timeout = 300;            ///< seconds to wait for a reply (read timeout)
  std::int64_t retries = 4;        ///< extra attempts after timeouts, connection errors, 429, 5xx, malformed answers
  double backoff = 2;              ///< seconds before the first retry, doubling after each (at most 60)
  std::int64_t max_tokens = 1024;  ///< the reply's limit: room for the explanation before the verdict
  std::int64_t parallel = 4;       ///< requests at once
};

struct config {
  std::filesystem::path workdir = "runs/tldr";
  std::uint64_t seed = 1;
  int threads = 2;  ///< LibTorch threads of the shared stages (data to reward model)
  int jobs = 0;     ///< alignment and evaluation runs at once, each single-threaded (0: threads)
  // Data: Debian's package descriptions by default, or real TL;DR JSONL files.
  dataset_options data;
  std::filesystem::path train_jsonl, valid_jsonl, test_jsonl;
  /// Debian's descriptions come from the snapshot data_snapshot (empty: default_snapshot(), the
  /// repository's), or, when apt_lists names a folder, from the Translation-en lists in it.
  std::filesystem::path data_snapshot, apt_lists;
  std::filesystem::path tokenizer_model;  ///< an existing SentencePiece model instead of training one
  /// A Hugging Face model folder (config.json, model.safetensors, tokenizer.json): its tokenizer
  /// replaces SentencePiece, its config the model-* settings, and SFT starts from its weights.
  std::filesystem::path model_dir;
  std::string device = "cpu";  ///< where models and their tensors live: cpu, cuda or cuda:N
  int vocab = 2000;
  std::int64_t max_prompt_tokens = 96, max_response_tokens = 24;
  gpt_config model;
  sft_config sft;
  pairs_config pairs;
  rm_config rm;
  align_config align;
  eval_config eval;
  study_config study;
  judge_config judge;

  /// Throws std::invalid_argument naming the first inconsistent setting.
  void validate() const;
  /// The tokenizer of the work directory: tokenizer/tokenizer.json with a model folder, else
  /// tokenizer/spm.model.
  [[nodiscard]] std::filesystem::path tokenizer_file() const;
};

nlohmann::json to_json(const config&);

}  // namespace tldr
