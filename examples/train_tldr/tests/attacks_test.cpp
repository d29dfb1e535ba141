#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "attacks.hpp"
#include "data.hpp"

using namespace tldr;

namespace {

example make(const std::string& id, const std::string& post, const std::string& label) {
  return {id, "TITLE: " + id + "\nPOST: " + post + "\nTL;DR:", " " + label};
}

std::vector<std::string> sorted_words(const std::string& text) {
  std::vector<std::string> out;
  std::string w;
  for (char c : text + " ") {
    if (c == ' ') {
      if (!w.empty()) out.push_back(w);
      w.clear();
    } else {
      w += c;
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::map<std::string, std::string> by_name(const std::vector<attack>& attacks) {
  std::map<std::string, std::string> out;
  for (const attack& a : attacks) {
    EXPECT_FALSE(out.contains(a.name)) << "two attacks named " << a.name;
    out[a.name] = a.summary;
  }
  return out;
}

// Three posts; "zebra" occurs in two of them, "tool" in all three.
const std::vector<example> corpus{
    make("zebra", "A tool to paint zebra stripes. The zebra tool paints stripes fast.", "zebra stripe painter"),
    make("libzebra-dev", "A tool library for zebra painting, development files.", "zebra library - development files"),
    make("gnome-mines", "A mines tool game for GNOME.", "minesweeper game for GNOME"),
};

}  // namespace

TEST(attacks_words, first_and_last_words) {
  EXPECT_EQ(first_words("  one two\nthree  four ", 3), "one two three");
  EXPECT_EQ(first_words("one two", 10), "one two");
  EXPECT_EQ(first_words("", 10), "");
  EXPECT_EQ(last_words("one two three four", 2), "three four");
  EXPECT_EQ(last_words("one", 5), "one");
}

TEST(attacks_words, repeated_and_title) {
  EXPECT_EQ(repeated("game", 3), "game game game");
  EXPECT_EQ(repeated("game", 0), "");
  EXPECT_EQ(title_of("TITLE: 0ad\nPOST: A game.\nTL;DR:"), "0ad");
  EXPECT_EQ(title_of("POST: A game.\nTL;DR:"), "");
}

TEST(attacks_words, shuffle_differs_keeps_the_words_and_is_seeded) {
  const std::string gold = "Real-time strategy game of ancient warfare";
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    const std::string s = shuffled_words(gold, seed);
    EXPECT_NE(s, gold) << "seed " << seed;
    EXPECT_EQ(sorted_words(s), sorted_words(gold)) << "seed " << seed;
    EXPECT_EQ(s, shuffled_words(gold, seed)) << "seed " << seed;
  }
  EXPECT_NE(shuffled_words(gold, 1), shuffled_words(gold, 2));  // these two seeds give different orders
  // Two words have one other order, whatever the seed.
  for (std::uint64_t seed = 0; seed < 10; ++seed) EXPECT_EQ(shuffled_words("ASCII art", seed), "art ASCII");
  // No other order exists for one word, or for copies of one word: the text comes back as it was.
  EXPECT_EQ(shuffled_words(" warfare", 3), " warfare");
  EXPECT_EQ(shuffled_words("go go", 3), "go go");
}

TEST(attacks_salience, tf_idf_by_hand) {
  const attacker a(corpus);
  // idf = ln((3 + 1) / (df + 1)). In the first post stripes occurs twice (df 1): 2 ln 2; fast,
  // paint, paints, the, to once (df 1): ln 2; zebra twice (df 2): 2 ln(4/3); tool twice (df 3): 0;
  // "A" has one letter.
  const auto top = a.salient_words("A tool to paint zebra stripes. The zebra tool paints stripes fast.", 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0], "stripes");  // 2 ln 2
  EXPECT_EQ(top[1], "fast");     // ties at ln 2 broken alphabetically: fast, paint, paints, the, to
  EXPECT_EQ(top[2], "paint");
  // Case is folded and one-letter or all-digit words never count.
  EXPECT_EQ(a.salient_words("Zebra ZEBRA 42 x", 5), std::vector<std::string>{"zebra"});
}

TEST(attacks_designed, every_attack_by_name) {
  const attacker a(corpus, 7);
  const auto attacks = by_name(a.designed(corpus[0], corpus));
  ASSERT_EQ(attacks.size(), 10u);
  EXPECT_EQ(attacks.at("first 10 words of the post"), "A tool to paint zebra stripes. The zebra tool paints");
  EXPECT_EQ(attacks.at("5 most salient words"), "stripes fast paint paints the");
  EXPECT_EQ(sorted_words(attacks.at("10 most salient words")),
            sorted_words("stripes fast paint paints the to zebra tool"));  // only 8 words of 2+ letters
  EXPECT_NE(attacks.at("gold's words shuffled"), "zebra stripe painter");
  EXPECT_EQ(sorted_words(attacks.at("gold's words shuffled")), sorted_words("zebra stripe painter"));
  EXPECT_EQ(attacks.at("most salient word x5"), "stripes stripes stripes stripes stripes");
  EXPECT_EQ(attacks.at("gold's first word x5"), "zebra zebra zebra zebra zebra");
  // libzebra-dev is of the zebra family; only gnome-mines is another family.
  EXPECT_EQ(attacks.at("another package's gold"), " minesweeper game for GNOME");
  EXPECT_EQ(attacks.at("empty"), "");
  EXPECT_EQ(attacks.at("most salient word"), "stripes");
  EXPECT_EQ(attacks.at("title"), "zebra");
}

TEST(attacks_designed, deterministic_given_the_seed) {
  const attacker a(corpus, 7), b(corpus, 7);
  for (const example& e : corpus) {
    const auto x = a.designed(e, corpus), y = b.designed(e, corpus);
    ASSERT_EQ(x.size(), y.size());
    for (std::size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i].summary, y[i].summary) << x[i].name;
  }
}

TEST(attacks_held_out, every_attack_by_name) {
  const attacker a(corpus, 7);
  const auto attacks = by_name(a.held_out(corpus[0], corpus));
  ASSERT_EQ(attacks.size(), 12u);
  EXPECT_EQ(attacks.at("first 6 words of the post"), "A tool to paint zebra stripes.");
  EXPECT_EQ(attacks.at("first sentence"), "A tool to paint zebra stripes.");
  EXPECT_EQ(attacks.at("last 10 words of the post"), "to paint zebra stripes. The zebra tool paints stripes fast.");
  EXPECT_EQ(attacks.at("gold truncated to half"), "zebra");
  EXPECT_EQ(attacks.at("gold + its post's 3 salient words"), "zebra stripe painter stripes fast paint");
  // The most similar other post shares "a", "tool" and "zebra": libzebra-dev's.
  EXPECT_EQ(attacks.at("gold of the most similar post"), " zebra library - development files");
  EXPECT_EQ(attacks.at("title + 2 salient words"), "zebra stripes fast");
  EXPECT_EQ(attacks.at("\"library for X Y\""), "library for stripes fast");
  EXPECT_EQ(attacks.at("\"X Y tool\""), "stripes fast tool");
  const std::string span = attacks.at("random 8-word span");
  EXPECT_NE(std::string(" A tool to paint zebra stripes. The zebra tool paints stripes fast. ").find(" " + span + " "),
            std::string::npos)
      << span;
  // No "is a" in the first sentence: its first 8 words.
  EXPECT_EQ(attacks.at("first sentence after \"is a\" (8 words)"), "A tool to paint zebra stripes.");
  EXPECT_EQ(a.held_out(make("x", "Foo is a small tool for zebras. It works.", "y z"), corpus)[4].summary,
            "small tool for zebras.");
}
