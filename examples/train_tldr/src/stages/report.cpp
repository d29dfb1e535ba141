// Stage report: tables of the evaluation files (Table 1's, 2's and 3's forms) and the reward–KL
// frontier. Every number is computed here from eval/*.jsonl; nothing is typed in by hand.

#include "checkpoint.hpp"
#include "llm_judge.hpp"
#include "seeds.hpp"
#include "stages.hpp"
#include "stats.hpp"

#include <spdlog/fmt/fmt.h>

#include <cstdlib>

namespace tldr {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json metric(const std::vector<std::vector<double>>& per_seed_values, std::int64_t resamples, std::uint64_t seed) {
  std::vector<double> means;
  for (const auto& v : per_seed_values) means.push_back(mean_of(v));
  const auto s = spread_of(means);
  const auto both = hierarchical_bootstrap(per_seed_values, resamples, seed);  // seeds, then prompts
  return {{"per_seed", means}, {"mean", s.mean}, {"sd", s.sd}, {"low", both.low}, {"high", both.high}};
}

const std::vector<std::pair<std::string, std::string>>& metric_names() {
  static const std::vector<std::pair<std::string, std::string>> names{{"rm_win", "win vs gold, RM (%)"},
                                                                      {"oracle_win", "win vs gold, oracle (%)"},
                                                                      {"oracle", "oracle score"},
                                                                      {"rouge_l", "ROUGE-L F1"},
                                                                      {"chrf", "chrF"},
                                                                      {"kl", "KL(π‖SFT)"},
                                                                      {"words", "words"}};
  return names;
}

std::string cell(const json& m, double scale, int digits, bool interval) {
  std::string s = fmt::format("{:.{}f}", scale * m.at("mean").get<double>(), digits);
  if (m.at("per_seed").size() > 1) s += fmt::format(" ± {:.{}f}", scale * m.at("sd").get<double>(), digits);
  if (interval)
    s += fmt::format(" [{:.{}f}, {:.{}f}]", scale * m.at("low").get<double>(), digits,
                     scale * m.at("high").get<double>(), digits);
  return s;
}

}  // namespace

