// `train_tldr study` (docs/train_tldr.md, "The protocol"), in this order:
//   1. the pre-registration (study/preregistration.json): the comparisons, seeds, margin and levels,
//      written before anything is trained; a study whose configuration no longer matches it stops;
//   2. the sweep (sweep/choice.json): per swept arm, β then the learning rate at the sweep's own seed,
//      each axis extended past an edge choice (the edge rule), then the decoding temperature; every
//      choice by the reward model on the validation split, the oracle sealed;
//   3. every row with fresh seeds (runs stop early once their validation reward stops improving);
//   4. the test split: every row's chosen checkpoint, and every checkpoint of the first seeds for
//      the curves, under the oracle, the reward model, ROUGE-L and chrF;
//   5. the tables: pre-registered comparisons with hierarchical-bootstrap intervals and verdicts,
//      the paper's tables, convergence, reward–KL at matched KL, the sweep; the curves as plots.

#include "checkpoint.hpp"
#include "fail.hpp"
#include "ranks.hpp"
#include "runs.hpp"
#include "seeds.hpp"
#include "stats.hpp"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

namespace tldr {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// ---- rows: an arm at its own chosen settings, or "arm@other" at another arm's --------------------

struct study_row {
  std::string id, arm, settings_arm, label;
  std::int64_t samples = 0;  ///< n of its runs
};

study_row row_of(const std::string& id, std::int64_t samples) {
  if (id == "sft") return {"sft", "", "", "SFT", 0};
  const auto at = id.find('@');
  const std::string arm = id.substr(0, at);
  const auto& a = find_arm(arm);
  if (at == std::string::npos) return {id, arm, a.settings_from, a.label, samples};
  const auto& other = find_arm(id.substr(at + 1));
  if (!other.swept()) fail("study row '", id, "': '", other.id, "' has no swept settings to lend");
  return {id, arm, other.id, a.label + " at " + other.label + "'s settings", samples};
}

std::pair<std::string, std::string> sides_of(const std::string& comparison) {
  const auto colon = comparison.find(':');
  return {comparison.substr(0, colon), comparison.substr(colon + 1)};
}

// ---- 1. the pre-registration --------------------------------------------------------------------

json preregistration_of(const config& c) {
  const auto& s = c.study;
  const double level = 1.0 - 0.05 / static_cast<double>(std::max<std::size_t>(1, s.primaries.size()));
  return {{"primaries", s.primaries},
          {"secondaries", s.secondaries},
          {"metric", "mean oracle score on the test split, ours − theirs, seed by seed and prompt by prompt"},
          {"interval", "hierarchical percentile bootstrap: seeds with replacement, then prompts within each seed"},
          {"primary_level", level},
          {"secondary_level", 0.95},
          {"margin", s.margin},
          {"verdict", "ahead: interval above 0; behind: below 0; level: inside (−margin, margin); else undecided"},
          {"study_seeds", {s.first_seed, s.seeds, s.other_seeds}},
          {"sweep_seed", s.sweep_seed},
          {"selection",
           "β, learning rate, decoding temperature and checkpoints by the reward model's mean score on "
           "the validation split; the oracle is sealed until the test stage"}};
}

void preregister(const run_context& ctx, spdlog::logger& log) {
  const auto file = ctx.path("study/preregistration.json");
  const auto wanted = preregistration_of(ctx.settings());
  if (main_has(file)) {
    if (json::parse(read_text(file)) != wanted)
      fail(file.string(),
           " pre-registered other comparisons, seeds or rules than this command asks for; a study "
           "keeps what it registered before its runs (start a new --workdir for another study)");
    return;
  }
  if (ranks().is_main()) atomic_write_text(file, wanted.dump(2));
  ranks().barrier();
  log.info("study: pre-registered {} primary comparisons in {}", ctx.settings().study.primaries.size(), file.string());
}

// ---- 2. the sweep ------------------------------------------------------------------------------

/// The best validation reward of a finished run (its chosen checkpoint's), and how far it trained.
struct run_result {
  double rm_mean = -1e300;
  std::int64_t refreshes = 0, best_refresh = 0, steps = 0;
};
run_result result_of(const run_context& ctx, const run_spec& r) {
  run_result out;
  for (const auto& p : read_history(run_dir(ctx, r) / "history.json")) {
    if (p.refresh == 0) continue;  // SFT, never a candidate
    out.refreshes = p.refresh, out.steps = p.step;
    if (p.rm_mean > out.rm_mean) out.rm_mean = p.rm_mean, out.best_refresh = p.refresh;
  }
  return out;
}

/// One axis of an arm's search: the values tried, in order, and how the choice ended.
struct axis {
  std::vector<double> values;
  double lo = 0, hi = 0;  ///< the limits
  std::string note;       ///< "interior", "at the lower limit", "at the upper limit", "budget spent"
  std::optional<double> chosen;
};

/// The next value past an edge choice (the grid's own ratio at that end), or none when the choice is
/// interior or the limit or the budget stops the search (note says which).
std::optional<double> extend(axis& a, double best, bool budget_left) {
  std::sort(a.values.begin(), a.values.end());
  const auto n = a.values.size();
  const bool low_edge = best == a.values.front(), high_edge = best == a.values.back();
  if (n < 2 || (!low_edge && !high_edge)) return a.note = "interior", std::nullopt;
  const double next =
      high_edge ? a.values[n - 1] * (a.values[n - 1] / a.values[n - 2]) : a.values[0] / (a.values[1] / a.values[0]);
  if (next > a.hi * (1 + 1e-9) || next < a.lo * (1 - 1e-9))
    return a.note = high_edge ? "at the upper limit" : "at the lower limit", std::nullopt;
  if (!budget_left) return a.note = "budget spent", std::nullopt;
  return next;
}

/// The search of one swept arm: β at the middle learning rate, then the learning rate at the chosen β.
struct arm_search {
  std::string arm;
  axis beta, lr;
  double lr0 = 0;
  std::map<std::pair<double, double>, run_spec> runs;

