#pragma once
// The method table: every training arm of the paper's TL;DR experiment is one self-contained entry
// (struct arm) — how its training data are drawn (proposal), how a refresh's samples become
// training units (pairing), its loss on a minibatch, its default settings and the study tables it
// appears in. The alignment loop (stages/align.cpp), checkpoints, validation, evaluation and the
// study are written once for all of them. docs/math.md §5 and §9 describe the methods.
//
//   id                 paper             data                           loss
//   dpo                Table 1 "DPO"     the labelled preference pairs  brain::dpo_loss(β)
//   dpo_sft            Table 1, 3        n samples of the prior, n/2    brain::dpo_loss(β) on pairs ranked
//                                        consecutive pairs              by the reward model
//   rso                Table 1 "RSO"     n samples of the prior         brain::rso_select(r, β) then
//                                                                       brain::rso_pairs, brain::dpo_loss(β)
//   dpo_sft_iw         Table 3           n samples of the prior         brain::brain_loss(brain::pairwise(s))
//                                                                       (soft labels, eq. 22)
//   dpo_sft_iw_n       Table 3, §9.5     n samples of the prior         brain::brain_loss(s): BRAIn whose
//                                                                       proposal is never refreshed
//   brain              Table 1, 3        n samples of the proposal,     brain::brain_loss(s) (eqs. 6, 11, 12)
//                                        refreshed (Algorithm 1)
//   brain_no_baseline  §9.3              as brain                       surrogate of the no-baseline
//                                                                       coefficients ᾱ (eq. 7)
//   rloo               not in the paper  as brain                       brain::surrogate_loss(rloo):
//                                                                       REINFORCE leave-one-out on the
//                                                                       KL-regularised reward
//   grpo               not in the paper  as brain                       brain::surrogate_loss(grpo):
//                                                                       TRL's GRPO, kl_coef = β
//
// Every arm aims at the same target p(y|x) exp(r(x,y)/β) (eq. 23): DPO-style arms put β on the
// policy's log-ratio (DPO's parameterisation), the BRAIn family on the rewards (log g = r/β).
// RLOO maximises E[r]/β − KL(q_θ‖p), whose optimum is that target (Theorem 7.1). GRPO normalises
// its advantages per group, so β's only role there is TRL's `beta`, the weight of its k3 KL term
// (its optimum is a tempered target, not eq. 23's): the policy-gradient arms users run today, as
// comparators of BRAIn on the same samples, refresh schedule and settings sweep.

#include "tokenizer.hpp"

