// Stage rm: a Bradley–Terry reward model, loss −log σ(r(chosen) − r(rejected)) (eq. 16),
// initialised from the SFT model, then its held-out agreement with the labels and with the
// noiseless oracle, and its calibration.

#include "device.hpp"
#include "ranks.hpp"
#include "checkpoint.hpp"
#include "progress.hpp"
#include "seeds.hpp"
#include "stages.hpp"
#include "training.hpp"

#include <cmath>
#include <cstdio>
#include <numeric>

namespace tldr {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

/// r of every response of rankings order[first..last), [rows, k], one forward pass.
torch::Tensor ranking_rewards(RewardModel& rm, const std::vector<encoded_example>& split,
                              const std::vector<ranking_record>& rankings, const std::vector<std::size_t>& order,
                              std::size_t first, std::size_t last) {
  std::vector<tokens> prompts, responses;
  for (std::size_t j = first; j < last; ++j)
    for (const auto& response : rankings[order[j]].responses) {
      prompts.push_back(split[rankings[order[j]].index].prompt);
      responses.push_back(response);
    }
  return rm->score(prompts, responses, tokenizer::pad_id, 0).view({std::int64_t(last - first), -1});
}

/// The Bradley–Terry loss over every comparison of the rankings order[first..last): the mean of
/// −log σ(r_w − r_l) (InstructGPT's loss for K-way rankings), and the share of pairs ordered right.
std::pair<torch::Tensor, double> ranking_loss(const torch::Tensor& r, const std::vector<ranking_record>& rankings,
                                              const std::vector<std::size_t>& order, std::size_t first) {
  std::vector<std::int64_t> winner, loser;
  for (std::int64_t b = 0; b < r.size(0); ++b) {
    const auto& ranked = rankings[order[first + std::size_t(b)]].order;
    for (std::size_t x = 0; x < ranked.size(); ++x)
      for (std::size_t y = x + 1; y < ranked.size(); ++y) {
        winner.push_back(b * r.size(1) + std::int64_t(ranked[x]));
        loser.push_back(b * r.size(1) + std::int64_t(ranked[y]));
      }
  }
  const auto flat = r.reshape({-1});
  const auto margin = flat.index_select(0, torch::tensor(winner)) - flat.index_select(0, torch::tensor(loser));
  return {-torch::log_sigmoid(margin).mean(), (margin > 0).to(torch::kFloat64).mean().item<double>()};
}

struct agreement {
  std::size_t pairs = 0;
  double with_labels = 0, with_oracle = 0, with_oracle_samples_only = 0;
  double calibration_error = 0;  ///< mean |σ(Δr) − empirical label rate| over 10 bins, weighted by count
  json bins = json::array();
};

/// Held-out agreement of the reward model's ordering with the labeller's and with the noiseless
/// oracle's, over every comparison of the held-out rankings, and its calibration.
agreement held_out(RewardModel& rm, const run_context& ctx, const std::vector<ranking_record>& rankings) {
  torch::NoGradGuard no_grad;
  rm->eval();
  std::vector<std::size_t> order(rankings.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  agreement a;
  std::size_t labels = 0, oracle = 0, oracle_pairs = 0, samples = 0, sample_pairs = 0;
  // Reliability: the model's P(chosen ≻ rejected) = σ(margin) against how often that side was chosen.
  std::vector<double> predicted(10, 0.0), observed(10, 0.0), count(10, 0.0);
  for (std::size_t i = 0; i < rankings.size(); i += 64) {
    const auto last = std::min(rankings.size(), i + 64);
    const auto r = ranking_rewards(rm, ctx.valid(), rankings, order, i, last).to(torch::kFloat64);
    for (std::size_t j = i; j < last; ++j) {
      const auto& ranked = rankings[j].order;
      const auto rr = r[std::int64_t(j - i)];
      for (std::size_t x = 0; x < ranked.size(); ++x)
        for (std::size_t y = x + 1; y < ranked.size(); ++y) {
          const auto w = ranked[x], l = ranked[y];
          const double margin = rr[std::int64_t(w)].item<double>() - rr[std::int64_t(l)].item<double>();
          const double ow = rankings[j].oracle[w], ol = rankings[j].oracle[l];
          ++a.pairs;
          labels += margin > 0;
          if (ow != ol) {
            const bool right = (margin > 0) == (ow > ol);
            ++oracle_pairs;
            oracle += right;
            if (rankings[j].gold != std::int64_t(w) && rankings[j].gold != std::int64_t(l)) {
              ++sample_pairs;
              samples += right;
            }
          }
          // Each pair read in both orders, so every bin sees predictions on both sides of 1/2.
          for (const double sign : {1.0, -1.0}) {
            const double prob = 1.0 / (1.0 + std::exp(-sign * margin));
            const auto bin = std::min<std::size_t>(9, static_cast<std::size_t>(prob * 10));
            predicted[bin] += prob;
            observed[bin] += sign > 0 ? 1.0 : 0.0;
            count[bin] += 1;
          }
        }
    }
  }
  const auto rate = [](std::size_t k, std::size_t n) { return double(k) / double(std::max<std::size_t>(n, 1)); };
  a.with_labels = rate(labels, a.pairs);
  a.with_oracle = rate(oracle, oracle_pairs);
  a.with_oracle_samples_only = rate(samples, sample_pairs);
  double total = 0;
  for (std::size_t b = 0; b < 10; ++b) {
    if (count[b] == 0) continue;
    a.calibration_error += std::abs(predicted[b] - observed[b]);
    total += count[b];
    a.bins.push_back({{"bin", b},
                      {"pairs", count[b]},
                      {"predicted", predicted[b] / count[b]},
                      {"observed", observed[b] / count[b]}});
  }
  a.calibration_error /= std::max(total, 1.0);
  return a;
}

}  // namespace

void train_reward_model(const run_context& ctx) {
  const auto& c = ctx.settings();
  const auto dir = ctx.path("rm");
  if (main_has(dir / "model.pt")) return;
  fs::create_directories(dir);
  const auto train = read_rankings(ctx.path("pairs/train.jsonl")), valid = read_rankings(ctx.path("pairs/valid.jsonl"));
  seed_global_generator(derive_seed(c.seed, purpose::rm_init));  // the head's initial weights
  RewardModel rm(c.model);
  place(rm);
  {
    Gpt sft(c.model);
    load_model(ctx.path("sft/model.pt"), *sft);
    rm->load_backbone(sft);
  }
  torch::optim::AdamW opt(rm->parameters(), torch::optim::AdamWOptions(c.rm.lr).weight_decay(c.rm.weight_decay));
  const auto batch = static_cast<std::size_t>(c.rm.batch);
  const auto per_epoch = static_cast<std::int64_t>((train.size() + batch - 1) / batch);
  const auto total = per_epoch * c.rm.epochs;
  const auto state = dir / "state.pt";
  std::int64_t step = resume_from(state, *rm, opt);
  dist::overlapped_gradients overlap(ranks(), rm->parameters());
  if (step > 0) ctx.log().info("rm: resuming at step {}", step);
  rm->train();
  progress bar("reward model", total, "steps", step);
  double smoothed = NAN, smoothed_acc = NAN;
  for (; step < total; ++step) {
    const auto epoch = step / per_epoch;
    const auto within = static_cast<std::size_t>(step % per_epoch);
    const auto order =
        permutation(train.size(), derive_seed(c.seed, purpose::rm_order, static_cast<std::uint64_t>(epoch)));
    const auto first = within * batch, last = std::min(train.size(), first + batch);
    // This rank's share of the batch's rankings; each ranking has k(k-1)/2 comparisons, so the
    // batch's mean is the share's mean weighted by its share of the rankings.
    const auto [begin, end] = my_share(last - first);
    const double weight = double(end - begin) / double(last - first);
    torch::Tensor loss;
    double acc = 0;
    if (begin < end) {
      const auto r = ranking_rewards(rm, ctx.train(), train, order, first + begin, first + end);
      const auto [share_loss, share_acc] = ranking_loss(r, train, order, first + begin);
      loss = share_loss * weight;
      acc = share_acc * weight;
    }
    optimizer_step(opt, loss, rm->parameters(), warmup_cosine(c.rm.lr, step, total), 1.0, overlap);
    double l = loss.defined() ? loss.item<double>() : 0.0;
    sum_over_ranks({&l, &acc});
    smoothed = std::isnan(smoothed) ? l : 0.95 * smoothed + 0.05 * l;
    smoothed_acc = std::isnan(smoothed_acc) ? acc : 0.95 * smoothed_acc + 0.05 * acc;
    char status[80];
    std::snprintf(status, sizeof status, "loss %.3f  accuracy %.1f%%", smoothed, 100 * smoothed_acc);
    bar.advance(1, status);
    if ((step + 1) % c.rm.checkpoint_every == 0 && step + 1 < total) save_state(state, *rm, opt, step + 1);
  }
  bar.finish();
  const auto a = held_out(rm, ctx, valid);
  ctx.log().info(
      "rm: held-out agreement {:.1f}% with the labels, {:.1f}% with the noiseless oracle ({:.1f}% on pairs "
      "of two samples), calibration error {:.3f} ({} comparisons)",
      100 * a.with_labels, 100 * a.with_oracle, 100 * a.with_oracle_samples_only, a.calibration_error, a.pairs);
  save_model(dir / "model.pt", *rm);
  atomic_write_text(dir / "metrics.json", json{{"valid_comparisons", a.pairs},
                                               {"agreement_with_labels", a.with_labels},
                                               {"agreement_with_oracle", a.with_oracle},
                                               {"agreement_with_oracle_samples_only", a.with_oracle_samples_only},
                                               {"calibration_error", a.calibration_error},
                                               {"calibration", a.bins},
                                               {"seconds", bar.elapsed_seconds()}}
                                              .dump(2));
  if (ranks().is_main()) fs::remove(state);
  ranks().barrier();
}

}  // namespace tldr