  [[nodiscard]] bool done() const { return beta.chosen && lr.chosen; }
  [[nodiscard]] std::vector<std::pair<double, double>> wanted() const {
    std::vector<std::pair<double, double>> out;
    if (!beta.chosen)
      for (double b : beta.values) out.push_back({b, lr0});
    else if (!lr.chosen)
      for (double l : lr.values) out.push_back({*beta.chosen, l});
    return out;
  }
};

run_spec sweep_run(const config& c, const std::string& arm, double beta, double lr) {
  return {arm,
          c.align.samples,
          c.study.sweep_seed,
          {beta, lr, c.eval.valid_temperature},
          c.study.refreshes,
          c.study.patience};
}

/// After the wanted runs finished: extend the current axis past an edge choice, or fix it.
void advance(const run_context& ctx, arm_search& s) {
  const auto& c = ctx.settings();
  const bool budget_left = static_cast<std::int64_t>(s.runs.size()) < c.study.trials;
  const auto score = [&](double b, double l) { return result_of(ctx, s.runs.at({b, l})).rm_mean; };
  axis& a = s.beta.chosen ? s.lr : s.beta;
  const auto value_score = [&](double v) { return s.beta.chosen ? score(*s.beta.chosen, v) : score(v, s.lr0); };
  double best = a.values.front();
  for (double v : a.values)
    if (value_score(v) > value_score(best)) best = v;
  if (const auto next = extend(a, best, budget_left))
    a.values.push_back(*next);
  else
    a.chosen = best;
}

/// The searches of every swept arm not in `choice` yet, round by round (each round's runs together).
std::vector<arm_search> search_all(run_context& ctx, const json& choice, const fs::path& self_config,
                                   spdlog::logger& log) {
  const auto& c = ctx.settings();
  std::vector<arm_search> searches;
  for (const auto& a : all_arms())
    if (a.swept() && !(choice.contains("settings") && choice["settings"].contains(a.id))) {
      arm_search s{a.id,
                   {c.study.betas, c.study.beta_min, c.study.beta_max, "", {}},
                   {c.study.lrs, c.study.lr_min, c.study.lr_max, "", {}},
                   0,
                   {}};
      auto sorted = c.study.lrs;
      std::sort(sorted.begin(), sorted.end());
      s.lr0 = sorted[sorted.size() / 2];
      searches.push_back(std::move(s));
    }
  for (int round = 1; std::any_of(searches.begin(), searches.end(), [](const auto& s) { return !s.done(); }); ++round) {
    std::vector<run_spec> runs;
    for (auto& s : searches)
      for (const auto& [b, l] : s.wanted()) {
        if (!s.runs.contains({b, l})) s.runs.emplace(std::pair{b, l}, sweep_run(c, s.arm, b, l));
        runs.push_back(s.runs.at({b, l}));
      }
    log.info("sweep: round {}, {} run(s)", round, runs.size());
    align_all(ctx, runs, self_config, log);
    for (auto& s : searches)
      if (!s.done()) advance(ctx, s);
  }
  return searches;
}

/// The decoding temperature of each chosen model (and SFT), by the validation reward.
void choose_temperatures(run_context& ctx, json& choice, const std::vector<arm_search>& searches,
                         const fs::path& self_config, spdlog::logger& log) {
  const auto& c = ctx.settings();
  std::vector<temperature_trial> trials;
  std::vector<std::string> owners;
  for (const auto& s : searches)
    for (double t : c.study.temperatures) {
      const auto r = s.runs.at({*s.beta.chosen, *s.lr.chosen});
      trials.push_back({r.name() + "-t" + setting_text(t), run_dir(ctx, r) / "best.pt", t});
      owners.push_back(s.arm);
    }
  if (!choice.contains("sft_temperature"))
    for (double t : c.study.temperatures) {
      trials.push_back(
          {"sft-t" + setting_text(t) + "-s" + std::to_string(c.study.sweep_seed), ctx.path("sft/model.pt"), t});
      owners.push_back("sft");
    }
  const auto scores = validate_temperatures(ctx, trials, c.study.sweep_seed, self_config, log);
  std::map<std::string, std::pair<double, double>> best;  // owner → (temperature, score)
  for (std::size_t k = 0; k < trials.size(); ++k) {
    choice["temperatures"].push_back(
        {{"arm", owners[k]}, {"temperature", trials[k].temperature}, {"valid_rm", scores[k]}});
    if (!best.contains(owners[k]) || scores[k] > best[owners[k]].second)
      best[owners[k]] = {trials[k].temperature, scores[k]};
  }
  const auto [lo, hi] = std::minmax_element(c.study.temperatures.begin(), c.study.temperatures.end());
  const auto edge = [&, lo = *lo, hi = *hi](double t) {
    return t == lo || t == hi ? "at the grid's limit" : "interior";
  };
  for (const auto& s : searches)
    choice["settings"][s.arm] = {{"beta", *s.beta.chosen},
                                 {"lr", *s.lr.chosen},
                                 {"temperature", best.at(s.arm).first},
                                 {"valid_rm", result_of(ctx, s.runs.at({*s.beta.chosen, *s.lr.chosen})).rm_mean},
                                 {"beta_edge", s.beta.note},
                                 {"lr_edge", s.lr.note},
                                 {"temperature_edge", edge(best.at(s.arm).first)},
                                 {"trials", s.runs.size()}};
  if (best.contains("sft"))
    choice["sft_temperature"] = {{"temperature", best.at("sft").first}, {"edge", edge(best.at("sft").first)}};
}

/// The sweep: its choice is on disk (sweep/choice.json) before any test number exists. A choice
/// once written never changes; an arm the table gained later is swept and added.
json sweep(run_context& ctx, const fs::path& self_config, spdlog::logger& log) {
  const auto& c = ctx.settings();
  const auto file = ctx.path("sweep/choice.json");
  json choice = main_has(file) ? json::parse(read_text(file))
                               : json{{"seed", c.study.sweep_seed},
                                      {"samples", c.align.samples},
                                      {"selection", "the reward model's mean score on the validation split"}};
  const auto searches = search_all(ctx, choice, self_config, log);
  if (searches.empty() && choice.contains("sft_temperature")) return choice;
  for (const auto& s : searches)
    for (const auto& [bl, r] : s.runs) {
      const auto res = result_of(ctx, r);
      choice["grid"].push_back({{"arm", s.arm},
                                {"beta", bl.first},
                                {"lr", bl.second},
                                {"valid_rm", res.rm_mean},
                                {"refreshes", res.refreshes},
                                {"best_refresh", res.best_refresh}});
    }
  choose_temperatures(ctx, choice, searches, self_config, log);
  atomic_write_text(file, choice.dump(2));
  log.info("sweep: choice written to {}", file.string());
  return choice;
}

// ---- 3. and 4. the runs and their evaluation ------------------------------------------------------

/// Every row of the study with its runs (one per seed) and evaluations.
struct plan {
  std::vector<study_row> rows;
  std::map<std::string, std::vector<run_spec>> runs;           ///< row id → one per seed
  std::map<std::string, std::vector<std::string>> eval_names;  ///< row id → one per seed
  std::vector<evaluation> evals, curve_evals;
  std::map<std::string, std::vector<std::vector<std::pair<std::int64_t, std::string>>>>
      curves;  ///< row → seed → (refresh, eval)
};

std::vector<std::string> row_ids(const config& c) {
  std::vector<std::string> ids{"sft"};
  const auto add = [&](const std::string& id) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  };
  for (const auto& a : all_arms()) add(a.id);
  for (const auto* list : {&c.study.primaries, &c.study.secondaries})
    for (const auto& comparison : *list) {
      const auto [ours, theirs] = sides_of(comparison);
      add(ours), add(theirs);
    }
  return ids;
}

