// Stage pairs: the simulated labellers. Per prompt, k SFT samples (for a share of prompts the last
// one replaced by the gold summary), ranked by the oracle's scores with Plackett–Luce noise: each
// pair's order then follows Bradley–Terry (eq. 16's model), as human labellers disagree with any
// fixed judge. k(k-1)/2 comparisons per prompt, as InstructGPT's K-way rankings.
// Written in chunks of prompts, each with its own seeds, so a killed run resumes at its chunk.

#include "device.hpp"
#include "ranks.hpp"
#include "checkpoint.hpp"
#include "progress.hpp"
#include "sampler.hpp"
#include "seeds.hpp"
#include "stages.hpp"
#include "training.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>

namespace tldr {
namespace fs = std::filesystem;
using nlohmann::json;

std::vector<std::size_t> noisy_ranking(const std::vector<double>& scores, double temperature, std::uint64_t seed) {
  if (!(temperature > 0))
    throw std::invalid_argument("noisy_ranking: temperature = " + std::to_string(temperature) + " must be > 0");
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> key(scores.size());
  for (std::size_t i = 0; i < scores.size(); ++i) key[i] = scores[i] / temperature - std::log(-std::log(u(rng)));
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return key[a] > key[b]; });
  return order;
}

std::vector<preference_record> pairs_of(const ranking_record& r) {
  std::vector<preference_record> out;
  for (std::size_t a = 0; a < r.order.size(); ++a)
    for (std::size_t b = a + 1; b < r.order.size(); ++b) {
      const auto w = r.order[a], l = r.order[b];
      out.push_back({r.index, r.responses[w], r.responses[l], r.oracle[w], r.oracle[l],
                     r.gold == std::int64_t(w) || r.gold == std::int64_t(l)});
    }
  return out;
}

std::vector<ranking_record> read_rankings(const fs::path& file) {
  std::vector<ranking_record> out;
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  std::string line;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    try {
      const auto j = json::parse(line);
      ranking_record r{j.at("index").get<std::size_t>(), j.at("responses").get<std::vector<tokens>>(),
                       j.at("oracle").get<std::vector<double>>(), j.at("order").get<std::vector<std::size_t>>(),
                       j.at("gold").get<std::int64_t>()};
      const auto k = r.responses.size();
      std::vector<std::size_t> sorted = r.order;
      std::sort(sorted.begin(), sorted.end());
      std::vector<std::size_t> expected(k);
      std::iota(expected.begin(), expected.end(), std::size_t{0});
      if (k < 2 || r.oracle.size() != k || sorted != expected || r.gold < -1 || r.gold >= std::int64_t(k))
        throw std::runtime_error(
            "a ranking needs k >= 2 responses, k oracle scores, an order that is a permutation "
            "of 0..k-1 and gold in [-1, k)");
      out.push_back(std::move(r));
    } catch (const std::exception& e) {
      throw std::runtime_error(file.string() + ":" + std::to_string(number) + ": " + e.what());
    }
  }
  return out;
}