#include <brain/loss.hpp>  // brain::samples<torch::Tensor> (the LibTorch backend), preference_pair

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tldr {

/// Where an arm's training samples come from.
enum class proposal_rule {
  labelled_pairs,  ///< the preference pairs the reward model was trained on (offline)
  prior,           ///< the SFT model, never refreshed
  refreshed,       ///< q ← a frozen copy of q_θ after every refresh (Algorithm 1)
};

/// Settings the sweep chooses per arm: the KL coefficient β, the learning rate and the decoding
/// temperature of evaluation.
struct arm_settings {
  double beta = 0.05, lr = 2e-4, temperature = 0.7;
  friend bool operator==(const arm_settings&, const arm_settings&) = default;
};

/// One refresh's training data (Algorithm 1's buffer B): `units` rows of `width` columns. A row
/// is a prompt's group of n samples, or (labelled pairs) n/2 pairs of different prompts laid out
/// (chosen, rejected, chosen, rejected, ...).
struct refresh_buffer {
  std::int64_t units = 0, width = 0;
  std::vector<std::size_t> prompt_of;             ///< [units * width]: index of each cell's prompt in the train split
  std::vector<tokens> responses;                  ///< [units * width]
  torch::Tensor log_proposal, log_prior, reward;  ///< [units, width] float
  /// [units, width] float: the decoder's own log q of each sample (undefined for labelled pairs);
  /// log_proposal is the trainer's recomputation.
  torch::Tensor log_sampler;
};

/// The preference pairs of each unit (row) of a refresh, chosen first.
using unit_pairs = std::vector<std::vector<brain::preference_pair>>;

/// The cells (row, column) of the buffer that a minibatch of units trains on, in the order its
/// loss reads them: all `width` columns of each unit for group arms, the (chosen, rejected)
/// columns of each pair for pair arms.
struct minibatch {
  std::vector<std::int64_t> units;
  std::vector<std::int64_t> rows, cols;  ///< the cells
};

/// What one loss evaluation reports besides the loss.
struct step_report {
  torch::Tensor loss;              ///< 0-dim, differentiable with respect to log_policy
  double target_ess = 0;           ///< mean effective sample size of ᾱ (distillation group arms), else 0
  std::int64_t trained_pairs = 0;  ///< pairs in the step (pair arms), else 0
};

/// The tables of `train_tldr study` an arm is a row of.
enum class study_table {
  table1,           ///< Table 1: win-rates against gold
  bridge,           ///< Table 3: the bridge from DPO-sft to BRAIn
  ablations,        ///< §9.3 and §9.5
  policy_gradient,  ///< the PPO family on the same samples
};

/// One arm of the experiment, self-contained: how its data are drawn, how a refresh becomes
/// training units, its loss, its default settings and the tables it appears in. The alignment
/// loop (stages/align.cpp), checkpoints, validation, evaluation and the study are written once
/// for every entry; adding an arm is adding an entry (tests/custom_arm_test.cpp registers one).
struct arm {
  std::string id, label;
  std::string paper;  ///< where the paper reports it
  proposal_rule proposal = proposal_rule::refreshed;
  /// Pair arms: the pairs of each unit of a refresh's buffer (reward [units, width], the arm's β,
  /// a seed for randomised pairings). Null for group arms, which train on whole groups.
  unit_pairs (*pairing)(const torch::Tensor& reward, double beta, std::uint64_t seed) = nullptr;
  /// The loss on a minibatch: log_policy [cells] are log q_θ of its cells (plan_minibatch's
  /// order), differentiable; the rest is read from the buffer.
  step_report (*loss)(const minibatch& batch, const torch::Tensor& log_policy, const refresh_buffer& buffer,
                      double beta) = nullptr;
  /// The main command's settings (the study chooses its own on the validation split).
  arm_settings defaults;
  /// The arm whose swept settings (β, learning rate, temperature) this one uses: itself for the
  /// arms the sweep tunes, BRAIn's for its variants (bridge and ablations).
  std::string settings_from;
  std::vector<study_table> tables;

  [[nodiscard]] bool pairs() const { return pairing != nullptr; }
  [[nodiscard]] bool swept() const { return settings_from == id; }
  [[nodiscard]] bool in(study_table t) const;
};

/// Every arm, in the order tables list them.
const std::vector<arm>& all_arms();
/// The arm with this id; std::invalid_argument listing the known ids otherwise.
const arm& find_arm(std::string_view id);
/// Adds an arm to the table (after the built-in ones). Throws std::invalid_argument for an empty
/// or taken id, a missing loss, or settings taken from an unknown arm.
void register_arm(arm a);

/// A setting as run and file names show it: the shortest form that reads back as the same double
/// for the values people type (%g: 0.05, 0.0002, 1e-05).
std::string setting_text(double value);

/// One alignment run: an arm at n samples per prompt, a seed, its settings and its budget.
struct run_spec {
  std::string arm;
  std::int64_t samples = 16;
  std::uint64_t seed = 1;
  arm_settings settings;
  std::int64_t refreshes = 6;  ///< the most refreshes
  std::int64_t patience = 0;   ///< early stopping after this many validations without improvement (0: none)

  /// The run's directory name, e.g. "brain-n16-b0.05-lr0.0002-s1-r6" (with "-p3" for patience 3):
  /// the same settings give the same name, different ones never collide.
  [[nodiscard]] std::string name() const;
  /// The evaluation's name: name() plus the decoding temperature, e.g. "...-s1-t0.7".
  [[nodiscard]] std::string eval_name() const;
};

/// The pairs of a refresh for the arm: arm.pairing's, empty rows for group arms.
unit_pairs pair_units(const arm& a, const torch::Tensor& reward, double beta, std::uint64_t seed);

/// The cells a minibatch of units trains on (see minibatch).
minibatch plan_minibatch(const arm& a, const std::vector<std::int64_t>& units, std::int64_t width,
                         const unit_pairs& pairs);

/// The arm's loss on a minibatch, after checking that log_policy has one value per cell. A pair
/// minibatch without any pair (possible for RSO) gives loss = 0 with no gradient (trained_pairs = 0).
step_report minibatch_loss(const arm& a, const minibatch& batch, const torch::Tensor& log_policy,
                           const refresh_buffer& buffer, double beta);

/// The samples<Tensor> of a group minibatch: its cells regrouped as [units, width] (for losses).
brain::samples<torch::Tensor> group_samples(const minibatch& batch, const torch::Tensor& log_policy,
                                            const refresh_buffer& buffer);

}  // namespace tldr