bool primary_row(const config& c, const std::string& id) {
  for (const auto& comparison : c.study.primaries) {
    const auto [ours, theirs] = sides_of(comparison);
    if (ours == id || theirs == id) return true;
  }
  return false;
}

arm_settings chosen_settings(const json& choice, const std::string& arm) {
  const auto& s = choice.at("settings").at(arm);
  return {s.at("beta").get<double>(), s.at("lr").get<double>(), s.at("temperature").get<double>()};
}

plan plan_study(const run_context& ctx, const json& choice) {
  const auto& c = ctx.settings();
  plan p;
  std::vector<std::pair<std::string, std::int64_t>> ids;  // (row id, n)
  for (const auto& id : row_ids(c)) ids.push_back({id, c.align.samples});
  for (const std::string arm : {"brain", "dpo_sft"})
    for (auto n : c.study.samples)
      if (n != c.align.samples) ids.push_back({arm + "-n" + std::to_string(n), n});
  const double sft_t = choice.at("sft_temperature").at("temperature").get<double>();
  for (const auto& [id, n] : ids) {
    const auto dash = id.find("-n");
    study_row row = row_of(dash == std::string::npos ? id : id.substr(0, dash), n);
    row.id = id;
    if (dash != std::string::npos) row.label += ", n = " + std::to_string(n);
    const std::int64_t seeds = dash != std::string::npos           ? c.study.samples_seeds
                               : primary_row(c, id) || id == "sft" ? c.study.seeds
                                                                   : c.study.other_seeds;
    for (std::int64_t k = 0; k < seeds; ++k) {
      const std::uint64_t seed = c.study.first_seed + std::uint64_t(k);
      if (id == "sft") {
        p.evals.push_back(sft_evaluation(ctx, sft_t, seed));
        p.eval_names[id].push_back(p.evals.back().name);
        continue;
      }
      const run_spec r{row.arm,         n, seed, chosen_settings(choice, row.settings_arm), c.study.refreshes,
                       c.study.patience};
      p.runs[id].push_back(r);
      p.evals.push_back(evaluation_of(ctx, r));
      p.eval_names[id].push_back(r.eval_name());
    }
    p.rows.push_back(row);
  }
  return p;
}