namespace {

/// The rankings of one split: `count` prompts in a seeded order, `stream` separating the splits' seeds.
void make_split(const run_context& ctx, Gpt& sft, const std::vector<encoded_example>& split, std::int64_t count,
                const std::string& name, std::uint64_t stream) {
  const auto& c = ctx.settings();
  const auto dir = ctx.path("pairs");
  const auto k = static_cast<std::size_t>(c.pairs.responses);
  const auto order = permutation(split.size(), derive_seed(c.seed, purpose::pairs_prompts, stream));
  const auto prompts_total = std::min<std::size_t>(split.size(), static_cast<std::size_t>(count));
  const auto chunk_prompts = static_cast<std::size_t>(c.pairs.chunk_prompts);
  const auto chunks = (prompts_total + chunk_prompts - 1) / chunk_prompts;
  const auto part = [&](std::size_t i) { return dir / (name + ".part" + std::to_string(i) + ".jsonl"); };
  std::size_t done = 0;
  while (done < chunks && main_has(part(done))) ++done;
  progress bar("pairs/" + name, static_cast<std::int64_t>(prompts_total), "prompts",
               static_cast<std::int64_t>(std::min(prompts_total, done * chunk_prompts)));
  for (std::size_t chunk = done; chunk < chunks; ++chunk) {
    const auto chunk_first = chunk * chunk_prompts, chunk_last = std::min(prompts_total, chunk_first + chunk_prompts);
    // This rank's share of the chunk; samples and labels are keyed by the prompt's place in the
    // order, so they are the same whatever the chunk size and whichever rank draws them.
    const auto [share_begin, share_end] = my_share(chunk_last - chunk_first);
    const auto first = chunk_first + share_begin, last = chunk_first + share_end;
    std::vector<tokens> prompts;
    for (std::size_t i = first; i < last; ++i) prompts.push_back(split[order[i]].prompt);
    const auto keys = indices(first, last);
    const auto drawn = prompts.empty() ? samples{}
                                       : sample(sft, prompts, ctx.decoding(std::int64_t(k), 1.0),
                                                derive_seed(c.seed, purpose::pairs_sampling, stream), keys);
    const auto texts = ctx.tok().decode(drawn.responses);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::vector<std::string> lines;
    for (std::size_t i = first; i < last; ++i) {
      const auto& e = split[order[i]];
      std::mt19937_64 rng(derive_seed(c.seed, purpose::pairs_labels, stream, i));
      ranking_record r{order[i], {}, {}, {}, -1};
      for (std::size_t j = 0; j < k; ++j) {
        r.responses.push_back(drawn.responses[(i - first) * k + j]);
        r.oracle.push_back(ctx.oracle().score(e.post, texts[(i - first) * k + j]));
      }
      if (u(rng) < c.pairs.gold_fraction) {
        r.gold = std::int64_t(k - 1);
        r.responses.back() = e.gold;
        r.oracle.back() = ctx.oracle().score(e.post, e.gold_text);
      }
      r.order = noisy_ranking(r.oracle, c.pairs.label_temperature, rng());
      lines.push_back(json{{"example", e.id},
                           {"index", r.index},
                           {"responses", r.responses},
                           {"oracle", r.oracle},
                           {"order", r.order},
                           {"gold", r.gold}}
                          .dump() +
                      "\n");
    }
    std::string out;
    for (const auto& line : gather_shares(lines)) out += line;
    atomic_write_text(part(chunk), out);
    bar.advance(static_cast<std::int64_t>(chunk_last - chunk_first));
  }
  bar.finish();
  ranks().barrier();  // every part on disk
  if (ranks().is_main()) {
    std::string all;
    for (std::size_t chunk = 0; chunk < chunks; ++chunk) all += read_text(part(chunk));
    atomic_write_text(dir / (name + ".jsonl"), all);
    for (std::size_t chunk = 0; chunk < chunks; ++chunk) fs::remove(part(chunk));
  }
  ranks().barrier();
  std::size_t agree = 0, pairs = 0;
  for (const auto& r : read_rankings(dir / (name + ".jsonl")))
    for (const auto& p : pairs_of(r))
      if (p.oracle_chosen != p.oracle_rejected) {
        ++pairs;
        agree += p.oracle_chosen > p.oracle_rejected;
      }
  ctx.log().info(
      "pairs/{}: {} prompts × {} responses, {} comparisons; the labels agree with the noiseless oracle on "
      "{:.1f}% of the untied ones",
      name, prompts_total, k, prompts_total * k * (k - 1) / 2,
      100.0 * double(agree) / double(std::max<std::size_t>(pairs, 1)));
}
}  // namespace

void make_pairs(const run_context& ctx) {
  const auto dir = ctx.path("pairs");
  if (main_has(dir / "valid.jsonl")) return;
  fs::create_directories(dir);
  Gpt sft(ctx.settings().model);
  place(sft);
  load_model(ctx.path("sft/model.pt"), *sft);
  if (!main_has(dir / "train.jsonl")) make_split(ctx, sft, ctx.train(), ctx.settings().pairs.train_prompts, "train", 0);
  make_split(ctx, sft, ctx.valid(), ctx.settings().pairs.valid_prompts, "valid", 1);
}

}  // namespace tldr