json summarize(const run_context& ctx, const std::vector<table_row>& rows, const std::vector<matchup>& matchups) {
  const auto resamples = ctx.settings().eval.bootstrap;
  const auto boot_seed = derive_seed(ctx.settings().seed, purpose::bootstrap);
  const auto gold = read_eval(ctx.path("eval/gold.jsonl"));
  json out{{"prompts", gold.rm.size()}, {"gold", {{"oracle", mean_of(gold.oracle)}, {"words", mean_of(gold.words)}}}};
  const bool llm_judged = ctx.settings().judge.kind == tldr::judge_kind::llm;
  if (llm_judged)
    out["llm_judge"] = {
        {"model", ctx.settings().judge.model},
        {"url", ctx.settings().judge.url},
        {"rule", "both orders; win when both prefer the summary, loss when both prefer gold, else tie"}};
  std::map<std::string, std::vector<eval_columns>> columns;
  for (const auto& row : rows) {
    if (row.evals.empty()) throw std::invalid_argument("summarize: row " + row.id + " has no evaluation");
    std::map<std::string, std::vector<std::vector<double>>> values;
    for (const auto& name : row.evals) {
      const auto c = read_eval(ctx.path("eval/" + name + ".jsonl"));
      if (c.rm.size() != gold.rm.size())
        throw std::runtime_error("eval/" + name + ".jsonl has " + std::to_string(c.rm.size()) + " prompts, gold " +
                                 std::to_string(gold.rm.size()));
      values["rm_win"].push_back(outcomes(c.rm, gold.rm));
      values["oracle_win"].push_back(outcomes(c.oracle, gold.oracle));
      values["oracle"].push_back(c.oracle);
      values["rouge_l"].push_back(c.rouge_l);
      values["chrf"].push_back(c.chrf);
      values["kl"].push_back(c.kl);
      values["words"].push_back(c.words);
      if (llm_judged) {  // --judge llm: the LLM judge's score against gold (1, 0.5 or 0 per prompt)
        auto scores = read_llm_judge(ctx, name);
        if (scores.size() != gold.rm.size())
          throw std::runtime_error("eval/llm_judge/" + name + ".jsonl has " + std::to_string(scores.size()) +
                                   " prompts, gold " + std::to_string(gold.rm.size()));
        values["llm_win"].push_back(std::move(scores));
      }
      columns[row.id].push_back(c);
    }
    json r{{"id", row.id}, {"label", row.label}, {"evals", row.evals}};
    for (const auto& [key, label] : metric_names()) r["metrics"][key] = metric(values.at(key), resamples, boot_seed);
    if (llm_judged) r["metrics"]["llm_win"] = metric(values.at("llm_win"), resamples, boot_seed);
    out["rows"].push_back(r);
  }
  for (const auto& m : matchups) {
    const auto a = columns.find(m.ours), b = columns.find(m.theirs);
    if (a == columns.end() || b == columns.end())
      throw std::invalid_argument("summarize: matchup " + m.ours + " vs " + m.theirs + " names a missing row");
    const auto seeds = std::min(a->second.size(), b->second.size());
    json entry{{"ours", m.ours}, {"theirs", m.theirs}, {"seeds", seeds}};
    for (const std::string judge : {"oracle", "rm"}) {
      std::vector<std::vector<double>> per_seed;
      std::vector<double> win, tie, loss;
      for (std::size_t s = 0; s < seeds; ++s) {
        const auto& x = judge == "oracle" ? a->second[s].oracle : a->second[s].rm;
        const auto& y = judge == "oracle" ? b->second[s].oracle : b->second[s].rm;
        const auto t = tally(x, y);
        win.push_back(t.win);
        tie.push_back(t.tie);
        loss.push_back(t.loss);
        per_seed.push_back(outcomes(x, y));
      }
      const auto rate = hierarchical_bootstrap(per_seed, resamples, boot_seed);
      const auto w = spread_of(win), t = spread_of(tie), l = spread_of(loss);
      entry[judge] = {{"win", w.mean},      {"win_sd", w.sd},       {"tie", t.mean},
                      {"tie_sd", t.sd},     {"loss", l.mean},       {"loss_sd", l.sd},
                      {"rate", rate.value}, {"rate_low", rate.low}, {"rate_high", rate.high}};
    }
    // Paired differences of the score and of a metric the labels never saw, with the seed noise.
    for (const std::string key : {"oracle", "rouge_l"}) {
      std::vector<std::vector<double>> x, y;
      for (std::size_t s = 0; s < seeds; ++s) {
        x.push_back(key == "oracle" ? a->second[s].oracle : a->second[s].rouge_l);
        y.push_back(key == "oracle" ? b->second[s].oracle : b->second[s].rouge_l);
      }
      const auto d = paired_difference_of(x, y, resamples, boot_seed);
      entry["difference"][key] = {{"per_seed", d.per_seed}, {"mean", d.over_seeds.mean},
                                  {"sd", d.over_seeds.sd},  {"low", d.both.low},
                                  {"high", d.both.high},    {"seeds_ahead", d.seeds_ahead}};
    }
    out["matchups"].push_back(entry);
  }
  return out;
}

std::string rows_markdown(const json& summary) {
  std::string md = "| model | seeds |";
  for (const auto& [key, label] : metric_names()) md += " " + label + " |";
  const bool llm_judged = summary.contains("llm_judge");  // a last column: win vs gold under the LLM judge
  if (llm_judged) md += " win vs gold, LLM judge (%) |";
  md += "\n|---|---|";
  for (std::size_t i = 0; i < metric_names().size(); ++i) md += "---|";
  if (llm_judged) md += "---|";
  md += "\n";
  for (const auto& r : summary.at("rows")) {
    const auto& m = r.at("metrics");
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} |", r.at("label").get<std::string>(),
                      m.at("oracle").at("per_seed").size(), cell(m.at("rm_win"), 100, 1, true),
                      cell(m.at("oracle_win"), 100, 1, true), cell(m.at("oracle"), 1, 3, true),
                      cell(m.at("rouge_l"), 1, 3, false), cell(m.at("chrf"), 1, 1, false),
                      cell(m.at("kl"), 1, 2, false), cell(m.at("words"), 1, 1, false));
    if (llm_judged) md += fmt::format(" {} |", cell(m.at("llm_win"), 100, 1, true));
    md += "\n";
  }
  return md;
}

