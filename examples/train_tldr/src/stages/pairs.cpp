// Stage pairs: the simulated labellers. Two SFT samples per prompt (or, for a share of prompts, a
// sample against the gold summary); the preferred one is drawn from the oracle's scores with
// Bradley–Terry noise (eq. 16's model), as human labellers disagree with any fixed judge.
// Written in chunks of prompts, each with its own seeds, so a killed run resumes at its chunk.

#include "checkpoint.hpp"
#include "progress.hpp"
#include "sampler.hpp"
#include "seeds.hpp"
#include "stages.hpp"
#include "training.hpp"

#include <cmath>
#include <fstream>
#include <random>

namespace tldr {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

/// The pairs of one split: `count` prompts in a seeded order, `stream` separating the splits' seeds.
void make_split(const run_context& ctx, Gpt& sft, const std::vector<encoded_example>& split, std::int64_t count,
                const std::string& name, std::uint64_t stream) {
  const auto& c = ctx.settings();
  const auto dir = ctx.path("pairs");
  const auto order = permutation(split.size(), derive_seed(c.seed, purpose::pairs_prompts, stream));
  const auto k = std::min<std::size_t>(split.size(), static_cast<std::size_t>(count));
  const auto chunk_prompts = static_cast<std::size_t>(c.pairs.chunk_prompts);
  const auto chunks = (k + chunk_prompts - 1) / chunk_prompts;
  const auto part = [&](std::size_t i) { return dir / (name + ".part" + std::to_string(i) + ".jsonl"); };
  std::size_t done = 0;
  while (done < chunks && fs::exists(part(done))) ++done;
  progress bar("pairs/" + name, static_cast<std::int64_t>(k), "prompts",
               static_cast<std::int64_t>(std::min(k, done * chunk_prompts)));
  for (std::size_t chunk = done; chunk < chunks; ++chunk) {
    const auto first = chunk * chunk_prompts, last = std::min(k, first + chunk_prompts);
    std::vector<tokens> prompts;
    for (std::size_t i = first; i < last; ++i) prompts.push_back(split[order[i]].prompt);
    auto gen = cpu_generator(derive_seed(c.seed, purpose::pairs_sampling, stream, chunk));
    const auto drawn = sample(sft, prompts, ctx.decoding(2, 1.0), gen);
    const auto texts = ctx.tok().decode(drawn.responses);
    std::mt19937_64 rng(derive_seed(c.seed, purpose::pairs_labels, stream, chunk));
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::string out;
    for (std::size_t i = first; i < last; ++i) {
      const auto& e = split[order[i]];
      const auto j = 2 * (i - first);
      tokens a = drawn.responses[j], b = drawn.responses[j + 1];
      std::string ta = texts[j], tb = texts[j + 1];
      const bool against_gold = u(rng) < c.pairs.gold_fraction;
      if (against_gold) {
        b = e.gold;
        tb = e.gold_text;
      }
      const double sa = ctx.oracle().score(e.post, ta), sb = ctx.oracle().score(e.post, tb);
      const double p_a = 1.0 / (1.0 + std::exp(-(sa - sb) / c.pairs.label_temperature));
      const bool a_wins = u(rng) < p_a;
      out += json{{"example", e.id}, {"index", order[i]}, {"chosen", a_wins ? a : b}, {"rejected", a_wins ? b : a},
                  {"oracle_chosen", a_wins ? sa : sb}, {"oracle_rejected", a_wins ? sb : sa},
                  {"against_gold", against_gold}}.dump() + "\n";
    }
    atomic_write_text(part(chunk), out);
    bar.advance(static_cast<std::int64_t>(last - first));
  }
  bar.finish();
  std::string all;
  for (std::size_t chunk = 0; chunk < chunks; ++chunk) all += read_text(part(chunk));
  atomic_write_text(dir / (name + ".jsonl"), all);
  for (std::size_t chunk = 0; chunk < chunks; ++chunk) fs::remove(part(chunk));
  const auto pairs = read_pairs(dir / (name + ".jsonl"));
  std::size_t agree = 0;
  for (const auto& p : pairs) agree += p.oracle_chosen >= p.oracle_rejected;
  ctx.log().info("pairs/{}: {} pairs, labels agree with the noiseless oracle on {:.1f}%", name, pairs.size(),
                 100.0 * double(agree) / double(std::max<std::size_t>(pairs.size(), 1)));
}
}  // namespace

std::vector<preference_record> read_pairs(const fs::path& file) {
  std::vector<preference_record> out;
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  std::string line;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    try {
      const auto j = json::parse(line);
      out.push_back({j.at("index").get<std::size_t>(), j.at("chosen").get<tokens>(), j.at("rejected").get<tokens>(),
                     j.at("oracle_chosen").get<double>(), j.at("oracle_rejected").get<double>(),
                     j.at("against_gold").get<bool>()});
    } catch (const json::exception& e) {
      throw std::runtime_error(file.string() + ":" + std::to_string(number) + ": " + e.what());
    }
  }
  return out;
}

void make_pairs(const run_context& ctx) {
  const auto dir = ctx.path("pairs");
  if (fs::exists(dir / "valid.jsonl")) return;
  fs::create_directories(dir);
  Gpt sft(ctx.settings().model);
  load_model(ctx.path("sft/model.pt"), *sft);
  if (!fs::exists(dir / "train.jsonl")) make_split(ctx, sft, ctx.train(), ctx.settings().pairs.train_prompts, "train", 0);
  make_split(ctx, sft, ctx.valid(), ctx.settings().pairs.valid_prompts, "valid", 1);
}

}  // namespace tldr
