// Stage rm: a Bradley–Terry reward model, loss −log σ(r(chosen) − r(rejected)) (eq. 16),
// initialised from the SFT model, then its held-out agreement with the labels and with the
// noiseless oracle, and its calibration.

#include "checkpoint.hpp"
#include "progress.hpp"
#include "seeds.hpp"
#include "stages.hpp"
#include "training.hpp"

#include <cmath>
#include <cstdio>

namespace tldr {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

/// r(chosen) and r(rejected) of pairs [first, last) of `pairs` (in `order`), one forward pass.
::torch::Tensor pair_rewards(RewardModel& rm, const std::vector<encoded_example>& split,
                             const std::vector<preference_record>& pairs, const std::vector<std::size_t>& order,
                             std::size_t first, std::size_t last) {
  std::vector<tokens> prompts, responses;
  for (std::size_t j = first; j < last; ++j) {
    prompts.push_back(split[pairs[order[j]].index].prompt);
    responses.push_back(pairs[order[j]].chosen);
  }
  for (std::size_t j = first; j < last; ++j) {
    prompts.push_back(split[pairs[order[j]].index].prompt);
    responses.push_back(pairs[order[j]].rejected);
  }
  return rm->score(prompts, responses, tokenizer::pad_id, 0).view({2, -1});
}

struct agreement {
  double with_labels = 0, with_oracle = 0, with_oracle_samples_only = 0;
  double calibration_error = 0;  ///< mean |σ(Δr) − empirical label rate| over 10 bins, weighted by count
  json bins = json::array();
};

agreement held_out(RewardModel& rm, const run_context& ctx, const std::vector<preference_record>& pairs) {
  ::torch::NoGradGuard no_grad;
  rm->eval();
  std::vector<std::size_t> order(pairs.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::vector<double> margin;
  for (std::size_t i = 0; i < pairs.size(); i += 128) {
    const auto r = pair_rewards(rm, ctx.valid(), pairs, order, i, std::min(pairs.size(), i + 128));
    const auto m = (r[0] - r[1]).to(::torch::kFloat64).contiguous();
    margin.insert(margin.end(), m.data_ptr<double>(), m.data_ptr<double>() + m.numel());
  }
  agreement a;
  std::size_t labels = 0, oracle = 0, oracle_pairs = 0, samples = 0, sample_pairs = 0;
  // Reliability: the model's P(chosen ≻ rejected) = σ(margin) against how often that side was chosen.
  std::vector<double> predicted(10, 0.0), observed(10, 0.0), count(10, 0.0);
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    const auto& p = pairs[i];
    labels += margin[i] > 0;
    if (p.oracle_chosen != p.oracle_rejected) {
      const bool right = (margin[i] > 0) == (p.oracle_chosen > p.oracle_rejected);
      ++oracle_pairs;
      oracle += right;
      if (!p.against_gold) {
        ++sample_pairs;
        samples += right;
      }
    }
    // Each pair read in both orders, so every bin sees predictions on both sides of 1/2.
    for (const double sign : {1.0, -1.0}) {
      const double prob = 1.0 / (1.0 + std::exp(-sign * margin[i]));
      const auto bin = std::min<std::size_t>(9, static_cast<std::size_t>(prob * 10));
      predicted[bin] += prob;
      observed[bin] += sign > 0 ? 1.0 : 0.0;
      count[bin] += 1;
    }
  }
  const auto rate = [](std::size_t k, std::size_t n) { return double(k) / double(std::max<std::size_t>(n, 1)); };
  a.with_labels = rate(labels, pairs.size());
  a.with_oracle = rate(oracle, oracle_pairs);
  a.with_oracle_samples_only = rate(samples, sample_pairs);
  double total = 0;
  for (std::size_t b = 0; b < 10; ++b) {
    if (count[b] == 0) continue;
    a.calibration_error += std::abs(predicted[b] - observed[b]);
    total += count[b];
    a.bins.push_back({{"bin", b}, {"pairs", count[b]}, {"predicted", predicted[b] / count[b]},
                      {"observed", observed[b] / count[b]}});
  }
  a.calibration_error /= std::max(total, 1.0);
  return a;
}

}  // namespace

