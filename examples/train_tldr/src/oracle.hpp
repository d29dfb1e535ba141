// The oracle: the experiment's true reward, a deterministic function score(post, summary) in [0, 1]
// that labels the preference rankings (with Plackett–Luce noise, stages/pairs.cpp) and scores the
// aligned policies. It is what the reward model tries to learn, as in reward-over-optimisation
// studies — not an independent judge: arms are also reported under ROUGE-L and chrF against the
// gold synopsis (metrics.hpp), which the labels never saw.
//
// It is built from the train split only (posts and their synopses) and reads no gold at scoring
// time. Six components, each in [0, 1]:
//   faithfulness  idf-weighted share of the summary's content words the post supports; a word that
//                 synopses often bring in unsupported ("library", "tool") gets partial credit
//   coverage      the post's key words (early ones that synopses tend to carry) the summary holds
//   phrasing      do adjacent words belong together? PMI of each word pair under a smoothed bigram
//                 model of the corpus with the post as a cache, through a logistic
//   form          does the sequence of word classes read like a synopsis rather than like the
//                 description's prose? mean log-likelihood ratio of two class-bigram models
//   length        the synopses' length histogram, scaled to a peak of 1
//   redundancy    1 − the shares of repeated content words and repeated word pairs
// score = redundancy · weighted geometric mean of the other five, each floored at `floor`.
// A list of salient words fails phrasing and form, the post's first words fail form and length,
// shuffled gold fails phrasing, another package's synopsis fails faithfulness and coverage,
// repeats fail redundancy. tests/oracle_attacks.cpp (ctest tldr_oracle_attacks) holds it to that
// on the test split; docs/oracle.md has the figures.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "data.hpp"

namespace tldr {

// The weights of the geometric mean and each component's constants; the defaults were chosen on
// the validation split against the designed attacks and the reward model's agreement
// (docs/oracle.md). *_saturation: the share at which a component reaches 1; key_words: how many of
// the post's key words coverage counts; position_scale: words after which a key word's weight
// halves; carry_prior: pseudo-posts of the smoothed carry rate; cache_weight: weight of the post's
// own word pairs in the phrasing bigrams; pair_smoothing: extra follower types in their
// Witten–Bell smoothing; paraphrase_strength: the unsupported-use rate at which a synopsis word
// earns half credit in faithfulness; pmi_threshold, phrasing_scale: the logistic on PMI;
// form_sharpness: the logistic on the form log-likelihood ratio; length_power: flattens the length
// prior; redundancy_power: sharpens the redundancy factor; floor: each component's floor in the mean.
struct oracle_options {
  double faithfulness_weight = 0.15;
  double coverage_weight = 0.15;
  double phrasing_weight = 0.4;
  double form_weight = 0.45;
  double length_weight = 0.25;
  double faithfulness_saturation = 0.8;
  double paraphrase_strength = 0.005;
  std::size_t key_words = 3;
  double coverage_saturation = 0.6;
  double position_scale = 20.0;
  double carry_prior = 2.0;
  double cache_weight = 5.0;
  double pair_smoothing = 1.0;
  double pmi_threshold = -0.5;
  double phrasing_scale = 0.25;
  double form_sharpness = 3.0;
  double length_power = 0.5;
  double redundancy_power = 1.0;
  double floor = 0.05;
};

class oracle {
 public:
  explicit oracle(std::span<const example> train, oracle_options options = {});

  struct verdict {
    double score = 0, faithfulness = 0, coverage = 0, phrasing = 0, form = 0, length = 0, redundancy = 0;
  };

  verdict rate(std::string_view post, std::string_view summary) const;
  double score(std::string_view post, std::string_view summary) const { return rate(post, summary).score; }

  std::size_t corpus_size() const;
  const oracle_options& options() const;

 private:
  struct model;
  std::shared_ptr<const model> model_;
};

// Reads JSONL (string fields "prompt" and "summary"), writes each object back with "score" and
// the components added.
void score_jsonl(const oracle& o, std::istream& in, std::ostream& out, std::string_view source_name);

}  // namespace tldr