/// The curves' evaluations: every checkpoint of the first curve_seeds seeds of each row (not the n
/// sweep's), on the first curve_prompts test prompts, and SFT's at refresh 0.
void plan_curves(const run_context& ctx, plan& p, const json& choice) {
  const auto& c = ctx.settings();
  const double sft_t = choice.at("sft_temperature").at("temperature").get<double>();
  const auto prompts = static_cast<std::size_t>(c.study.curve_prompts);
  for (const auto& row : p.rows) {
    if (row.id == "sft" || row.id.find("-n") != std::string::npos) continue;
    const auto& runs = p.runs.at(row.id);
    for (std::size_t k = 0; k < std::min<std::size_t>(runs.size(), std::size_t(c.study.curve_seeds)); ++k) {
      const auto& r = runs[k];
      std::vector<std::pair<std::int64_t, std::string>> points;
      const auto sft = sft_evaluation(ctx, sft_t, r.seed);
      p.curve_evals.push_back({sft.name + "-curve", sft.model, sft_t, r.seed, prompts});
      points.push_back({0, sft.name + "-curve"});
      for (const auto& v : read_history(run_dir(ctx, r) / "history.json")) {
        if (v.refresh == 0) continue;
        const auto name = r.eval_name() + "-c" + std::to_string(v.refresh);
        p.curve_evals.push_back({name,
                                 run_dir(ctx, r) / "checkpoints" / ("refresh-" + std::to_string(v.refresh) + ".pt"),
                                 r.settings.temperature, r.seed, prompts});
        points.push_back({v.step, name});
      }
      p.curves[row.id].push_back(std::move(points));
    }
  }
}

// ---- 5. the tables -----------------------------------------------------------------------------