void train_reward_model(const run_context& ctx) {
  const auto& c = ctx.settings();
  const auto dir = ctx.path("rm");
  if (fs::exists(dir / "model.pt")) return;
  fs::create_directories(dir);
  const auto train_pairs = read_pairs(ctx.path("pairs/train.jsonl")), valid_pairs = read_pairs(ctx.path("pairs/valid.jsonl"));
  seed_global_generator(derive_seed(c.seed, purpose::rm_init));  // the head's initial weights
  RewardModel rm(c.model);
  {
    Gpt sft(c.model);
    load_model(ctx.path("sft/model.pt"), *sft);
    rm->load_backbone(sft);
  }
  ::torch::optim::AdamW opt(rm->parameters(), ::torch::optim::AdamWOptions(c.rm.lr).weight_decay(c.rm.weight_decay));
  const auto batch = static_cast<std::size_t>(c.rm.batch);
  const auto per_epoch = static_cast<std::int64_t>((train_pairs.size() + batch - 1) / batch);
  const auto total = per_epoch * c.rm.epochs;
  const auto state = dir / "state.pt";
  std::int64_t step = resume_from(state, *rm, opt);
  if (step > 0) ctx.log().info("rm: resuming at step {}", step);
  rm->train();
  progress bar("reward model", total, "steps", step);
  double smoothed = NAN, smoothed_acc = NAN;
  for (; step < total; ++step) {
    const auto epoch = step / per_epoch;
    const auto within = static_cast<std::size_t>(step % per_epoch);
    const auto order = permutation(train_pairs.size(), derive_seed(c.seed, purpose::rm_order, static_cast<std::uint64_t>(epoch)));
    const auto r = pair_rewards(rm, ctx.train(), train_pairs, order, within * batch,
                                std::min(train_pairs.size(), (within + 1) * batch));
    const auto margin = r[0] - r[1];
    const auto loss = -::torch::log_sigmoid(margin).mean();
    optimizer_step(opt, loss, rm->parameters(), warmup_cosine(c.rm.lr, step, total), 1.0);
    const double l = loss.item<double>(), acc = (margin > 0).to(::torch::kFloat64).mean().item<double>();
    smoothed = std::isnan(smoothed) ? l : 0.95 * smoothed + 0.05 * l;
    smoothed_acc = std::isnan(smoothed_acc) ? acc : 0.95 * smoothed_acc + 0.05 * acc;
    char status[80];
    std::snprintf(status, sizeof status, "loss %.3f  accuracy %.1f%%", smoothed, 100 * smoothed_acc);
    bar.advance(1, status);
    if ((step + 1) % c.rm.checkpoint_every == 0 && step + 1 < total) save_state(state, *rm, opt, step + 1);
  }
  bar.finish();
  const auto a = held_out(rm, ctx, valid_pairs);
  ctx.log().info("rm: held-out agreement {:.1f}% with the labels, {:.1f}% with the noiseless oracle ({:.1f}% on pairs "
                 "of two samples), calibration error {:.3f} ({} pairs)",
                 100 * a.with_labels, 100 * a.with_oracle, 100 * a.with_oracle_samples_only, a.calibration_error,
                 valid_pairs.size());
  save_model(dir / "model.pt", *rm);
  atomic_write_text(dir / "metrics.json", json{{"valid_pairs", valid_pairs.size()}, {"agreement_with_labels", a.with_labels},
                                                {"agreement_with_oracle", a.with_oracle},
                                                {"agreement_with_oracle_samples_only", a.with_oracle_samples_only},
                                                {"calibration_error", a.calibration_error}, {"calibration", a.bins},
                                                {"seconds", bar.elapsed_seconds()}}.dump(2));
  fs::remove(state);
}

}  // namespace tldr