std::string matchups_markdown(const json& summary) {
  if (!summary.contains("matchups")) return "";
  std::map<std::string, std::string> label;
  for (const auto& r : summary.at("rows")) label[r.at("id")] = r.at("label");
  std::string md =
      "| comparison | seeds | oracle: win / tie / loss (%) | oracle win-rate, ties half (%) | reward model: win / tie "
      "/ loss (%) "
      "| oracle score, difference | ROUGE-L F1, difference |\n"
      "|---|---|---|---|---|---|---|\n";
  // mean ± sd over seeds [hierarchical interval], seeds ahead.
  const auto difference = [](const json& d) {
    const auto seeds = d.at("per_seed").size();
    std::string s = fmt::format("{:+.3f}", d.at("mean").get<double>());
    if (seeds > 1) s += fmt::format(" ± {:.3f}", d.at("sd").get<double>());
    s += fmt::format(" [{:+.3f}, {:+.3f}]", d.at("low").get<double>(), d.at("high").get<double>());
    if (seeds > 1) s += fmt::format(", {}/{} seeds ahead", d.at("seeds_ahead").get<std::size_t>(), seeds);
    return s;
  };
  const auto wtl = [](const json& j) {
    return fmt::format("{:.1f} / {:.1f} / {:.1f}", 100 * j.at("win").get<double>(), 100 * j.at("tie").get<double>(),
                       100 * j.at("loss").get<double>());
  };
  for (const auto& m : summary.at("matchups")) {
    const auto& o = m.at("oracle");
    md += fmt::format("| {} vs {} | {} | {} | {:.1f} [{:.1f}, {:.1f}] | {} | {} | {} |\n", label.at(m.at("ours")),
                      label.at(m.at("theirs")), m.at("seeds").get<std::size_t>(), wtl(o),
                      100 * o.at("rate").get<double>(), 100 * o.at("rate_low").get<double>(),
                      100 * o.at("rate_high").get<double>(), wtl(m.at("rm")),
                      difference(m.at("difference").at("oracle")), difference(m.at("difference").at("rouge_l")));
  }
  return md;
}

void plot_frontier(const json& summary, const fs::path& png, spdlog::logger& log) {
  std::string data, plots;
  int index = 0;
  for (const auto& r : summary.at("rows")) {
    const auto& kl = r.at("metrics").at("kl").at("per_seed");
    const auto& oracle = r.at("metrics").at("oracle").at("per_seed");
    data += "# " + r.at("label").get<std::string>() + "\n";
    for (std::size_t s = 0; s < kl.size(); ++s)
      data += fmt::format("{} {}\n", kl[s].get<double>(), oracle[s].get<double>());
    data += "\n\n";
    // gnuplot cycles 8 colours; shapes cycle 5 (circle, square, triangles, diamond), so up to 40
    // rows get distinct (colour, shape) pairs.
    constexpr int shapes[] = {7, 5, 9, 11, 13};
    plots += fmt::format("{}{} index {} using 1:2 with points pt {} ps 1.2 title {}", index ? ", " : "",
                         gnuplot_quoted((png.parent_path() / (png.stem().string() + ".dat")).string()), index,
                         shapes[index % 5], gnuplot_quoted(r.at("label").get<std::string>()));
    ++index;
  }
  const auto dat = png.parent_path() / (png.stem().string() + ".dat");
  atomic_write_text(dat, data);
  draw_with_gnuplot(
      "set title " +
          gnuplot_quoted("Mean oracle score against KL(policy || SFT) on the test prompts (a point per seed)") +
          "; set xlabel 'KL(policy || SFT), nats'; set ylabel 'mean oracle score'; set key outside right; "
          "set grid; plot " +
          plots,
      png, 900, 560, log);
}

std::string gnuplot_quoted(std::string_view text) {
  std::string out = "'";
  for (const char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

void draw_with_gnuplot(const std::string& commands, const fs::path& png, int width, int height, spdlog::logger& log) {
  const auto gp = png.parent_path() / (png.stem().string() + ".gp");
  atomic_write_text(gp, fmt::format("set terminal pngcairo size {},{} noenhanced; set output {}; {}\n", width, height,
                                    gnuplot_quoted(png.string()), commands));
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    return log.warn("gnuplot not found: {} not drawn (Debian: gnuplot-nox)", png.string());
  if (std::system(("gnuplot " + gp.string()).c_str()) != 0) log.warn("gnuplot failed; see {}", gp.string());
}

}  // namespace tldr