/// One comparison: the difference of mean oracle score (and ROUGE-L), its intervals and verdict.
json compare(const run_context& ctx, const plan& p, const std::string& comparison, double level, double margin) {
  const auto [ours, theirs] = sides_of(comparison);
  const auto& a = p.eval_names.at(ours);
  const auto& b = p.eval_names.at(theirs);
  const auto seeds = std::min(a.size(), b.size());
  const auto boot = derive_seed(ctx.settings().seed, purpose::bootstrap);
  json out{{"comparison", comparison}, {"ours", ours}, {"theirs", theirs}, {"seeds", seeds}, {"level", level}};
  for (const std::string metric : {"oracle", "rouge_l"}) {
    std::vector<std::vector<double>> x, y;
    for (std::size_t s = 0; s < seeds; ++s) {
      const auto ea = read_eval(ctx.path("eval/" + a[s] + ".jsonl")),
                 eb = read_eval(ctx.path("eval/" + b[s] + ".jsonl"));
      x.push_back(metric == "oracle" ? ea.oracle : ea.rouge_l);
      y.push_back(metric == "oracle" ? eb.oracle
                                     : (eb.rouge_l.empty() ? std::vector<double>(ea.rouge_l.size(), 0.0) : eb.rouge_l));
    }
    const auto at_level = paired_difference_of(x, y, ctx.settings().eval.bootstrap, boot, level);
    const auto at_95 = paired_difference_of(x, y, ctx.settings().eval.bootstrap, boot, 0.95);
    out[metric] = {{"per_seed", at_level.per_seed}, {"mean", at_level.over_seeds.mean},
                   {"sd", at_level.over_seeds.sd},  {"low", at_level.both.low},
                   {"high", at_level.both.high},    {"low95", at_95.both.low},
                   {"high95", at_95.both.high},     {"seeds_ahead", at_level.seeds_ahead}};
    if (metric == "oracle") out["verdict"] = name_of(verdict_of(at_level.both, margin));
  }
  return out;
}

std::string comparisons_markdown(const json& list, const std::map<std::string, std::string>& labels) {
  std::string md =
      "| comparison | seeds | oracle score, ours − theirs (mean ± sd over seeds) | interval at the "
      "verdict's level | 95% interval | seeds ahead | verdict | ROUGE-L F1, ours − theirs [95%] |\n"
      "|---|---|---|---|---|---|---|---|\n";
  for (const auto& c : list) {
    const auto& o = c.at("oracle");
    const auto& r = c.at("rouge_l");
    md += fmt::format(
        "| {} vs {} | {} | {:+.4f} ± {:.4f} | [{:+.4f}, {:+.4f}] ({:.1f}%) | [{:+.4f}, {:+.4f}] | {}/{} | **{}** | "
        "{:+.4f} [{:+.4f}, {:+.4f}] |\n",
        labels.at(c.at("ours")), labels.at(c.at("theirs")), c.at("seeds").get<std::size_t>(),
        o.at("mean").get<double>(), o.at("sd").get<double>(), o.at("low").get<double>(), o.at("high").get<double>(),
        100 * c.at("level").get<double>(), o.at("low95").get<double>(), o.at("high95").get<double>(),
        o.at("seeds_ahead").get<std::size_t>(), c.at("seeds").get<std::size_t>(), c.at("verdict").get<std::string>(),
        r.at("mean").get<double>(), r.at("low95").get<double>(), r.at("high95").get<double>());
  }
  return md;
}

/// Training length per row: refreshes and steps trained, the chosen checkpoint, early stops.
json convergence_of(const run_context& ctx, const plan& p) {
  json out = json::array();
  for (const auto& row : p.rows) {
    if (!p.runs.contains(row.id)) continue;
    std::vector<double> refreshes, best, steps;
    std::size_t stopped = 0, at_last = 0;
    for (const auto& r : p.runs.at(row.id)) {
      const auto res = result_of(ctx, r);
      refreshes.push_back(double(res.refreshes)), best.push_back(double(res.best_refresh));
      steps.push_back(double(res.steps));
      stopped += res.refreshes < r.refreshes;
      at_last += res.best_refresh == res.refreshes;
    }
    out.push_back({{"id", row.id},
                   {"label", row.label},
                   {"runs", refreshes.size()},
                   {"refreshes", mean_of(refreshes)},
                   {"refreshes_max", *std::max_element(refreshes.begin(), refreshes.end())},
                   {"best_refresh", mean_of(best)},
                   {"steps", mean_of(steps)},
                   {"stopped_early", stopped},
                   {"best_is_last", at_last}});
  }
  return out;
}

