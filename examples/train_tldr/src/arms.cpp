#include "arms.hpp"

#include "fail.hpp"

#include <brain/loss.hpp>
#include <brain/surrogate.hpp>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>

namespace tldr {

namespace {

// ---- pairings -----------------------------------------------------------------------------------

std::int64_t pair_width(const torch::Tensor& reward, const char* who) {
  if (reward.dim() != 2) fail("pair_units: reward has shape ", reward.sizes(), ", expected [units, width]");
  if (reward.size(1) % 2 != 0) fail("pair_units (", who, "): width = ", reward.size(1), " must be even to form pairs");
  return reward.size(1);
}

/// Labelled pairs: the buffer holds (chosen, rejected) already.
unit_pairs labelled_pairs(const torch::Tensor& reward, double, std::uint64_t) {
  const auto width = pair_width(reward, "labelled pairs");
  unit_pairs out(static_cast<std::size_t>(reward.size(0)));
  for (std::int64_t u = 0; u < reward.size(0); ++u)
    for (std::int64_t c = 0; c + 1 < width; c += 2) out[std::size_t(u)].push_back({u, c, c + 1});
  return out;
}

/// Consecutive samples of each group in order (in acceptance order for RSO), the higher reward
/// chosen, ties to the earlier one.
unit_pairs consecutive_pairs(const torch::Tensor& reward, const std::vector<std::vector<brain::index>>& order) {
  unit_pairs out(static_cast<std::size_t>(reward.size(0)));
  for (const auto& p : brain::rso_pairs(reward.to(torch::kFloat64).contiguous(), order))
    out[std::size_t(p.row)].push_back(p);
  return out;
}

/// DPO-sft: n samples of the prior as n/2 consecutive pairs ranked by the reward model.
unit_pairs ranked_pairs(const torch::Tensor& reward, double, std::uint64_t) {
  const auto width = pair_width(reward, "ranked pairs");
  std::vector<std::vector<brain::index>> order(static_cast<std::size_t>(reward.size(0)),
                                               std::vector<brain::index>(static_cast<std::size_t>(width)));
  for (auto& row : order) std::iota(row.begin(), row.end(), brain::index{0});
  return consecutive_pairs(reward, order);
}

/// RSO: the samples RSO's rejection sampler accepts (up to width), paired in acceptance order.
unit_pairs rso_pairs(const torch::Tensor& reward, double beta, std::uint64_t seed) {
  if (reward.dim() != 2) fail("pair_units: reward has shape ", reward.sizes(), ", expected [units, width]");
  std::mt19937_64 rng(seed);
  const auto r = reward.to(torch::kFloat64).contiguous();
  return consecutive_pairs(r, brain::rso_select(r, beta, reward.size(1), rng));
}

// ---- losses -------------------------------------------------------------------------------------

/// brain::dpo_loss on the minibatch's (chosen, rejected) cells (DPO, DPO-sft, RSO).
step_report dpo_pairs_loss(const minibatch& batch, const torch::Tensor& log_policy, const refresh_buffer& buffer,
                           double beta) {
  step_report report;
  const auto cells = static_cast<std::int64_t>(batch.rows.size());
  report.trained_pairs = cells / 2;
  if (cells == 0) {
    report.loss = torch::zeros({}, log_policy.options().dtype(torch::kFloat32));
    return report;
  }
  std::vector<std::int64_t> flat(batch.rows.size());
  for (std::size_t i = 0; i < flat.size(); ++i) flat[i] = batch.rows[i] * buffer.width + batch.cols[i];
  const auto index = torch::tensor(flat, torch::kInt64).to(log_policy.device());
  const auto lp = log_policy.to(torch::kFloat32).view({-1, 2});
  const auto l0 = buffer.log_prior.reshape({-1}).index_select(0, index).view({-1, 2});
  report.loss = brain::dpo_loss(lp.narrow(1, 0, 1), lp.narrow(1, 1, 1), l0.narrow(1, 0, 1), l0.narrow(1, 1, 1),
                                brain::dpo_options{.beta = beta})
                    .loss;
  return report;
}

double mean_ess(const torch::Tensor& target_weights) {
  return brain::effective_sample_size(target_weights.detach()).mean().item<double>();
}

/// DPO-sft+IW: brain_loss on consecutive pairs of each group (soft labels σ((r_w − r_l)/β), eq. 22).
step_report soft_pairs_loss(const minibatch& batch, const torch::Tensor& log_policy, const refresh_buffer& buffer,
                            double beta) {
  const auto out =
      brain::brain_loss(brain::pairwise(group_samples(batch, log_policy, buffer)), brain::bradley_terry{.beta = beta});
  return {out.loss, mean_ess(out.target_weights), 0};
}

/// BRAIn (and DPO-sft+IW+n, its proposal never refreshed): brain_loss on the group (eqs. 6, 11, 12).
step_report group_softmax_loss(const minibatch& batch, const torch::Tensor& log_policy, const refresh_buffer& buffer,
                               double beta) {
  const auto out = brain::brain_loss(group_samples(batch, log_policy, buffer), brain::bradley_terry{.beta = beta});
  return {out.loss, mean_ess(out.target_weights), 0};
}

/// BRAIn without its baseline (§9.3): the surrogate of ∑ ᾱ_i ∇ log q_θ(y_i) (eq. 7).
step_report no_baseline_loss(const minibatch& batch, const torch::Tensor& log_policy, const refresh_buffer& buffer,
                             double beta) {
  const auto out = brain::surrogate_loss(group_samples(batch, log_policy, buffer), brain::estimator::no_baseline,
                                         brain::bradley_terry{.beta = beta});
  return {out.loss, mean_ess(out.coefficients), 0};
}

/// RLOO: w_i = ρ_i (L_i − mean_{j≠i} L_j) / n, L = r/β + log p − log q_θ.
step_report rloo_loss(const minibatch& batch, const torch::Tensor& log_policy, const refresh_buffer& buffer,
                      double beta) {
  return {brain::surrogate_loss(group_samples(batch, log_policy, buffer), brain::estimator::rloo,
                                brain::bradley_terry{.beta = beta})
              .loss,
          0, 0};
}

/// GRPO (TRL's defaults): advantages normalised per group (r's scale drops out), k3 KL weight β.
step_report grpo_loss(const minibatch& batch, const torch::Tensor& log_policy, const refresh_buffer& buffer,
                      double beta) {
  return {brain::surrogate_loss(group_samples(batch, log_policy, buffer), brain::estimator::grpo,
                                brain::bradley_terry{.beta = 1.0}, brain::policy_gradient_options{.kl_coef = beta})
              .loss,
          0, 0};
}

// ---- the table ----------------------------------------------------------------------------------

std::vector<arm> builtin_arms() {
  using t = study_table;
  // Defaults {β, learning rate, temperature}: the main command's, from the last study's choice on
  // the validation split (docs/train_tldr.md); the study chooses its own.
  return {
      {"dpo",
       "DPO",
       "Table 1",
       proposal_rule::labelled_pairs,
       labelled_pairs,
       dpo_pairs_loss,
       {0.1, 1e-4, 0.5},
       "dpo",
       {t::table1}},
      {"dpo_sft",
       "DPO-sft",
       "Tables 1, 3",
       proposal_rule::prior,
       ranked_pairs,
       dpo_pairs_loss,
       {0.05, 3e-4, 0.3},
       "dpo_sft",
       {t::table1, t::bridge}},
      {"rso", "RSO", "Table 1", proposal_rule::prior, rso_pairs, dpo_pairs_loss, {0.2, 3e-4, 0.7}, "rso", {t::table1}},
      {"dpo_sft_iw", "DPO-sft+IW", "Table 3", proposal_rule::prior, nullptr, soft_pairs_loss, {}, "brain", {t::bridge}},
      {"dpo_sft_iw_n",
       "DPO-sft+IW+n",
       "Table 3; also BRAIn without proposal updates (§9.5)",
       proposal_rule::prior,
       nullptr,
       group_softmax_loss,
       {},
       "brain",
       {t::bridge, t::ablations}},
      {"brain",
       "BRAIn",
       "Tables 1, 3",
       proposal_rule::refreshed,
       nullptr,
       group_softmax_loss,
       {0.2, 3e-4, 0.7},
       "brain",
       {t::table1, t::bridge, t::ablations, t::policy_gradient}},
      {"brain_no_baseline",
       "BRAIn without baseline",
       "§9.3",
       proposal_rule::refreshed,
       nullptr,
       no_baseline_loss,
       {},
       "brain",
       {t::ablations}},
      {"rloo",
       "RLOO",
       "not in the paper (the PPO family)",
       proposal_rule::refreshed,
       nullptr,
       rloo_loss,
       {0.2, 1e-4, 0.5},
       "rloo",
       {t::policy_gradient}},
      {"grpo",
       "GRPO",
       "not in the paper (the PPO family)",
       proposal_rule::refreshed,
       nullptr,
       grpo_loss,
       {0.05, 1e-4, 0.5},
       "grpo",
       {t::policy_gradient}},  // β: the weight of GRPO's k3 KL term (TRL's `beta`)
  };
}

std::vector<arm>& table() {
  static std::vector<arm> arms = builtin_arms();
  return arms;
}

}  // namespace

bool arm::in(study_table t) const { return std::find(tables.begin(), tables.end(), t) != tables.end(); }

const std::vector<arm>& all_arms() { return table(); }

const arm& find_arm(std::string_view id) {
  std::string known;
  for (const auto& a : all_arms()) {
    if (a.id == id) return a;
    known += (known.empty() ? "" : ", ") + a.id;
  }
  fail("unknown arm '", id, "' (known: ", known, ")");
}

void register_arm(arm a) {
  if (a.id.empty()) fail("register_arm: an arm needs an id");
  for (const auto& b : all_arms())
    if (b.id == a.id) fail("register_arm: the id '", a.id, "' is taken");
  if (a.loss == nullptr) fail("register_arm: arm '", a.id, "' has no loss");
  if (a.settings_from.empty()) a.settings_from = a.id;
  if (a.settings_from != a.id && !find_arm(a.settings_from).swept())
    fail("register_arm: arm '", a.id, "' takes its settings from '", a.settings_from, "', which the sweep skips");
  table().push_back(std::move(a));
}

std::string setting_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string run_spec::name() const {
  return arm + "-n" + std::to_string(samples) + "-b" + setting_text(settings.beta) + "-lr" + setting_text(settings.lr) +
         "-s" + std::to_string(seed) + "-r" + std::to_string(refreshes) +
         (patience > 0 ? "-p" + std::to_string(patience) : std::string());
}

std::string run_spec::eval_name() const { return name() + "-t" + setting_text(settings.temperature); }

unit_pairs pair_units(const arm& a, const torch::Tensor& reward, double beta, std::uint64_t seed) {
  if (reward.dim() != 2) fail("pair_units: reward has shape ", reward.sizes(), ", expected [units, width]");
  if (!a.pairs()) return unit_pairs(static_cast<std::size_t>(reward.size(0)));
  return a.pairing(reward, beta, seed);
}

minibatch plan_minibatch(const arm& a, const std::vector<std::int64_t>& units, std::int64_t width,
                         const unit_pairs& pairs) {
  minibatch b;
  b.units = units;
  for (const auto u : units) {
    if (a.pairs()) {
      if (u < 0 || std::size_t(u) >= pairs.size()) fail("plan_minibatch: unit ", u, " has no pairs entry");
      for (const auto& p : pairs[std::size_t(u)]) {
        b.rows.insert(b.rows.end(), {u, u});
        b.cols.insert(b.cols.end(), {p.chosen, p.rejected});
      }
    } else {
      for (std::int64_t c = 0; c < width; ++c) {
        b.rows.push_back(u);
        b.cols.push_back(c);
      }
    }
  }
  return b;
}

brain::samples<torch::Tensor> group_samples(const minibatch& batch, const torch::Tensor& log_policy,
                                            const refresh_buffer& buffer) {
  std::vector<std::int64_t> flat(batch.rows.size());
  for (std::size_t i = 0; i < flat.size(); ++i) flat[i] = batch.rows[i] * buffer.width + batch.cols[i];
  const auto index = torch::tensor(flat, torch::kInt64).to(log_policy.device());
  const auto pick = [&](const torch::Tensor& t) { return t.reshape({-1}).index_select(0, index); };
  const auto shape = std::vector<std::int64_t>{static_cast<std::int64_t>(batch.units.size()), buffer.width};
  return {.log_policy = log_policy.to(torch::kFloat32).view(shape),
          .log_proposal = pick(buffer.log_proposal).view(shape),
          .log_prior = pick(buffer.log_prior).view(shape),
          .reward = pick(buffer.reward).view(shape),
          .log_sampler = buffer.log_sampler.defined() ? pick(buffer.log_sampler).view(shape) : torch::Tensor()};
}

step_report minibatch_loss(const arm& a, const minibatch& batch, const torch::Tensor& log_policy,
                           const refresh_buffer& buffer, double beta) {
  const auto cells = static_cast<std::int64_t>(batch.rows.size());
  if (log_policy.dim() != 1 || log_policy.size(0) != cells)
    fail("minibatch_loss: log_policy has shape ", log_policy.sizes(), " but the minibatch has ", cells, " cells");
  return a.loss(batch, log_policy, buffer, beta);
}

}  // namespace tldr
