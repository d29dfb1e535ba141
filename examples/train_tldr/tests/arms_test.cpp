// The method table (src/arms.hpp): each arm's pairing and loss against the formula it claims.
#include "arms.hpp"
#include "config.hpp"
#include "seeds.hpp"

#include <brain/loss.hpp>
#include <gtest/gtest.h>

#include <cmath>
#include <set>

namespace {
// The table's entry for an id.
const tldr::arm& arm(const char* id) { return tldr::find_arm(id); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no exception";
}

TEST(arms, the_table_is_consistent) {
  std::set<std::string> ids;
  for (const auto& a : tldr::all_arms()) {
    EXPECT_TRUE(ids.insert(a.id).second) << "duplicate id " << a.id;
    EXPECT_TRUE(tldr::find_arm(a.settings_from).swept()) << a.id << " takes its settings from an arm the sweep skips";
    EXPECT_EQ(a.pairs(), a.id == "dpo" || a.id == "dpo_sft" || a.id == "rso") << a.id;
    EXPECT_NE(a.loss, nullptr) << a.id;
  }
  // Table 1's columns and the bridge are all there.
  for (const char* id :
       {"dpo", "dpo_sft", "rso", "brain", "dpo_sft_iw", "dpo_sft_iw_n", "brain_no_baseline", "rloo", "grpo"})
    EXPECT_TRUE(ids.contains(id)) << id;
  EXPECT_EQ(tldr::find_arm("brain").proposal, tldr::proposal_rule::refreshed);
  EXPECT_EQ(tldr::find_arm("dpo_sft_iw_n").proposal, tldr::proposal_rule::prior);  // the only difference (§9.5)
  EXPECT_EQ(tldr::find_arm("dpo_sft_iw_n").loss, tldr::find_arm("brain").loss);
  EXPECT_NE(error_of([] { (void)tldr::find_arm("ppo"); }).find("unknown arm 'ppo' (known: dpo, dpo_sft"),
            std::string::npos);
}

TEST(arms, run_names_tell_settings_apart) {
  const tldr::run_spec a{"brain", 16, 1, {0.05, 2e-4, 0.7}};
  EXPECT_EQ(a.name(), "brain-n16-b0.05-lr0.0002-s1-r6");
  EXPECT_EQ(a.eval_name(), "brain-n16-b0.05-lr0.0002-s1-r6-t0.7");
  auto b = a;
  b.settings.beta = 0.1;
  EXPECT_NE(a.name(), b.name());
  b = a;
  b.seed = 2;
  EXPECT_NE(a.name(), b.name());
  b = a;
  b.refreshes = 16;
  EXPECT_EQ(b.name(), "brain-n16-b0.05-lr0.0002-s1-r16");
  b.patience = 3;
  EXPECT_EQ(b.name(), "brain-n16-b0.05-lr0.0002-s1-r16-p3");  // early stopping changes the run
  b = a;
  b.settings.temperature = 1.0;
  EXPECT_EQ(a.name(), b.name());  // decoding is not training
  EXPECT_NE(a.eval_name(), b.eval_name());
}

TEST(arms, settings_come_from_the_arm_named_in_the_table) {
  tldr::align_config c;
  c.settings["brain"] = {0.2, 1e-4, 0.5};
  c.settings["dpo"] = {0.1, 3e-4, 1.0};
  EXPECT_EQ(c.settings_of("brain_no_baseline"), (tldr::arm_settings{0.2, 1e-4, 0.5}));
  EXPECT_EQ(c.settings_of("dpo_sft_iw"), (tldr::arm_settings{0.2, 1e-4, 0.5}));
  EXPECT_EQ(c.settings_of("dpo"), (tldr::arm_settings{0.1, 3e-4, 1.0}));
  c.settings.erase("rso");
  EXPECT_NE(error_of([&] { (void)c.settings_of("rso"); }).find("no settings for arm 'rso'"), std::string::npos);
}

TEST(arms, every_swept_arm_has_default_settings_from_its_entry) {
  const auto defaults = tldr::align_config::default_arm_settings();
  EXPECT_FALSE(defaults.contains("sft"));  // SFT's decoding is align.sft_temperature
  EXPECT_EQ(defaults.at("brain"), tldr::find_arm("brain").defaults);
  for (const auto& a : tldr::all_arms()) {
    EXPECT_EQ(defaults.contains(a.id), a.swept()) << a.id;  // unswept arms borrow (settings_from)
    EXPECT_NO_THROW((void)tldr::config{}.align.settings_of(a.id)) << a.id;
  }
}

TEST(arms, config_validation_names_the_setting) {
  tldr::config c;
  c.validate();
  c.align.samples = 3;
  EXPECT_NE(error_of([&] { c.validate(); }).find("align-samples = 3"), std::string::npos);
  c = {};
  c.align.groups_per_step = 5;
  EXPECT_NE(error_of([&] { c.validate(); }).find("align-groups-per-step = 5 must divide align-prompts = 64"),
            std::string::npos);
  c = {};
  c.align.arms = {"brain", "nope"};
  EXPECT_NE(error_of([&] { c.validate(); }).find("unknown arm 'nope'"), std::string::npos);
  c = {};
  c.align.settings["brain"].beta = 0;
  EXPECT_NE(error_of([&] { c.validate(); }).find("brain-beta = 0"), std::string::npos);
  c = {};
  c.model.context = 100;
  EXPECT_NE(error_of([&] { c.validate(); }).find("model-context = 100"), std::string::npos);
  c = {};
  c.study.samples_seeds = 7;  // more than study-seeds = 6
  EXPECT_NE(error_of([&] { c.validate(); }).find("study-samples-seeds = 7 must be in [1, study-seeds = 6]"),
            std::string::npos);
  c = {};
  c.study.sweep_seed = 3;  // one of the study's seeds 1..6
  EXPECT_NE(error_of([&] { c.validate(); }).find("study-sweep-seed = 3 is one of the study's seeds"),
            std::string::npos);
  c = {};
  c.align.patience = -1;
  EXPECT_NE(error_of([&] { c.validate(); }).find("align-patience = -1"), std::string::npos);
}

TEST(arms, registration_names_what_is_wrong) {
  tldr::arm a = tldr::find_arm("brain");
  EXPECT_NE(error_of([&] { tldr::register_arm(a); }).find("'brain'"), std::string::npos);  // taken
  a.id = "";
  EXPECT_NE(error_of([&] { tldr::register_arm(a); }), "no exception");
  a.id = "brain2";
  a.loss = nullptr;
  EXPECT_NE(error_of([&] { tldr::register_arm(a); }), "no exception");
  a.loss = tldr::find_arm("brain").loss;
  a.settings_from = "nope";
  EXPECT_NE(error_of([&] { tldr::register_arm(a); }).find("nope"), std::string::npos);
  EXPECT_NE(error_of([] { (void)tldr::find_arm("brain2"); }), "no exception");  // nothing was added
}

TEST(arms, pairs_of_each_pair_method) {
  const auto reward = torch::tensor({{1.0f, 3.0f, 2.0f, 2.0f}, {0.0f, -1.0f, 5.0f, 4.0f}});
  // Labelled pairs: (chosen, rejected) as laid out.
  const auto dpo = tldr::pair_units(arm("dpo"), reward, 0.1, 1);
  ASSERT_EQ(dpo.size(), 2u);
  EXPECT_EQ(dpo[0], (std::vector<brain::preference_pair>{{0, 0, 1}, {0, 2, 3}}));
  // DPO-sft: consecutive samples, the higher reward chosen, ties to the earlier.
  const auto ranked = tldr::pair_units(arm("dpo_sft"), reward, 0.1, 1);
  EXPECT_EQ(ranked[0], (std::vector<brain::preference_pair>{{0, 1, 0}, {0, 2, 3}}));
  EXPECT_EQ(ranked[1], (std::vector<brain::preference_pair>{{1, 0, 1}, {1, 2, 3}}));
  // RSO at a tiny β accepts only each row's best sample: no pair; at a huge β it accepts all.
  for (const auto& row : tldr::pair_units(arm("rso"), reward, 1e-6, 1)) EXPECT_TRUE(row.empty());
  const auto all = tldr::pair_units(arm("rso"), reward, 1e6, 1);
  for (std::size_t u = 0; u < all.size(); ++u) {
    ASSERT_EQ(all[u].size(), 2u);
    std::set<brain::index> used;
    for (const auto& p : all[u]) {
      used.insert(p.chosen);
      used.insert(p.rejected);
      EXPECT_GE(reward[long(u)][p.chosen].item<float>(), reward[long(u)][p.rejected].item<float>());
    }
    EXPECT_EQ(used.size(), 4u);
  }
  EXPECT_TRUE(tldr::pair_units(arm("brain"), reward, 0.1, 1)[0].empty());
}

// A buffer of 3 units × 4 columns with random values.
tldr::refresh_buffer random_buffer() {
  torch::manual_seed(3);
  tldr::refresh_buffer b;
  b.units = 3;
  b.width = 4;
  b.log_proposal = -10 * torch::rand({3, 4});
  b.log_prior = -10 * torch::rand({3, 4});
  b.reward = torch::randn({3, 4});
  return b;
}

TEST(arms, group_losses_are_the_librarys) {
  const auto b = random_buffer();
  const std::vector<std::int64_t> units{2, 0};
  const auto mb = tldr::plan_minibatch(arm("brain"), units, b.width, {});
  ASSERT_EQ(mb.rows.size(), 8u);
  EXPECT_EQ(mb.rows[0], 2);
  EXPECT_EQ(mb.cols[3], 3);
  const auto lp = (-10 * torch::rand({8})).requires_grad_();
  const auto rows = torch::tensor(units);
  const brain::samples<torch::Tensor> s{lp.detach().view({2, 4}), b.log_proposal.index_select(0, rows),
                                        b.log_prior.index_select(0, rows), b.reward.index_select(0, rows)};
  const double beta = 0.3;
  // BRAIn: brain_loss on the group.
  const auto out = tldr::minibatch_loss(arm("brain"), mb, lp, b, beta);
  const auto ref = brain::brain_loss(s, brain::bradley_terry{.beta = beta});
  EXPECT_NEAR(out.loss.item<double>(), ref.loss.item<double>(), 1e-6);
  out.loss.backward();
  EXPECT_TRUE(torch::allclose(lp.grad().view({2, 4}), ref.grad_log_policy, 1e-5, 1e-7));
  EXPECT_NEAR(out.target_ess, (1.0 / ref.target_weights.pow(2).sum(1)).mean().item<double>(), 1e-5);
  // DPO-sft+IW: brain_loss on consecutive pairs (eq. 22), not on the group.
  lp.grad().zero_();
  const auto soft = tldr::minibatch_loss(arm("dpo_sft_iw"), mb, lp, b, beta);
  const auto soft_ref = brain::brain_loss(brain::pairwise(s), brain::bradley_terry{.beta = beta});
  EXPECT_NEAR(soft.loss.item<double>(), soft_ref.loss.item<double>(), 1e-6);
  EXPECT_GT(std::abs(soft.loss.item<double>() - ref.loss.item<double>()), 1e-4);
  // No baseline: the gradient is −ᾱ / groups with ᾱ = softmax(r/β + log p − log q) (eqs. 7, 21).
  const auto nb = tldr::minibatch_loss(arm("brain_no_baseline"), mb, lp, b, beta);
  nb.loss.backward();
  const auto alpha = torch::softmax(s.reward / beta + s.log_prior - s.log_proposal, 1);
  EXPECT_TRUE(torch::allclose(lp.grad().view({2, 4}), -alpha / 2.0, 1e-5, 1e-7));
}

TEST(arms, policy_gradient_arms_follow_their_formulas) {
  auto b = random_buffer();
  b.log_proposal = -5 - torch::rand({3, 4});  // ratios q_θ/q on both sides of the clip range
  const std::vector<std::int64_t> units{1, 2};
  const auto mb = tldr::plan_minibatch(arm("rloo"), units, b.width, {});
  ASSERT_EQ(mb.rows.size(), 8u);
  const auto lp = (-5 - torch::rand({8})).to(torch::kFloat64).requires_grad_();
  const auto rows = torch::tensor(units);
  const auto lq = b.log_proposal.index_select(0, rows).to(torch::kFloat64);
  const auto l0 = b.log_prior.index_select(0, rows).to(torch::kFloat64);
  const auto r = b.reward.index_select(0, rows).to(torch::kFloat64);
  const auto q = lp.detach().view({2, 4});
  const auto rho = (q - lq).exp();
  const double beta = 0.3, n = 4, groups = 2;
  // RLOO: L = r/β + log p − log q_θ, A_i = L_i − mean of the other three, gradient −ρA / n / groups.
  const auto L = r / beta + l0 - q;
  const auto advantage = L - (L.sum(1, true) - L) / (n - 1);
  const auto rloo = tldr::minibatch_loss(arm("rloo"), mb, lp, b, beta);
  rloo.loss.backward();
  EXPECT_TRUE(torch::allclose(lp.grad().view({2, 4}).to(torch::kFloat64), -rho * advantage / n / groups, 1e-4, 1e-6));
  EXPECT_EQ(rloo.target_ess, 0.0);
  // GRPO (TRL): A = (r − mean) / (sd + 1e-4) per group; the unclipped ratio's term unless the
  // clipped one is smaller; plus β (p/q_θ − 1) from the k3 KL; all / n / groups.
  lp.grad().zero_();
  const auto centred = r - r.mean(1, true);
  const auto a = centred / (centred.pow(2).sum(1, true) / (n - 1)).sqrt().add(1e-4);
  const auto unclipped = rho * a, clipped = rho.clamp(0.8, 1.2) * a;
  const auto pg = torch::where(unclipped <= clipped, unclipped, torch::zeros_like(a));
  const auto w = (pg + beta * ((l0 - q).exp() - 1)) / n;
  ASSERT_GT((unclipped > clipped).sum().item<int>(), 0) << "the test should reach the clipped branch";
  ASSERT_GT((unclipped <= clipped).sum().item<int>(), 0);
  const auto grpo = tldr::minibatch_loss(arm("grpo"), mb, lp, b, beta);
  grpo.loss.backward();
  EXPECT_TRUE(torch::allclose(lp.grad().view({2, 4}).to(torch::kFloat64), -w / groups, 1e-4, 1e-6));
}

TEST(arms, pair_losses_are_dpo_on_the_planned_pairs) {
  auto b = random_buffer();
  const auto pairs = tldr::pair_units(arm("dpo_sft"), b.reward, 0.1, 1);
  const auto mb = tldr::plan_minibatch(arm("dpo_sft"), {1}, b.width, pairs);
  ASSERT_EQ(mb.rows.size(), 4u);
  const auto lp = (-10 * torch::rand({4})).requires_grad_();
  const double beta = 0.2;
  const auto out = tldr::minibatch_loss(arm("dpo_sft"), mb, lp, b, beta);
  EXPECT_EQ(out.trained_pairs, 2);
  double expected = 0;
  for (int k = 0; k < 2; ++k) {
    const auto chosen = pairs[1][std::size_t(k)].chosen, rejected = pairs[1][std::size_t(k)].rejected;
    EXPECT_EQ(mb.cols[std::size_t(2 * k)], chosen);
    const double h = (lp[2 * k].item<double>() - b.log_prior[1][chosen].item<double>()) -
                     (lp[2 * k + 1].item<double>() - b.log_prior[1][rejected].item<double>());
    expected += -std::log(1.0 / (1.0 + std::exp(-beta * h))) / 2.0;
  }
  EXPECT_NEAR(out.loss.item<double>(), expected, 1e-5);
  // An RSO minibatch without pairs trains nothing.
  const auto empty = tldr::plan_minibatch(arm("rso"), {0}, b.width, {{}});
  EXPECT_TRUE(empty.rows.empty());
  const auto none = tldr::minibatch_loss(arm("rso"), empty, torch::zeros({0}), b, beta);
  EXPECT_EQ(none.trained_pairs, 0);
  EXPECT_EQ(none.loss.item<double>(), 0.0);
  EXPECT_NE(error_of([&] {
              (void)tldr::minibatch_loss(arm("dpo_sft"), mb, torch::zeros({3}), b, beta);
            }).find("the minibatch has 4 cells"),
            std::string::npos);
}

TEST(seeds, streams_differ_by_purpose_and_index_and_permutations_are_permutations) {
  std::set<std::uint64_t> seen;
  for (auto p : {tldr::purpose::sft_order, tldr::purpose::align_prompts, tldr::purpose::align_sampling})
    for (std::uint64_t a = 0; a < 10; ++a)
      for (std::uint64_t b = 0; b < 3; ++b) EXPECT_TRUE(seen.insert(tldr::derive_seed(1, p, a, b)).second);
  EXPECT_NE(tldr::derive_seed(1, tldr::purpose::align_prompts), tldr::derive_seed(2, tldr::purpose::align_prompts));
  const auto p = tldr::permutation(100, 9);
  EXPECT_EQ(p, tldr::permutation(100, 9));
  EXPECT_NE(p, tldr::permutation(100, 10));
  EXPECT_EQ(std::set<std::size_t>(p.begin(), p.end()).size(), 100u);
  EXPECT_EQ(*std::max_element(p.begin(), p.end()), 99u);
}

}  // namespace