std::string convergence_markdown(const json& rows, std::int64_t cap) {
  std::string md = fmt::format(
      "| row | runs | refreshes trained (mean, most) | optimiser steps (mean) | chosen "
      "checkpoint's refresh (mean) | stopped early (of {} at most) | chosen = last |\n"
      "|---|---|---|---|---|---|---|\n",
      cap);
  for (const auto& r : rows)
    md += fmt::format("| {} | {} | {:.1f}, {:.0f} | {:.0f} | {:.1f} | {} | {} |\n", r.at("label").get<std::string>(),
                      r.at("runs").get<std::size_t>(), r.at("refreshes").get<double>(),
                      r.at("refreshes_max").get<double>(), r.at("steps").get<double>(),
                      r.at("best_refresh").get<double>(), r.at("stopped_early").get<std::size_t>(),
                      r.at("best_is_last").get<std::size_t>());
  return md;
}

/// Per row and curve seed: (step, KL, mean oracle score) of every checkpoint on the curve prompts.
json curves_of(const run_context& ctx, const plan& p) {
  json out = json::object();
  for (const auto& [id, seeds] : p.curves)
    for (const auto& points : seeds) {
      json seed = json::array();
      for (const auto& [step, name] : points) {
        const auto e = read_eval(ctx.path("eval/" + name + ".jsonl"));
        seed.push_back({{"step", step}, {"kl", mean_of(e.kl)}, {"oracle", mean_of(e.oracle)}, {"rm", mean_of(e.rm)}});
      }
      out[id].push_back(std::move(seed));
    }
  return out;
}

/// The oracle score where a seed's curve first reaches KL level k (linear between checkpoints, in
/// training order), if it does.
std::optional<double> at_kl(const json& seed, double k) {
  for (std::size_t i = 1; i < seed.size(); ++i) {
    const double k0 = seed[i - 1].at("kl"), k1 = seed[i].at("kl");
    if ((k0 - k) * (k1 - k) > 0 || k0 == k1) continue;
    const double w = (k - k0) / (k1 - k0);
    return (1 - w) * seed[i - 1].at("oracle").get<double>() + w * seed[i].at("oracle").get<double>();
  }
  return std::nullopt;
}

std::string matched_kl_markdown(const json& curves, const std::vector<study_row>& rows) {
  const std::vector<double> levels{1, 2, 4, 8};
  std::string md = "| row |";
  for (double k : levels) md += fmt::format(" oracle at KL = {:g} |", k);
  md += "\n|---|";
  for (std::size_t i = 0; i < levels.size(); ++i) md += "---|";
  md += "\n";
  for (const auto& row : rows) {
    if (!curves.contains(row.id)) continue;
    md += "| " + row.label + " |";
    for (double k : levels) {
      std::vector<double> v;
      for (const auto& seed : curves.at(row.id))
        if (const auto o = at_kl(seed, k)) v.push_back(*o);
      if (v.empty())
        md += " — |";
      else {
        const auto s = spread_of(v);
        md += fmt::format(" {:.3f} ± {:.3f} ({}/{} seeds) |", s.mean, s.sd, v.size(), curves.at(row.id).size());
      }
    }
    md += "\n";
  }
  return md;
}

/// gnuplot: one line per curve seed of each row, x against y.
void plot_curves(const json& curves, const std::string& x, const std::string& y, const fs::path& png,
                 const std::string& title, const std::map<std::string, std::string>& labels, spdlog::logger& log) {
  std::string data, plots;
  int index = 0;
  for (const auto& [id, seeds] : curves.items())
    for (std::size_t s = 0; s < seeds.size(); ++s) {
      for (const auto& point : seeds[s])
        data += fmt::format("{} {}\n", point.at(x).get<double>(), point.at(y).get<double>());
      data += "\n\n";
      plots += fmt::format("{}{} index {} using 1:2 with linespoints lc {} pt {} ps 0.6 title {}", index ? ", " : "",
                           gnuplot_quoted((png.parent_path() / (png.stem().string() + ".dat")).string()), index,
                           std::distance(curves.begin(), curves.find(id)) + 1, 7,
                           gnuplot_quoted(s == 0 ? labels.at(id) : ""));
      ++index;
    }
  atomic_write_text(png.parent_path() / (png.stem().string() + ".dat"), data);
  draw_with_gnuplot("set title " + gnuplot_quoted(title) + "; set xlabel " + gnuplot_quoted(x) + "; set ylabel " +
                        gnuplot_quoted(y) + "; set key outside right; set grid; plot " + plots,
                    png, 1000, 620, log);
}

