#include "arms.hpp"

#include "fail.hpp"

#include <brain/loss.hpp>
#include <brain/surrogate.hpp>

#include <cstdio>
#include <numeric>
#include <random>

namespace tldr {

const std::vector<arm>& all_arms() {
  static const std::vector<arm> arms{
      {"dpo", "DPO", method::dpo, proposal_rule::labelled_pairs, "dpo", "Table 1"},
      {"dpo_sft", "DPO-sft", method::dpo_sft, proposal_rule::prior, "dpo_sft", "Tables 1, 3"},
      {"rso", "RSO", method::rso, proposal_rule::prior, "rso", "Table 1"},
      {"dpo_sft_iw", "DPO-sft+IW", method::soft_pairs, proposal_rule::prior, "brain", "Table 3"},
      {"dpo_sft_iw_n", "DPO-sft+IW+n", method::group_softmax, proposal_rule::prior, "brain",
       "Table 3; also BRAIn without proposal updates (§9.5)"},
      {"brain", "BRAIn", method::group_softmax, proposal_rule::refreshed, "brain", "Tables 1, 3"},
      {"brain_no_baseline", "BRAIn without baseline", method::group_no_baseline, proposal_rule::refreshed, "brain",
       "§9.3"},
      {"rloo", "RLOO", method::rloo, proposal_rule::refreshed, "rloo", "not in the paper (the PPO family)"},
      {"grpo", "GRPO", method::grpo, proposal_rule::refreshed, "grpo", "not in the paper (the PPO family)"},
  };
  return arms;
}

const arm& find_arm(std::string_view id) {
  std::string known;
  for (const auto& a : all_arms()) {
    if (a.id == id) return a;
    known += (known.empty() ? "" : ", ") + a.id;
  }
  fail("unknown arm '", id, "' (known: ", known, ")");
}

std::string setting_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string run_spec::name() const {
  return arm + "-n" + std::to_string(samples) + "-b" + setting_text(settings.beta) + "-lr" + setting_text(settings.lr) + "-s" +
         std::to_string(seed);
}

std::string run_spec::eval_name() const { return name() + "-t" + setting_text(settings.temperature); }

std::vector<std::vector<brain::preference_pair>> pair_units(method kind, const torch::Tensor& reward, double beta,
                                                            std::uint64_t seed) {
  if (reward.dim() != 2) fail("pair_units: reward has shape ", reward.sizes(), ", expected [units, width]");
  const auto units = reward.size(0), width = reward.size(1);
  std::vector<std::vector<brain::preference_pair>> out(static_cast<std::size_t>(units));
  if (kind != method::dpo && kind != method::dpo_sft && kind != method::rso) return out;
  if (width % 2 != 0 && kind != method::rso) fail("pair_units: width = ", width, " must be even to form pairs");
  const auto r = reward.to(torch::kFloat64).contiguous();
  std::vector<std::vector<brain::index>> order;
  if (kind == method::rso) {
    std::mt19937_64 rng(seed);
    order = brain::rso_select(r, beta, width, rng);
  } else {
    order.assign(static_cast<std::size_t>(units), std::vector<brain::index>(static_cast<std::size_t>(width)));
    for (auto& row : order) std::iota(row.begin(), row.end(), brain::index{0});
  }
  if (kind == method::dpo) {  // the buffer holds (chosen, rejected) already
    for (std::int64_t u = 0; u < units; ++u)
      for (std::int64_t c = 0; c + 1 < width; c += 2) out[std::size_t(u)].push_back({u, c, c + 1});
    return out;
  }
  // Consecutive samples (in acceptance order for RSO), the higher reward chosen.
  for (const auto& p : brain::rso_pairs(r, order)) out[std::size_t(p.row)].push_back(p);
  return out;
}

minibatch plan_minibatch(method kind, const std::vector<std::int64_t>& units, std::int64_t width,
                         const std::vector<std::vector<brain::preference_pair>>& pairs) {
  minibatch b;
  b.units = units;
  const bool pair_method = kind == method::dpo || kind == method::dpo_sft || kind == method::rso;
  for (const auto u : units) {
    if (pair_method) {
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

step_report minibatch_loss(method kind, const minibatch& batch, const torch::Tensor& log_policy,
                           const refresh_buffer& buffer, double beta) {
  const auto cells = static_cast<std::int64_t>(batch.rows.size());
  if (log_policy.dim() != 1 || log_policy.size(0) != cells)
    fail("minibatch_loss: log_policy has shape ", log_policy.sizes(), " but the minibatch has ", cells, " cells");
  std::vector<std::int64_t> flat(batch.rows.size());
  for (std::size_t i = 0; i < flat.size(); ++i) flat[i] = batch.rows[i] * buffer.width + batch.cols[i];
  const auto index = torch::tensor(flat, torch::kInt64).to(log_policy.device());
  const auto pick = [&](const torch::Tensor& t) { return t.reshape({-1}).index_select(0, index); };
  const auto lp = log_policy.to(torch::kFloat32);
  step_report report;
  const bool pair_method = kind == method::dpo || kind == method::dpo_sft || kind == method::rso;
  if (pair_method) {
    report.trained_pairs = cells / 2;
    if (cells == 0) {
      report.loss = torch::zeros({}, lp.options());
      return report;
    }
    const auto lp2 = lp.view({-1, 2}), l02 = pick(buffer.log_prior).view({-1, 2});
    const auto out = brain::dpo_loss(lp2.narrow(1, 0, 1), lp2.narrow(1, 1, 1), l02.narrow(1, 0, 1), l02.narrow(1, 1, 1),
                                     brain::dpo_options{.beta = beta});
    report.loss = out.loss;
    return report;
  }
  const auto groups = static_cast<std::int64_t>(batch.units.size());
  const auto shape = std::vector<std::int64_t>{groups, buffer.width};
  const brain::samples<torch::Tensor> s{.log_policy = lp.view(shape),
                                          .log_proposal = pick(buffer.log_proposal).view(shape),
                                          .log_prior = pick(buffer.log_prior).view(shape),
                                          .reward = pick(buffer.reward).view(shape)};
  const brain::bradley_terry goodness{.beta = beta};
  torch::Tensor target;
  switch (kind) {
    case method::soft_pairs: {  // eq. 22: a softmax over each pair
      const auto out = brain::brain_loss(brain::pairwise(s), goodness);
      report.loss = out.loss;
      target = out.target_weights;
      break;
    }
    case method::group_softmax: {  // eqs. 6, 11, 12
      const auto out = brain::brain_loss(s, goodness);
      report.loss = out.loss;
      target = out.target_weights;
      break;
    }
    case method::group_no_baseline: {
      // Ascent direction ∑ ᾱ_i ∇ log q_θ(y_i) (eq. 7), as the loss −∑ ᾱ_i log q_θ(y_i) / groups.
      target = brain::gradient_coefficients(s, brain::estimator::no_baseline, goodness);
      report.loss = -(target.detach() * s.log_policy).sum() / double(groups);
      break;
    }
    case method::rloo: {  // w_i = ρ_i (L_i − mean_{j≠i} L_j) / n, L = r/β + log p − log q_θ
      report.loss = brain::surrogate_loss(s, brain::estimator::rloo, goodness).loss;
      return report;
    }
    case method::grpo: {  // advantages normalised per group (r's scale drops out), k3 KL weight β
      report.loss = brain::surrogate_loss(s, brain::estimator::grpo, brain::bradley_terry{.beta = 1.0},
                                          brain::policy_gradient_options{.kl_coef = beta})
                        .loss;
      return report;
    }
    default: fail("minibatch_loss: method ", int(kind), " is not a group method");
  }
  report.target_ess = brain::effective_sample_size(target.detach()).mean().item<double>();
  return report;
}

}  // namespace tldr
