// Stage evaluate: one summary per test prompt from a model, scored by the training reward model,
// the oracle and reference metrics the labels never saw (ROUGE-L, chrF against the gold summary),
// with the model's KL from SFT on the same prompts. One file per (model, temperature, seed).

#include "device.hpp"
#include "ranks.hpp"
#include "checkpoint.hpp"
#include "metrics.hpp"
#include "progress.hpp"
#include "sampler.hpp"
#include "seeds.hpp"
#include "stages.hpp"
#include "training.hpp"

#include <fstream>

namespace tldr {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
std::size_t test_count(const run_context& ctx) {
  const auto n = ctx.settings().eval.test_prompts;
  return n > 0 ? std::min<std::size_t>(ctx.test().size(), std::size_t(n)) : ctx.test().size();
}

RewardModel load_rm(const run_context& ctx) {
  RewardModel rm(ctx.settings().model);
  place(rm);
  load_model(ctx.path("rm/model.pt"), *rm);
  rm->eval();
  return rm;
}

Gpt load_gpt(const run_context& ctx, const fs::path& file) {
  Gpt model(ctx.settings().model);
  place(model);
  load_model(file, *model);
  model->eval();
  return model;
}
}  // namespace

void evaluate_gold(const run_context& ctx) {
  const auto file = ctx.path("eval/gold.jsonl");
  if (main_has(file)) return;
  torch::NoGradGuard no_grad;
  const auto [begin, end] = my_share(test_count(ctx));  // data parallel: each rank its share of the prompts
  auto rm = load_rm(ctx);
  std::vector<std::string> lines;
  if (begin < end) {
    const auto prompts = run_context::prompts_of(ctx.test(), end), golds = run_context::golds_of(ctx.test(), end);
    const auto r = rm->score(slice(prompts, begin, end), slice(golds, begin, end), tokenizer::pad_id).cpu();
    for (std::size_t i = begin; i < end; ++i) {
      const auto& e = ctx.test()[i];
      lines.push_back(json{{"id", e.id},
                           {"gold", e.gold_text},
                           {"rm", r[long(i - begin)].item<double>()},
                           {"oracle", ctx.oracle().score(e.post, e.gold_text)},
                           {"words", word_count(e.gold_text)}}
                          .dump() +
                      "\n");
    }
  }
  std::string out;
  for (const auto& line : gather_shares(lines)) out += line;
  atomic_write_text(file, out);
  ranks().barrier();
}

void evaluate_model(const run_context& ctx, const std::string& name, const fs::path& model_file, double temperature,
                    std::uint64_t seed, std::size_t prompt_limit) {
  const auto file = ctx.path("eval/" + name + ".jsonl");
  if (main_has(file)) return;
  torch::NoGradGuard no_grad;
  // Data parallel: each rank its share of the prompts, samples keyed by the prompt's index.
  const auto [begin, end] = my_share(prompt_limit > 0 ? std::min(prompt_limit, test_count(ctx)) : test_count(ctx));
  auto rm = load_rm(ctx);
  auto policy = load_gpt(ctx, model_file);
  auto prior = load_gpt(ctx, ctx.path("sft/model.pt"));
  const auto prompts = slice(run_context::prompts_of(ctx.test(), end), begin, end);
  const auto keys = indices(begin, end);
  progress bar("eval/" + name, 3, "passes");
  std::vector<std::string> lines;
  if (!prompts.empty()) {
    const auto drawn =
        sample(policy, prompts, ctx.decoding(1, temperature), derive_seed(seed, purpose::test_sampling), keys);
    const auto texts = ctx.tok().decode(drawn.responses);
    const auto reward = rm->score(prompts, drawn.responses, tokenizer::pad_id).cpu();
    bar.advance();
    // KL(policy ‖ SFT) per prompt from one sample of the policy itself (temperature 1).
    const auto own = sample(policy, prompts, ctx.decoding(1, 1.0), derive_seed(seed, purpose::test_kl_sampling), keys);
    const auto kl = (own.log_model.to(torch::kFloat64) -
                     sequence_log_prob(prior, prompts, own.responses, tokenizer::pad_id).to(torch::kFloat64))
                        .cpu();
    bar.advance();
    for (std::size_t i = begin; i < end; ++i) {
      const auto& e = ctx.test()[i];
      const auto& text = texts[i - begin];
      lines.push_back(json{{"id", e.id},
                           {"summary", text},
                           {"rm", reward[long(i - begin)].item<double>()},
                           {"oracle", ctx.oracle().score(e.post, text)},
                           {"rouge_l", rouge_l_f1(text, e.gold_text)},
                           {"chrf", chrf(text, e.gold_text)},
                           {"words", word_count(text)},
                           {"kl", kl[long(i - begin)].item<double>()}}
                          .dump() +
                      "\n");
    }
  }
  std::string out;
  for (const auto& line : gather_shares(lines)) out += line;
  atomic_write_text(file, out);
  bar.finish();
  ranks().barrier();
}

double validate_temperature(const run_context& ctx, const std::string& name, const fs::path& model_file,
                            double temperature, std::uint64_t seed) {
  const auto file = ctx.path("sweep/temperature/" + name + ".json");
  if (main_has(file)) return json::parse(read_text(file)).at("rm_mean").get<double>();
  torch::NoGradGuard no_grad;
  auto policy = load_gpt(ctx, model_file);
  auto rm = load_rm(ctx);
  const auto count = std::min<std::size_t>(ctx.valid().size(), std::size_t(ctx.settings().eval.valid_prompts));
  const auto [begin, end] = my_share(count);  // data parallel: each rank its share, keyed by index
  double mean = 0;
  if (begin < end) {
    const auto prompts = slice(run_context::prompts_of(ctx.valid(), end), begin, end);
    const auto drawn = sample(policy, prompts, ctx.decoding(1, temperature),
                              derive_seed(seed, purpose::valid_sampling, 2), indices(begin, end));
    mean =
        rm->score(prompts, drawn.responses, tokenizer::pad_id).to(torch::kFloat64).sum().item<double>() / double(count);
  }
  mean = ranks().sum(mean);
  atomic_write_text(file,
                    json{{"model", model_file.string()}, {"temperature", temperature}, {"rm_mean", mean}}.dump(2));
  ranks().barrier();
  return mean;
}

eval_columns read_eval(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  eval_columns c;
  std::string line;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    try {
      const auto j = json::parse(line);
      c.rm.push_back(j.at("rm"));
      c.oracle.push_back(j.at("oracle"));
      c.words.push_back(j.at("words"));
      if (j.contains("kl")) {  // a model's file; the gold file has none of these
        c.rouge_l.push_back(j.at("rouge_l"));
        c.chrf.push_back(j.at("chrf"));
        c.kl.push_back(j.at("kl"));
      }
    } catch (const json::exception& e) {
      throw std::runtime_error(file.string() + ":" + std::to_string(number) + ": " + e.what());
    }
  }
  return c;
}

}  // namespace tldr