/// Validation reward against steps, from every curve seed's history (no test number involved).
json validation_curves(const run_context& ctx, const plan& p) {
  json out = json::object();
  for (const auto& [id, seeds] : p.curves)
    for (std::size_t k = 0; k < seeds.size(); ++k) {
      json seed = json::array();
      for (const auto& v : read_history(run_dir(ctx, p.runs.at(id)[k]) / "history.json"))
        seed.push_back({{"step", v.step}, {"valid_rm", v.rm_mean}, {"valid_kl", v.kl}});
      out[id].push_back(std::move(seed));
    }
  return out;
}

std::string sweep_markdown(const json& choice) {
  std::string md =
      "| arm | β | learning rate | validation reward (chosen checkpoint) | refreshes | chosen refresh |\n"
      "|---|---|---|---|---|---|\n";
  for (const auto& g : choice.at("grid"))
    md += fmt::format("| {} | {:g} | {:g} | {:.4f} | {} | {} |\n", g.at("arm").get<std::string>(),
                      g.at("beta").get<double>(), g.at("lr").get<double>(), g.at("valid_rm").get<double>(),
                      g.at("refreshes").get<std::int64_t>(), g.at("best_refresh").get<std::int64_t>());
  md +=
      "\nChosen (edges: a choice on the edge of what was tried, after the edge rule):\n\n"
      "| arm | trials | β (edge) | learning rate (edge) | temperature (edge) |\n|---|---|---|---|---|\n";
  for (const auto& [arm, s] : choice.at("settings").items())
    md += fmt::format("| {} | {} | {} ({}) | {} ({}) | {:g} ({}) |\n", arm, s.at("trials").get<std::size_t>(),
                      setting_text(s.at("beta")), s.at("beta_edge").get<std::string>(), setting_text(s.at("lr")),
                      s.at("lr_edge").get<std::string>(), s.at("temperature").get<double>(),
                      s.at("temperature_edge").get<std::string>());
  const auto& sft = choice.at("sft_temperature");
  md += fmt::format("| SFT | — | — | — | {:g} ({}) |\n", sft.at("temperature").get<double>(),
                    sft.at("edge").get<std::string>());
  return md;
}

table_row table_row_of(const plan& p, const study_row& r) { return {r.id, r.label, p.eval_names.at(r.id)}; }

/// The rows of a study table: SFT for Table 1, then the arms that are in it (at their own settings,
/// and "arm@other" rows of those arms), in the method table's order.
std::vector<table_row> rows_in(const plan& p, study_table t) {
  std::vector<table_row> out;
  if (t == study_table::table1) out.push_back(table_row_of(p, p.rows.front()));
  for (const auto& r : p.rows)
    if (r.id != "sft" && r.id.find("-n") == std::string::npos && find_arm(r.arm).in(t))
      out.push_back(table_row_of(p, r));
  return out;
}

json comparisons(const run_context& ctx, const plan& p, const std::vector<std::string>& list, double level) {
  json out = json::array();
  for (const auto& c : list) out.push_back(compare(ctx, p, c, level, ctx.settings().study.margin));
  return out;
}

