// Stage align: Algorithm 1 (docs/math.md §8) for one run of one arm (src/arms.hpp). Per refresh:
// draw the buffer (m prompts × n samples of the arm's proposal, or labelled pairs), score it,
// take K optimiser steps on minibatches of its units, refresh the proposal if the arm does, then
// validate with the reward model (never the oracle: the oracle is the experiment's ground truth,
// measured on the test split only), keep a checkpoint of every validation and the best one, and
// stop early once the validation reward has not improved for `patience` validations. State is
// saved after every refresh.

#include "device.hpp"
#include "checkpoint.hpp"
#include "metrics.hpp"
#include "progress.hpp"
#include "ranks.hpp"
#include "sampler.hpp"
#include "seeds.hpp"
#include "stages.hpp"
#include "training.hpp"

#include <spdlog/fmt/fmt.h>

#include <cstring>
#include <fstream>

namespace tldr {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json to_json(const validation_point& p) {
  return {{"refresh", p.refresh},
          {"step", p.step},
          {"rm_mean", p.rm_mean},
          {"rm_win", p.rm_win},
          {"words", p.words},
          {"kl", p.kl},
          {"loss", p.loss},
          {"target_ess", p.target_ess},
          {"skipped_steps", p.skipped_steps}};
}
validation_point point_from(const json& j) {
  validation_point p;
  p.refresh = j.at("refresh");
  p.step = j.at("step");
  p.rm_mean = j.at("rm_mean");
  p.rm_win = j.at("rm_win");
  p.words = j.at("words");
  p.kl = j.at("kl");
  p.loss = j.at("loss");
  p.target_ess = j.at("target_ess");
  p.skipped_steps = j.at("skipped_steps");
  return p;
}
json history_json(const std::vector<validation_point>& h) {
  json a = json::array();
  for (const auto& p : h) a.push_back(to_json(p));
  return a;
}

torch::Tensor text_tensor(const std::string& s) {
  auto t = torch::empty({static_cast<std::int64_t>(s.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr(), s.data(), s.size());
  return t;
}
std::string tensor_text(const torch::Tensor& t) {
  return {static_cast<const char*>(t.data_ptr()), static_cast<std::size_t>(t.numel())};
}

/// Every rank's [rows] float values, in rank order, as one float tensor on the compute device.
torch::Tensor gather_floats(const torch::Tensor& mine) {
  const auto cpu = mine.to(torch::kCPU, torch::kFloat).contiguous();
  std::vector<float> values(cpu.data_ptr<float>(), cpu.data_ptr<float>() + cpu.numel());
  auto all = gather_shares(values);
  return torch::tensor(all, torch::kFloat).to(compute_device());
}

json spec_json(const run_spec& r) {
  return {{"arm", r.arm},        {"samples", r.samples},     {"seed", r.seed},        {"beta", r.settings.beta},
          {"lr", r.settings.lr}, {"refreshes", r.refreshes}, {"patience", r.patience}};
}

/// Everything a run keeps for its whole length.
struct run_state {
  const run_context& ctx;
  const run_spec& run;
  const arm& which;
  Gpt prior, policy, proposal;
  RewardModel rm;
};

/// The validation prompts, their gold summaries' reward-model scores and the metrics of a policy
/// on them: the reward model's, never the oracle's (selection sees the reward model only).
class validator {
 public:
  validator(const run_context& ctx, RewardModel& rm) : ctx_(ctx) {
    const auto count = std::min<std::size_t>(ctx.valid().size(), std::size_t(ctx.settings().eval.valid_prompts));
    prompts_ = run_context::prompts_of(ctx.valid(), count);
    torch::NoGradGuard no_grad;
    gold_rm_ = rm->score(prompts_, run_context::golds_of(ctx.valid(), count), tokenizer::pad_id).to(torch::kFloat64);
  }

  /// Each rank validates its share of the prompts (samples keyed by the prompt's index); the
  /// metrics are sums over ranks of per-prompt terms.
  validation_point operator()(Gpt& policy, Gpt& prior, RewardModel& rm, std::uint64_t seed) const {
    torch::NoGradGuard no_grad;
    validation_point v;
    const auto [begin, end] = my_share(prompts_.size());
    const auto mine = slice(prompts_, begin, end);
    const auto keys = indices(begin, end);
    const auto n = double(prompts_.size());
    if (begin < end) {
      const auto s = sample(policy, mine, ctx_.decoding(1, ctx_.settings().eval.valid_temperature),
                            derive_seed(seed, purpose::valid_sampling), keys);
      const auto r = rm->score(mine, s.responses, tokenizer::pad_id).to(torch::kFloat64).cpu();
      const auto texts = ctx_.tok().decode(s.responses);
      for (std::size_t i = begin; i < end; ++i) {
        const double ri = r[long(i - begin)].item<double>(), gi = gold_rm_[long(i)].item<double>();
        v.rm_win += (ri > gi ? 1.0 : ri == gi ? 0.5 : 0.0) / n;
        v.words += double(word_count(texts[i - begin])) / n;
      }
      v.rm_mean = r.sum().item<double>() / n;
      // KL(policy ‖ SFT) = E_{y∼policy}[log policy(y) − log p(y)], from samples at temperature 1.
      const auto t1 = sample(policy, mine, ctx_.decoding(1, 1.0), derive_seed(seed, purpose::valid_sampling, 1), keys);
      v.kl = (t1.log_model.to(torch::kFloat64) -
              sequence_log_prob(prior, mine, t1.responses, tokenizer::pad_id).to(torch::kFloat64))
                 .sum()
                 .item<double>() /
             n;
    }
    sum_over_ranks({&v.rm_win, &v.words, &v.rm_mean, &v.kl});
    return v;
  }

 private:
  const run_context& ctx_;
  std::vector<tokens> prompts_;
  torch::Tensor gold_rm_;
};

/// The buffer of refresh `refresh`: labelled pairs for DPO, else m prompts × n samples of q.
refresh_buffer draw(run_state& st, const std::vector<preference_record>& labelled, std::int64_t refresh) {
  const auto& c = st.ctx.settings();
  const auto m = c.align.prompts, n = st.run.samples;
  const auto& train = st.ctx.train();
  refresh_buffer b;
  b.units = m;
  b.width = n;
  torch::NoGradGuard no_grad;
  if (st.which.proposal == proposal_rule::labelled_pairs) {
    // m units of n/2 labelled pairs, read in a seeded order over epochs of the pair set.
    const auto per_refresh = static_cast<std::size_t>(m * n / 2);
    std::vector<tokens> prompts;
    std::vector<std::size_t> order;
    std::size_t order_epoch = SIZE_MAX;
    for (std::size_t k = 0; k < per_refresh; ++k) {
      const auto g = static_cast<std::size_t>(refresh) * per_refresh + k;
      if (const auto epoch = g / labelled.size(); epoch != order_epoch) {
        order = permutation(labelled.size(), derive_seed(st.run.seed, purpose::dpo_pairs, epoch));
        order_epoch = epoch;
      }
      const auto& p = labelled[order[g % labelled.size()]];
      for (const auto* response : {&p.chosen, &p.rejected}) {
        b.prompt_of.push_back(p.index);
        b.responses.push_back(*response);
        prompts.push_back(train[p.index].prompt);
      }
    }
    // Each rank scores its share of the rows.
    const auto [begin, end] = my_share(b.responses.size());
    const auto mine = begin < end ? sequence_log_prob(st.prior, slice(prompts, begin, end),
                                                      slice(b.responses, begin, end), tokenizer::pad_id)
                                  : torch::zeros({0}, torch::kFloat);
    b.log_prior = gather_floats(mine).view({m, n});
    b.log_proposal = b.log_prior;                                                        // unused by DPO
    b.reward = torch::tensor({1.0f, 0.0f}).repeat({m, n / 2}).to(b.log_prior.device());  // chosen first
    return b;
  }
  const auto order = permutation(train.size(), derive_seed(st.run.seed, purpose::align_prompts, refresh));
  // Each rank draws and scores the groups of its share of the m prompts (samples keyed by the
  // prompt's place in this refresh), then every rank gathers the whole buffer.
  const auto [begin, end] = my_share(std::size_t(m));
  std::vector<tokens> prompts;
  for (std::size_t i = begin; i < end; ++i) prompts.push_back(train[order[i]].prompt);
  const auto keys = indices(begin, end);
  const bool from_prior = st.which.proposal == proposal_rule::prior || refresh == 0;
  Gpt& q = from_prior ? st.prior : st.proposal;
  std::vector<tokens> row_prompts;
  for (std::size_t i = 0; i < prompts.size() * std::size_t(n); ++i) row_prompts.push_back(prompts[i / std::size_t(n)]);
  torch::Tensor reward = torch::zeros({0}, torch::kFloat), log_proposal = reward, log_prior = reward,
                log_sampler = reward;
  std::vector<tokens> responses;
  if (!prompts.empty()) {
    auto drawn =
        sample(q, prompts, st.ctx.decoding(n, 1.0), derive_seed(st.run.seed, purpose::align_sampling, refresh), keys);
    responses = std::move(drawn.responses);
    // Algorithm 1 records r(x, y), log p(y|x) and log q(y|x) with each group. log q is the
    // trainer's teacher-forced recomputation, as log q_theta is; the decoder's own log-probs (its
    // KV cache, one token at a time) play an inference engine's part: the sampler's log mu, which
    // brain's sampler correction and rollout_report read (docs/math.md §7.1).
    reward = st.rm->score(row_prompts, responses, tokenizer::pad_id);
    log_sampler = drawn.log_proposal;
    log_proposal = sequence_log_prob(q, row_prompts, responses, tokenizer::pad_id);
    log_prior = from_prior ? log_proposal : sequence_log_prob(st.prior, row_prompts, responses, tokenizer::pad_id);
  }
  for (std::int64_t i = 0; i < m * n; ++i) b.prompt_of.push_back(order[std::size_t(i / n)]);
  b.responses = gather_shares(responses);
  b.reward = gather_floats(reward).view({m, n});
  b.log_proposal = gather_floats(log_proposal).view({m, n});
  b.log_prior = gather_floats(log_prior).view({m, n});
  b.log_sampler = gather_floats(log_sampler).view({m, n});
  return b;
}

/// The run's folder, with run.json naming its settings; a folder of another run's settings stops it.
fs::path open_run_dir(const run_context& ctx, const run_spec& run, const arm& which) {
  const auto dir = run_dir(ctx, run);
  fs::create_directories(dir);
  const auto spec = spec_json(run).dump(2);
  if (fs::exists(dir / "run.json") && read_text(dir / "run.json") != spec)
    throw std::runtime_error(dir.string() + " holds a run with other settings: " + read_text(dir / "run.json"));
  atomic_write_text(dir / "run.json", spec);
  if (run.samples < 2 || (which.pairs() && run.samples % 2 != 0))
    throw std::invalid_argument("run " + run.name() + ": samples = " + std::to_string(run.samples) +
                                " must be >= 2 (and even for pair methods)");
  return dir;
}

/// The SFT model twice (the prior p, frozen, and the policy), q for refreshing arms, the reward model.
run_state load_models(const run_context& ctx, const run_spec& run, const arm& which) {
  const auto& c = ctx.settings();
  run_state st{ctx, run, which, Gpt(c.model), Gpt(c.model), Gpt(nullptr), RewardModel(c.model)};
  place(st.prior);
  place(st.policy);
  place(st.rm);
  load_model(ctx.path("sft/model.pt"), *st.prior);
  load_model(ctx.path("sft/model.pt"), *st.policy);
  for (auto& p : st.prior->parameters()) p.set_requires_grad(false);
  st.prior->eval();
  if (which.proposal == proposal_rule::refreshed) {
    st.proposal = clone(st.prior);  // q: the policy frozen at the last refresh
    st.proposal->eval();
  }
  load_model(ctx.path("rm/model.pt"), *st.rm);
  st.rm->eval();
  for (auto& p : st.rm->parameters()) p.set_requires_grad(false);
  return st;
}

/// Every comparison of the labelled rankings (DPO's data); empty for the other arms.
std::vector<preference_record> labelled_pairs_for(const run_context& ctx, const arm& which) {
  std::vector<preference_record> labelled;
  if (which.proposal == proposal_rule::labelled_pairs)
    for (const auto& r : read_rankings(ctx.path("pairs/train.jsonl")))
      for (auto& p : pairs_of(r)) labelled.push_back(std::move(p));
  return labelled;
}

/// Where a run stands between refreshes: what state.pt holds, so that a stopped run resumes.
struct run_progress {
  std::int64_t refresh = 0, step = 0;
  std::vector<validation_point> history;
  double best = -1e300;

  void resume(const fs::path& file, run_state& st, torch::optim::AdamW& opt) {
    checkpoint_reader r(file);
    r.load("model", *st.policy);
    r.load("optimizer", opt);
    refresh = r.integer("refresh");
    step = r.integer("step");
    for (const auto& p : json::parse(tensor_text(r.tensor("history")))) history.push_back(point_from(p));
    best = r.tensor("best").item<double>();
    if (st.proposal) copy_state(*st.policy, *st.proposal);
  }
  /// After refresh `refresh` is done: a resumed run starts at the next one.
  void save_done(const fs::path& file, run_state& st, torch::optim::AdamW& opt) const {
    checkpoint_writer w;
    w.add("model", *st.policy);
    w.add("optimizer", opt);
    w.add("refresh", refresh + 1);
    w.add("step", step);
    w.add("history", text_tensor(history_json(history).dump()));
    w.add("best", torch::tensor(best, torch::kFloat64));
    w.save(file);
  }
  /// Early stopping: the validations since the best one. Refresh 0 (SFT) is not a candidate.
  [[nodiscard]] std::int64_t since_best() const {
    std::int64_t since = 0;
    double top = -1e300;
    for (std::size_t i = 1; i < history.size(); ++i) {
      if (history[i].rm_mean > top)
        top = history[i].rm_mean, since = 0;
      else
        ++since;
    }
    return since;
  }
  /// Every validation's policy is kept (checkpoints/refresh-R.pt: the study's curves evaluate them
  /// on test prompts afterwards); the best by the validation reward is best.pt, the run's result.
  void keep(const fs::path& dir, const validation_point& v, Gpt& policy) {
    if (ranks().is_main()) save_model(dir / "checkpoints" / ("refresh-" + std::to_string(v.refresh) + ".pt"), *policy);
    if (v.rm_mean <= best) return;
    best = v.rm_mean;
    save_model(dir / "best.pt", *policy);
  }
};

/// One optimiser step on this rank's share of the minibatch `chosen` (units of the buffer); adds
/// the step's loss and target ESS, summed over ranks, to `v`. Returns false for a skipped step.
bool train_step(run_state& st, torch::optim::AdamW& opt, const refresh_buffer& buffer, const unit_pairs& pairs,
                const std::vector<std::int64_t>& chosen, dist::overlapped_gradients& overlap, validation_point& v) {
  const auto& which = st.which;
  const auto batch = plan_minibatch(which, chosen, buffer.width, pairs);
  if (batch.rows.empty()) {  // an RSO minibatch whose groups accepted fewer than two samples
    ++v.skipped_steps;
    return false;
  }
  // This rank's share of the minibatch's units; the losses average over units (groups) or
  // pairs, so a share's loss is weighted by its share of them.
  const auto [begin, end] = my_share(chosen.size());
  const std::vector<std::int64_t> my_units(chosen.begin() + long(begin), chosen.begin() + long(end));
  const auto mine = plan_minibatch(which, my_units, buffer.width, pairs);
  const double weight = which.pairs() ? double(mine.rows.size()) / double(batch.rows.size())
                                      : double(my_units.size()) / double(chosen.size());
  torch::Tensor loss;
  double ess = 0;
  if (!mine.rows.empty()) {
    std::vector<tokens> prompts, responses;
    for (std::size_t i = 0; i < mine.rows.size(); ++i) {
      const auto cell = std::size_t(mine.rows[i] * buffer.width + mine.cols[i]);
      prompts.push_back(st.ctx.train()[buffer.prompt_of[cell]].prompt);
      responses.push_back(buffer.responses[cell]);
    }
    const auto lp = sequence_log_prob(st.policy, prompts, responses, tokenizer::pad_id, 0);
    const auto out = minibatch_loss(which, mine, lp, buffer, st.run.settings.beta);
    loss = out.loss * weight;
    ess = out.target_ess * weight;
  }
  optimizer_step(opt, loss, st.policy->parameters(), st.run.settings.lr, st.ctx.settings().align.clip, overlap);
  double step_loss = loss.defined() ? loss.item<double>() : 0.0;
  sum_over_ranks({&step_loss, &ess});
  v.loss += step_loss;
  v.target_ess += ess;
  return true;
}

/// One refresh of Algorithm 1: draw and score the buffer, K steps on minibatches of its units,
/// then q ← the policy for refreshing arms. Returns the refresh's mean loss and target ESS.
validation_point train_refresh(run_state& st, torch::optim::AdamW& opt, const std::vector<preference_record>& labelled,
                               run_progress& at, dist::overlapped_gradients& overlap) {
  const auto& a = st.ctx.settings().align;
  const auto& run = st.run;
  const refresh_buffer buffer = draw(st, labelled, at.refresh);
  validation_point v;
  if (buffer.log_sampler.defined()) {  // the sampler's mismatch with the trainer, as a trainer logs it
    const auto report = brain::rollout_report(brain::samples<torch::Tensor>{.log_policy = buffer.log_proposal,
                                                                            .log_proposal = buffer.log_proposal,
                                                                            .log_prior = buffer.log_prior,
                                                                            .reward = buffer.reward,
                                                                            .log_sampler = buffer.log_sampler},
                                              brain::estimator::brain);
    v.sampler_abs_log_ratio = report.mean_abs_log_ratio;
    v.sampler_masked = report.share_masked;
  }
  const auto pairs =
      pair_units(st.which, buffer.reward, run.settings.beta, derive_seed(run.seed, purpose::align_pairing, at.refresh));
  const auto m = a.prompts, G = a.groups_per_step;
  const auto K = a.epochs * m / G;
  std::int64_t trained = 0;
  for (std::int64_t k = 0; k < K; ++k) {
    const auto epoch = k * G / m, within = (k * G) % m;
    const auto units = permutation(std::size_t(m), derive_seed(run.seed, purpose::align_minibatch, at.refresh, epoch));
    const std::vector<std::int64_t> chosen(units.begin() + within, units.begin() + within + G);
    ++at.step;
    if (train_step(st, opt, buffer, pairs, chosen, overlap, v)) ++trained;
  }
  v.loss /= double(std::max<std::int64_t>(trained, 1));
  v.target_ess /= double(std::max<std::int64_t>(trained, 1));
  if (st.proposal) copy_state(*st.policy, *st.proposal);  // q ← frozen copy of q_θ (Algorithm 1)
  return v;
}

}  // namespace

fs::path run_dir(const run_context& ctx, const run_spec& run) { return ctx.path("runs/" + run.name()); }

std::vector<validation_point> read_history(const fs::path& file) {
  std::vector<validation_point> h;
  for (const auto& p : json::parse(read_text(file))) h.push_back(point_from(p));
  return h;
}

void align(const run_context& ctx, const run_spec& run) {
  const arm& which = find_arm(run.arm);
  if (main_has(run_dir(ctx, run) / "history.json")) return;
  const auto dir = open_run_dir(ctx, run, which);
  run_state st = load_models(ctx, run, which);
  const auto labelled = labelled_pairs_for(ctx, which);
  torch::optim::AdamW opt(st.policy->parameters(), torch::optim::AdamWOptions(run.settings.lr).weight_decay(0.0));
  run_progress at;
  const auto state = dir / "state.pt";
  if (main_has(state)) {
    at.resume(state, st, opt);
    ctx.log().info("{}: resuming at refresh {}", run.name(), at.refresh);
  }
  const validator validate(ctx, st.rm);
  // Refresh 0 is the SFT model: validated for the curve, never the run's best checkpoint (a run
  // that only got worse must show it, not fall back to SFT).
  if (at.history.empty()) at.history.push_back(validate(st.policy, st.prior, st.rm, run.seed));

  dist::overlapped_gradients overlap(ranks(), st.policy->parameters());
  st.policy->train();
  progress bar(run.name(), run.refreshes, "refreshes", at.refresh);
  for (; at.refresh < run.refreshes && !(run.patience > 0 && at.since_best() >= run.patience); ++at.refresh) {
    validation_point v = train_refresh(st, opt, labelled, at, overlap);
    if ((at.refresh + 1) % ctx.settings().align.validate_every == 0 || at.refresh + 1 == run.refreshes) {
      const auto measured = validate(st.policy, st.prior, st.rm, run.seed);
      st.policy->train();
      v.rm_win = measured.rm_win;
      v.rm_mean = measured.rm_mean;
      v.words = measured.words;
      v.kl = measured.kl;
      v.refresh = at.refresh + 1;
      v.step = at.step;
      at.history.push_back(v);
      at.keep(dir, v, st.policy);
    }
    at.save_done(state, st, opt);
    auto status =
        fmt::format("loss {:.4f}  RM {:.3f}  KL {:.2f}", v.loss, at.history.back().rm_mean, at.history.back().kl);
    if (v.target_ess > 0) status += fmt::format("  ESS {:.1f}", v.target_ess);  // distillation arms
    if (v.sampler_abs_log_ratio >= 0)  // sampled arms: the decoder's log q against the recomputed one
      status +=
          fmt::format("  sampler |Δlog q| {:.1e} ({:.0f}% masked)", v.sampler_abs_log_ratio, 100 * v.sampler_masked);
    bar.advance(1, status);
    ctx.log().info("{}: refresh {}: {}", run.name(), at.refresh + 1, status);
  }
  bar.finish();
  atomic_write_text(dir / "history.json", history_json(at.history).dump(2));
  if (ranks().is_main()) fs::remove(state);
  ranks().barrier();
}

}  // namespace tldr
