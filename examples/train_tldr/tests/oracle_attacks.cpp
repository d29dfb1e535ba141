// The attack check (ctest tldr_oracle_attacks): on the test split of Debian's package
// descriptions, the gold synopsis must beat each designed attack (src/attacks.hpp) on at least 90%
// of the posts. With --held-out it also measures and prints the held-out attacks, which were not
// used to design the oracle (slower: one of them searches every post for the most similar one).
// Reads the repository's snapshot of the descriptions (src/data.hpp), or with --lists apt's
// lists in DIR; fails, rather than skips, when they are missing or damaged.
//   tldr_oracle_attacks [--snapshot FILE | --lists DIR] [--split test|valid] [--held-out] [--show-losses]
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "attacks.hpp"
#include "data.hpp"
#include "oracle.hpp"

namespace {

struct tally {
  std::size_t wins = 0, games = 0;
  double score = 0;
};

/// Plays gold against every designed (or held-out) attack on each post and prints one line per
/// attack; returns false when a designed attack's gold win-rate is below 90%.
bool play(const tldr::oracle& oracle, const tldr::attacker& attacker, const std::vector<tldr::example>& examples,
          const std::string& split, bool designed, bool show) {
  std::vector<std::string> names;
  std::map<std::string, tally> by_name;
  double gold_mean = 0;
  for (const auto& e : examples) {
    const auto post = tldr::post_of(e.prompt);
    const double gold = oracle.score(post, e.label);
    gold_mean += gold;
    for (const auto& a : designed ? attacker.designed(e, examples) : attacker.held_out(e, examples)) {
      if (!by_name.contains(a.name)) names.push_back(a.name);
      const double s = oracle.score(post, a.summary);
      auto& t = by_name[a.name];
      ++t.games;
      t.wins += gold > s;
      t.score += s;
      if (show && gold <= s)
        std::printf("  loss [%s] gold %.3f \"%s\" vs %.3f \"%s\"\n", a.name.c_str(), gold, e.label.c_str(), s,
                    a.summary.c_str());
    }
  }
  std::printf("%s attacks on the %s split (%zu posts; gold's mean score %.3f):\n", designed ? "designed" : "held-out",
              split.c_str(), examples.size(), gold_mean / double(examples.size()));
  bool ok = true;
  for (const auto& name : names) {
    const auto& t = by_name[name];
    const double rate = double(t.wins) / double(t.games);
    const bool bad = designed && rate < 0.90;
    ok &= !bad;
    std::printf("  %-42s gold wins %5.1f%%   attack's mean score %.3f%s\n", name.c_str(), 100 * rate,
                t.score / double(t.games), bad ? "   FAIL (< 90%)" : "");
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  std::string lists, snapshot, split = "test";
  bool show = false, held_out = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--lists" && i + 1 < argc)
      lists = argv[++i];
    else if (a == "--snapshot" && i + 1 < argc)
      snapshot = argv[++i];
    else if (a == "--split" && i + 1 < argc)
      split = argv[++i];
    else if (a == "--show-losses")
      show = true;
    else if (a == "--held-out")
      held_out = true;
    else {
      std::fprintf(stderr, "tldr_oracle_attacks: unknown argument '%s'\n", a.c_str());
      return 2;
    }
  }
  tldr::dataset d;
  try {
    d = lists.empty() ? tldr::build_dataset(tldr::read_snapshot(snapshot.empty() ? tldr::default_snapshot()
                                                                                 : std::filesystem::path(snapshot))
                                                .packages,
                                            tldr::dataset_options{})
                      : tldr::build_dataset_from_apt(tldr::dataset_options{}, lists);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tldr_oracle_attacks: no data (%s)\n", e.what());
    return 1;
  }
  if (split != "test" && split != "valid") {
    std::fprintf(stderr, "tldr_oracle_attacks: --split must be test or valid, got '%s'\n", split.c_str());
    return 2;
  }
  const auto& examples = split == "test" ? d.test : d.valid;
  if (examples.size() < 200) {
    std::fprintf(stderr, "tldr_oracle_attacks: only %zu %s posts; expected the full data set\n", examples.size(),
                 split.c_str());
    return 1;
  }
  const tldr::oracle oracle(d.train);
  const tldr::attacker attacker(d.train);
  bool ok = play(oracle, attacker, examples, split, /*designed=*/true, show);
  if (held_out) ok &= play(oracle, attacker, examples, split, /*designed=*/false, show);
  return ok ? 0 : 1;
}