std::string study_report(const run_context& ctx, const plan& p, const json& choice, double wall, spdlog::logger& log) {
  const auto& c = ctx.settings();
  std::map<std::string, std::string> labels;
  for (const auto& r : p.rows) labels[r.id] = r.label;
  const double level = preregistration_of(c).at("primary_level").get<double>();
  const json primary = comparisons(ctx, p, c.study.primaries, level);
  const json secondary = comparisons(ctx, p, c.study.secondaries, 0.95);
  const std::vector<std::pair<std::string, study_table>> tables{
      {"Table 1: win-rates against gold, and metrics the labels never saw", study_table::table1},
      {"Table 3: the bridge from DPO-sft to BRAIn (rows at BRAIn's settings and at DPO-sft's)", study_table::bridge},
      {"Ablations: the baseline (§9.3) and the proposal update (§9.5)", study_table::ablations},
      {"The PPO family on the same samples (not in the paper): RLOO and GRPO", study_table::policy_gradient}};
  json results{{"primary", primary}, {"secondary", secondary}, {"sweep", choice}};
  std::string md;
  for (const auto& [title, t] : tables) {
    const auto summary = summarize(ctx, rows_in(p, t), {});
    results["tables"][title] = summary;
    md += "### " + title + "\n\n" + rows_markdown(summary) + "\n";
  }
  std::vector<table_row> n_rows, all_rows;
  for (const auto& r : p.rows) {
    all_rows.push_back(table_row_of(p, r));
    if (r.id.find("-n") != std::string::npos || r.arm == "brain" || r.arm == "dpo_sft")
      if (r.id.find('@') == std::string::npos) n_rows.push_back(table_row_of(p, r));
  }
  results["n_sweep"] = summarize(ctx, n_rows, {});
  md += "### The n sweep (§9.4)\n\n" + rows_markdown(results["n_sweep"]) + "\n";
  const auto everything = summarize(ctx, all_rows, {});
  plot_frontier(everything, ctx.path("study/frontier.png"), log);
  results["convergence"] = convergence_of(ctx, p);
  results["curves"] = curves_of(ctx, p);
  results["validation_curves"] = validation_curves(ctx, p);
  plot_curves(results["curves"], "step", "oracle", ctx.path("study/oracle_vs_steps.png"),
              "Mean oracle score on test prompts against optimiser steps", labels, log);
  plot_curves(results["curves"], "kl", "oracle", ctx.path("study/oracle_vs_kl.png"),
              "Mean oracle score against KL(policy || SFT) on test prompts (every checkpoint)", labels, log);
  plot_curves(results["validation_curves"], "step", "valid_rm", ctx.path("study/valid_rm_vs_steps.png"),
              "Mean reward-model score on the validation prompts against optimiser steps (the selection metric)",
              labels, log);
  results["wall_seconds"] = wall;
  const auto header = fmt::format(
      "Test split, {} prompts; study seeds {}.. (alignment and decoding; SFT and the reward model are shared), the "
      "sweep's seed {} apart; n = {} unless stated. Settings, temperatures and checkpoints chosen by the reward model "
      "on the validation split with the oracle sealed; runs stop after {} validations without improvement (at most {} "
      "refreshes). Cells: mean ± sd over seeds [95% hierarchical bootstrap interval: seeds, then prompts]. Wall time "
      "of this invocation: {}.\n\n",
      everything.at("prompts").get<std::size_t>(), c.study.first_seed, c.study.sweep_seed, c.align.samples,
      c.study.patience, c.study.refreshes, format_duration(wall));
  const std::string full =
      header + "### Pre-registered comparisons (study/preregistration.json)\n\nVerdicts from the interval at " +
      fmt::format("{:.2f}% (95% Bonferroni-corrected for {} comparisons), margin ±{:g}.\n\n", 100 * level,
                  c.study.primaries.size(), c.study.margin) +
      comparisons_markdown(primary, labels) + "\n### Secondary comparisons (95%, no correction)\n\n" +
      comparisons_markdown(secondary, labels) + "\n" + md +
      "### Training length (early stopping on the validation "
      "reward)\n\n" +
      convergence_markdown(results["convergence"], c.study.refreshes) +
      fmt::format("\n### Oracle score at matched KL (the first {} seeds' checkpoints, {} test prompts each)\n\n",
                  c.study.curve_seeds, c.study.curve_prompts) +
      matched_kl_markdown(results["curves"], p.rows) + "\n### The sweep (validation split, reward model, seed " +
      std::to_string(c.study.sweep_seed) + ")\n\n" + sweep_markdown(choice);
  atomic_write_text(ctx.path("study/results.md"), full);
  atomic_write_text(ctx.path("study/results.json"), results.dump(2));
  log.info("study finished in {}", format_duration(wall));
  return full;
}

}  // namespace

std::string run_study(const config& settings, const fs::path& self_config, std::shared_ptr<spdlog::logger> log) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto ctx = run_shared_stages(settings, log);
  preregister(*ctx, *log);
  // Selection: the oracle is sealed until the test stage (a call throws, naming the phase).
  ctx->seal_oracle("the study's selection (sweep, temperatures, alignment runs)");
  json choice;
  timed(*log, "sweep", [&] { choice = sweep(*ctx, self_config, *log); });
  plan p = plan_study(*ctx, choice);
  std::vector<run_spec> runs;
  for (const auto& [id, r] : p.runs) runs.insert(runs.end(), r.begin(), r.end());
  timed(*log, "align", [&] { align_all(*ctx, runs, self_config, *log); });
  ctx->seal_oracle("");
  plan_curves(*ctx, p, choice);
  timed(*log, "evaluate", [&] { evaluate_all(*ctx, p.evals, self_config, *log); });
  timed(*log, "curves", [&] { evaluate_all(*ctx, p.curve_evals, self_config, *log); });
  return study_report(*ctx, p, choice, seconds_since(t0), *log);
}

}  // namespace tldr
