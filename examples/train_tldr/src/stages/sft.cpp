// Stage sft: maximum likelihood of the gold summary given the prompt (loss on the summary tokens).

#include "checkpoint.hpp"
#include "device.hpp"
#include "hf_model.hpp"
#include "progress.hpp"
#include "ranks.hpp"
#include "sampler.hpp"
#include "seeds.hpp"
#include "stages.hpp"
#include "training.hpp"

#include <cmath>
#include <cstdio>

namespace tldr {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
std::int64_t token_count(const std::vector<tokens>& responses) {
  std::int64_t n = 0;
  for (const auto& r : responses) n += static_cast<std::int64_t>(r.size());
  return n;
}
}  // namespace

void train_sft(const run_context& ctx) {
  const auto& c = ctx.settings();
  const auto dir = ctx.path("sft");
  if (main_has(dir / "model.pt")) return;
  fs::create_directories(dir);
  seed_global_generator(derive_seed(c.seed, purpose::sft_init));
  // From the model folder's weights when there is one (the reward model then starts from this
  // SFT model, as in InstructGPT and the paper), else GPT-2's random initialisation.
  Gpt model = c.model_dir.empty() ? Gpt(c.model) : load_hf_model(c.model_dir);
  place(model);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(c.sft.lr).weight_decay(c.sft.weight_decay));
  const auto state = dir / "state.pt";
  std::int64_t step = resume_from(state, *model, opt);
  dist::overlapped_gradients overlap(ranks(), model->parameters());
  if (step > 0)
    ctx.log().info("sft: resuming at step {}", step);
  else
    ctx.log().info("sft: GPT with {} parameters, {} training examples", parameter_count(*model), ctx.train().size());
  model->train();
  const auto& train = ctx.train();
  const auto n = train.size();
  const auto batch = static_cast<std::size_t>(c.sft.batch);
  std::vector<std::size_t> order;
  std::int64_t order_epoch = -1;
  progress bar("sft", c.sft.steps, "steps", step);
  double smoothed = NAN;
  for (; step < c.sft.steps; ++step) {
    std::vector<tokens> prompts, responses;
    for (std::size_t j = 0; j < batch; ++j) {
      const auto g = static_cast<std::size_t>(step) * batch + j;
      if (const auto epoch = static_cast<std::int64_t>(g / n); epoch != order_epoch) {
        order = permutation(n, derive_seed(c.seed, purpose::sft_order, static_cast<std::uint64_t>(epoch)));
        order_epoch = epoch;
      }
      const auto& e = train[order[g % n]];
      prompts.push_back(e.prompt);
      responses.push_back(e.gold);
    }
    // This rank's share of the batch, its summed log-likelihood over the whole batch's tokens.
    const auto [begin, end] = my_share(batch);
    torch::Tensor loss;
    if (begin < end)
      loss = -sequence_log_prob(model, slice(prompts, begin, end), slice(responses, begin, end), tokenizer::pad_id, 0)
                  .sum() /
             double(token_count(responses));
    optimizer_step(opt, loss, model->parameters(), warmup_cosine(c.sft.lr, step, c.sft.steps), 1.0, overlap);
    const double l = ranks().sum(loss.defined() ? loss.item<double>() : 0.0);
    smoothed = std::isnan(smoothed) ? l : 0.95 * smoothed + 0.05 * l;
    char status[64];
    std::snprintf(status, sizeof status, "loss/token %.3f", smoothed);
    bar.advance(1, status);
    if ((step + 1) % c.sft.checkpoint_every == 0 && step + 1 < c.sft.steps) save_state(state, *model, opt, step + 1);
  }
  bar.finish();
  // Held-out per-token loss, to see that SFT learned something transferable.
  model->eval();
  double nll = 0;
  std::int64_t count = 0;
  {
    torch::NoGradGuard no_grad;
    const auto k = std::min<std::size_t>(ctx.valid().size(), 512);
    const auto prompts = run_context::prompts_of(ctx.valid(), k), golds = run_context::golds_of(ctx.valid(), k);
    const auto [begin, end] = my_share(k);
    if (begin < end)
      nll = -sequence_log_prob(model, slice(prompts, begin, end), slice(golds, begin, end), tokenizer::pad_id, 64)
                 .sum()
                 .item<double>();
    nll = ranks().sum(nll);
    count = token_count(golds);
  }
  const double per_token = nll / double(std::max<std::int64_t>(count, 1));
  ctx.log().info("sft: validation loss {:.3f} nats/token", per_token);
  save_model(dir / "model.pt", *model);
  atomic_write_text(dir / "metrics.json", json{{"valid_loss_per_token", per_token},
                                               {"parameters", parameter_count(*model)},
                                               {"seconds", bar.elapsed_seconds()}}
                                              .dump(2));
  if (ranks().is_main()) fs::remove(state);
  ranks().barrier();  // the model is on disk before any rank reads it
}

}  // namespace tldr
