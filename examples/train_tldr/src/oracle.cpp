#include "oracle.hpp"

#include "hashing.hpp"
#include "text.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <istream>
#include <ostream>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>

namespace tldr {
namespace {

// ---- words ------------------------------------------------------------------------------------

// What a token is: a word, or one of the punctuation marks that shape a phrase.
enum class kind : std::uint8_t { word, stop, comma, colon, open, close, dash, junk };
constexpr std::size_t mark_kinds = 7;  // stop .. junk

struct token {
  kind k = kind::word;
  bool content = false;        // a word of two or more characters, not a stopword
  std::uint8_t signature = 0;  // shape and suffix: the class of a rare word in the form model
  std::uint64_t stem = 0;      // FNV-1a of the stemmed lowercase word
  std::uint64_t surface = 0;   // FNV-1a of the lowercase word
};

using text::is_alnum;
bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
using text::is_space;

std::uint64_t pair_key(std::uint64_t a, std::uint64_t b) {
  return a * 0x9E3779B97F4A7C15ULL ^ (b + 0x632BE59BD9B4E019ULL + (a << 6) + (a >> 2));
}

// The hashes of a small English stopword list, sorted.
constexpr auto stopword_hashes = [] {
  constexpr std::array<std::string_view, 126> words{
      "about",  "above",  "after", "again", "against", "all",  "also",   "am",    "an",      "and",     "any",
      "are",    "as",     "at",    "be",    "because", "been", "before", "being", "below",   "between", "both",
      "but",    "by",     "can",   "could", "did",     "do",   "does",   "doing", "don",     "down",    "during",
      "each",   "eg",     "etc",   "even",  "every",   "few",  "for",    "from",  "further", "had",     "has",
      "have",   "having", "he",    "her",   "here",    "hers", "him",    "his",   "how",     "ie",      "if",
      "in",     "into",   "is",    "it",    "its",     "just", "may",    "me",    "might",   "more",    "most",
      "much",   "must",   "my",    "no",    "nor",     "not",  "now",    "of",    "off",     "on",      "once",
      "one",    "only",   "or",    "other", "our",     "out",  "over",   "own",   "same",    "shall",   "she",
      "should", "so",     "some",  "such",  "than",    "that", "the",    "their", "them",    "then",    "there",
      "these",  "they",   "this",  "those", "through", "to",   "too",    "under", "until",   "up",      "upon",
      "us",     "very",   "was",   "we",    "were",    "what", "when",   "where", "which",   "while",   "who",
      "will",   "with",   "would", "you",   "your"};
  std::array<std::uint64_t, words.size()> hashes{};
  for (std::size_t i = 0; i < words.size(); ++i) hashes[i] = fnv1a64(words[i]);
  std::sort(hashes.begin(), hashes.end());
  return hashes;
}();

bool is_stopword(std::uint64_t surface) {
  return std::binary_search(stopword_hashes.begin(), stopword_hashes.end(), surface);
}

// A crude stemmer, so that "parses", "parsing" and "parse" meet: a version digit dropped
// (css2 -> css), then one of -ing, -ies -> y, -ed, -es after s/x/z/ch/sh, -s; then a final -e.
std::string_view stem_of(char* w, std::size_t n) {
  auto ends = [&](std::string_view s) {
    if (n < s.size()) return false;
    for (std::size_t i = 0; i < s.size(); ++i)
      if (w[n - s.size() + i] != s[i]) return false;
    return true;
  };
  if (n > 1 && is_digit(w[n - 1])) {
    std::size_t k = n;
    while (k > 0 && is_digit(w[k - 1])) --k;
    if (k > 0) n = k;
  }
  if (n > 5 && ends("ing")) {
    n -= 3;
  } else if (n > 4 && ends("ies")) {
    n -= 2;
    w[n - 1] = 'y';
  } else if (n > 4 && ends("ed")) {
    n -= 2;
  } else if (n > 4 && ends("es") &&
             (w[n - 3] == 's' || w[n - 3] == 'x' || w[n - 3] == 'z' || ends("ches") || ends("shes"))) {
    n -= 2;
  } else if (n > 3 && w[n - 1] == 's' && !ends("ss") && !ends("us") && !ends("is")) {
    n -= 1;
  }
  if (n > 4 && w[n - 1] == 'e') --n;
  return {w, n};
}

// A whitespace-separated piece that is noise: SentencePiece's "⁇" for unknown pieces, U+FFFD,
// runs like "!!!", or punctuation other than a dash, slash, ampersand, plus or bracket.
bool junk_piece(std::string_view piece) {
  if (std::all_of(piece.begin(), piece.end(), is_alnum)) return false;  // the common case
  if (piece.find("\xE2\x81\x87") != std::string_view::npos || piece.find("\xEF\xBF\xBD") != std::string_view::npos)
    return true;
  for (std::size_t i = 0; i + 2 < piece.size(); ++i)
    if (!is_alnum(piece[i]) && static_cast<unsigned char>(piece[i]) < 0x80 && piece[i + 1] == piece[i] &&
        piece[i + 2] == piece[i])
      return true;
  if (std::any_of(piece.begin(), piece.end(), is_alnum)) return false;
  static constexpr std::array<std::string_view, 9> allowed{"-", "--", "/", "&", "+", "\xE2\x80\x93", "\xE2\x80\x94",
                                                           "(", ")"};
  return std::find(allowed.begin(), allowed.end(), piece) == allowed.end() &&
         piece.find_first_of(".,:;!?\"'") == std::string_view::npos;
}

constexpr std::size_t signatures = 18;

// A rare word's class: its shape and, for words of letters, a suffix that hints at its part of
// speech (plural or third person -s, -ing, -ed, -ly, -tion, -er, adjective endings).
std::uint8_t signature_of(std::string_view lower, std::size_t uppercase, bool capitalised) {
  if (std::all_of(lower.begin(), lower.end(), is_digit)) return 16;
  if (uppercase >= 2 || (uppercase == 1 && lower.size() == 1)) return 17;
  auto ends = [&](std::string_view x) {
    if (lower.size() <= x.size() + 2) return false;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (lower[lower.size() - x.size() + i] != x[i]) return false;
    return true;
  };
  const int suffix = ends("ing")                                                                             ? 1
                     : ends("ed")                                                                            ? 2
                     : ends("ly")                                                                            ? 3
                     : ends("tion") || ends("sion")                                                          ? 4
                     : ends("er") || ends("or")                                                              ? 5
                     : ends("al") || ends("ic") || ends("ive") || ends("ous") || ends("ful") || ends("able") ? 6
                     : ends("s") && !ends("ss")                                                              ? 7
                                                                                                             : 0;
  return static_cast<std::uint8_t>((capitalised && uppercase == 1 ? 8 : 0) + suffix);
}

// The tokens of a text: words and the marks kind lists. Line breaks end sentences like full
// stops do. A summary's final full stop is typography (some synopses have one), not form; a
// description's stays, as prose ends that way.
enum class text_kind { summary, description };
std::vector<token> tokenize(std::string_view text, text_kind what) {
  std::vector<token> out;
  out.reserve(text.size() / 5 + 4);
  std::string word;
  auto end_sentence = [&] {
    if (!out.empty() && out.back().k != kind::stop) out.push_back({kind::stop});
  };
  for (std::size_t i = 0; i < text.size();) {
    if (is_space(text[i])) {
      if (text[i] == '\n') end_sentence();
      ++i;
      continue;
    }
    std::size_t end = i;
    while (end < text.size() && !is_space(text[end])) ++end;
    const std::string_view piece = text.substr(i, end - i);
    i = end;
    if (word.size() < piece.size()) word.resize(piece.size());
    if (junk_piece(piece)) {
      out.push_back({kind::junk});
      continue;
    }
    if (piece == "-" || piece == "--" || piece == "\xE2\x80\x93" || piece == "\xE2\x80\x94") {
      out.push_back({kind::dash});
      continue;
    }
    for (std::size_t j = 0; j < piece.size();) {
      const char c = piece[j];
      if (is_alnum(c)) {
        std::size_t e = j, uppercase = 0;
        for (; e < piece.size() && is_alnum(piece[e]); ++e) {
          uppercase += is_upper(piece[e]);
          word[e - j] = static_cast<char>(is_upper(piece[e]) ? piece[e] - 'A' + 'a' : piece[e]);
        }
        const std::string_view lower(word.data(), e - j);
        token t;
        t.surface = fnv1a64(lower);
        t.content = lower.size() >= 2 && !is_stopword(t.surface);
        t.signature = signature_of(lower, uppercase, is_upper(c));
        t.stem = fnv1a64(stem_of(word.data(), lower.size()));
        out.push_back(t);
        j = e;
        continue;
      }
      const bool at_end = piece.find_first_not_of(")]\"'", j + 1) == std::string_view::npos;
      if ((c == '.' || c == '!' || c == '?') && at_end) {
        end_sentence();
      } else if (c == ',') {
        out.push_back({kind::comma});
      } else if ((c == ':' || c == ';') && at_end) {
        out.push_back({kind::colon});
      } else if (c == '(' || c == '[') {
        out.push_back({kind::open});
      } else if (c == ')' || c == ']') {
        out.push_back({kind::close});
      }
      ++j;
    }
  }
  if (what == text_kind::summary && !out.empty() && out.back().k == kind::stop) out.pop_back();
  return out;
}

}  // namespace

// ---- an open-addressing hash table keyed by 64-bit hashes -------------------------------------
// In a named namespace: oracle::model's fields are hash tables, and a class with external linkage
// must not hold types of an anonymous namespace (GCC's -Wsubobject-linkage, seen in unity builds).
namespace oracle_detail {

template <class V>
class hash_table {
 public:
  V& operator[](std::uint64_t key) {
    if (2 * (size_ + 1) > slots_.size()) grow();
    key = key == 0 ? 1 : key;  // 0 marks an empty slot
    std::size_t i = slot(key);
    while (slots_[i].key != 0 && slots_[i].key != key) i = (i + 1) & (slots_.size() - 1);
    if (slots_[i].key == 0) slots_[i].key = key, ++size_;
    return slots_[i].value;
  }
  const V* find(std::uint64_t key) const {
    if (slots_.empty()) return nullptr;
    key = key == 0 ? 1 : key;
    for (std::size_t i = slot(key);; i = (i + 1) & (slots_.size() - 1)) {
      if (slots_[i].key == key) return &slots_[i].value;
      if (slots_[i].key == 0) return nullptr;
    }
  }
  std::size_t size() const { return size_; }

 private:
  struct entry {
    std::uint64_t key = 0;
    V value{};
  };
  std::size_t slot(std::uint64_t key) const { return (key * 0x9E3779B97F4A7C15ULL >> 20) & (slots_.size() - 1); }
  void grow() {
    std::vector<entry> old(std::max<std::size_t>(64, 2 * slots_.size()));
    std::swap(old, slots_);
    size_ = 0;
    for (entry& e : old)
      if (e.key != 0) (*this)[e.key] = std::move(e.value);
  }
  std::vector<entry> slots_;  // key and value side by side: one cache miss per lookup
  std::size_t size_ = 0;
};

}  // namespace oracle_detail
using oracle_detail::hash_table;

// ---- the model learnt from the train split -------------------------------------------------------

struct oracle::model {
  struct word_stats {
    std::uint32_t posts = 0;        // train posts holding the stem
    std::uint32_t carried = 0;      // of those, the ones whose synopsis holds it too
    std::uint32_t unsupported = 0;  // synopses holding it while their post does not
    std::uint32_t occurrences = 0;  // in the train posts and synopses
    std::uint32_t followed = 0;     // of those, followed by a word
    std::uint32_t followers = 0;    // distinct words following it
  };
  // Form model classes: [0, frequent_words) frequent synopsis words, then the signatures of rare
  // words, the marks, <s> and </s>.
  static constexpr std::size_t frequent_words = 1000;
  static constexpr std::size_t begin_class = frequent_words + signatures + mark_kinds;
  static constexpr std::size_t end_class = begin_class + 1;
  static constexpr std::size_t classes = end_class + 1;

  oracle_options options;
  double posts = 0, words = 0, carry_rate = 0;
  hash_table<word_stats> stats;        // by stem
  hash_table<std::uint32_t> pairs;     // adjacent stems in the train posts and synopses
  hash_table<std::uint32_t> frequent;  // surface -> class + 1
  std::vector<double> form_llr;        // [previous class][class]: log P_synopsis - log P_description
  std::vector<double> length_prior;    // by number of words

  std::size_t class_of(const token& t, bool word_known) const {
    if (t.k != kind::word) return frequent_words + signatures + static_cast<std::size_t>(t.k) - 1;
    if (!word_known) return frequent_words + signatures + static_cast<std::size_t>(kind::junk) - 1;
    const std::uint32_t* c = frequent.find(t.surface);
    return c != nullptr ? *c - 1 : frequent_words + t.signature;
  }
  double idf(const word_stats* s) const { return std::log((posts + 1.0) / ((s ? s->posts : 0) + 1.0)) + 1.0; }
  double carry(const word_stats* s) const {
    return ((s ? s->carried : 0) + options.carry_prior * carry_rate) / ((s ? s->posts : 0) + options.carry_prior);
  }
  double paraphrase(const word_stats* s) const {
    if (s == nullptr) return 0.0;
    const double rate = s->unsupported / (posts - s->posts + 1.0);
    return rate / (rate + options.paraphrase_strength);
  }
  // ---- training (oracle::oracle) ----
  /// Adds the class transitions of one text, <s> to </s>, to counts [previous class][class].
  void count_classes(const std::vector<token>& seq, std::vector<double>& counts) const {
    std::size_t previous = begin_class;
    for (const token& t : seq) {
      const std::size_t c = class_of(t, true);
      counts[previous * classes + c] += 1;
      previous = c;
    }
    counts[previous * classes + end_class] += 1;
  }
  /// Adds one text's word occurrences and adjacent pairs to the corpus statistics.
  void count_words(const std::vector<token>& seq) {
    std::uint64_t previous = 0;
    for (const token& t : seq) {
      if (t.k != kind::word) continue;
      ++stats[t.stem].occurrences;
      ++words;
      if (previous != 0) {
        word_stats& p = stats[previous];
        ++p.followed;
        if (pairs[pair_key(previous, t.stem)]++ == 0) ++p.followers;
      }
      previous = t.stem;
    }
  }
  /// Length prior: the add-one smoothed histogram of synopsis lengths, scaled to a peak of 1.
  void set_length_prior(std::vector<double> lengths) {
    lengths.resize(lengths.size() + 8, 0.0);
    const double peak = *std::max_element(lengths.begin() + 1, lengths.end()) + 1.0;
    length_prior.assign(lengths.size(), 0.0);
    for (std::size_t n = 1; n < lengths.size(); ++n)
      length_prior[n] = std::pow((lengths[n] + 1.0) / peak, options.length_power);
  }

  // ---- rate's components (oracle::rate): each one a number in [0, 1] ----
  /// The post: its stems (sorted, with repeats), adjacent pairs (sorted) and the position of the
  /// first occurrence of each content stem.
  struct post_view {
    std::vector<std::uint64_t> stems, pairs;
    std::vector<std::pair<std::uint64_t, std::size_t>> first_seen;  // content stem, position
    [[nodiscard]] double count(const std::vector<std::uint64_t>& sorted, std::uint64_t x) const {
      const auto [lo, hi] = std::equal_range(sorted.begin(), sorted.end(), x);
      return static_cast<double>(hi - lo);
    }
    [[nodiscard]] bool has(std::uint64_t stem) const { return std::binary_search(stems.begin(), stems.end(), stem); }
  };
  /// A summary word (its stem and whether it is a content word) with its statistics; a word
  /// neither in the corpus nor in the post is a non-word (SentencePiece pieces glued together).
  struct word_info {
    std::uint64_t stem;
    bool content;
    const word_stats* stats;
    bool in_post, known;
  };
  static post_view read_post(std::string_view post);
  std::vector<word_info> look_up(const std::vector<const token*>& words, const post_view& post) const;
  double faithfulness(const std::vector<word_info>& info, std::vector<std::uint64_t>& content) const;
  double coverage(post_view post, const std::vector<const token*>& words) const;
  double phrasing(const std::vector<word_info>& info, const post_view& post,
                  std::vector<std::uint64_t>& pair_keys) const;
  double form(const std::vector<token>& tokens, const std::vector<word_info>& info) const;
  double combine(const verdict& v) const;
};

namespace {

// Witten–Bell smoothed class bigrams from counts [previous][class], as log-probabilities.
std::vector<double> bigram_log_probs(const std::vector<double>& counts, std::size_t V) {
  std::vector<double> unigram(V, 1.0);
  double total = static_cast<double>(V);
  for (std::size_t i = 0; i < V * V; ++i) unigram[i % V] += counts[i], total += counts[i];
  for (double& u : unigram) u /= total;
  std::vector<double> out(V * V);
  for (std::size_t p = 0; p < V; ++p) {
    double n = 0, types = 0;
    for (std::size_t c = 0; c < V; ++c) n += counts[p * V + c], types += counts[p * V + c] > 0;
    for (std::size_t c = 0; c < V; ++c)
      out[p * V + c] = n > 0 ? std::log((counts[p * V + c] + types * unigram[c]) / (n + types)) : std::log(unigram[c]);
  }
  return out;
}

std::vector<std::uint64_t> distinct(std::vector<std::uint64_t> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

}  // namespace

oracle::oracle(std::span<const example> train, oracle_options options) {
  auto m = std::make_shared<model>();
  m->options = options;
  m->posts = static_cast<double>(train.size());

  // The synopses first: their frequent words are the form model's classes.
  std::vector<std::vector<token>> synopses;
  synopses.reserve(train.size());
  std::unordered_map<std::uint64_t, std::uint64_t> frequency;
  std::vector<double> lengths(2, 0.0);
  for (const example& ex : train) {
    synopses.push_back(tokenize(ex.label, text_kind::summary));
    std::size_t n = 0;
    for (const token& t : synopses.back())
      if (t.k == kind::word) ++frequency[t.surface], ++n;
    if (lengths.size() <= n) lengths.resize(n + 1, 0.0);
    ++lengths[n];
  }
  std::vector<std::pair<std::uint64_t, std::uint64_t>> by_frequency(frequency.begin(), frequency.end());
  std::sort(by_frequency.begin(), by_frequency.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  for (std::size_t i = 0; i < std::min(model::frequent_words, by_frequency.size()); ++i)
    m->frequent[by_frequency[i].first] = static_cast<std::uint32_t>(i + 1);

  constexpr std::size_t V = model::classes;
  std::vector<double> synopsis_counts(V * V, 0.0), post_counts(V * V, 0.0);
  double carried = 0, post_content = 0;
  std::vector<std::uint64_t> stems;
  for (std::size_t i = 0; i < train.size(); ++i) {
    const std::vector<token> post = tokenize(post_of(train[i].prompt), text_kind::description);
    const std::vector<token>& synopsis = synopses[i];
    stems.clear();
    for (const token& t : post)
      if (t.k == kind::word) stems.push_back(t.stem), post_content += t.content;
    const auto in_post = distinct(stems);
    for (std::uint64_t s : in_post) ++m->stats[s].posts;
    stems.clear();
    for (const token& t : synopsis)
      if (t.content) stems.push_back(t.stem);
    for (std::uint64_t s : distinct(stems)) {
      model::word_stats& st = m->stats[s];
      if (std::binary_search(in_post.begin(), in_post.end(), s)) {
        ++st.carried;
        ++carried;
      } else {
        ++st.unsupported;
      }
    }
    m->count_words(post);
    m->count_words(synopsis);
    m->count_classes(post, post_counts);
    m->count_classes(synopsis, synopsis_counts);
  }
  m->carry_rate = post_content > 0 ? carried / post_content : 0.0;
  const auto synopsis_lp = bigram_log_probs(synopsis_counts, V), post_lp = bigram_log_probs(post_counts, V);
  m->form_llr.resize(V * V);
  for (std::size_t i = 0; i < V * V; ++i) m->form_llr[i] = synopsis_lp[i] - post_lp[i];

  m->set_length_prior(std::move(lengths));
  model_ = std::move(m);
}

std::size_t oracle::corpus_size() const { return static_cast<std::size_t>(model_->posts); }
const oracle_options& oracle::options() const { return model_->options; }

oracle::model::post_view oracle::model::read_post(std::string_view post) {
  post_view out;
  std::uint64_t previous = 0;
  for (const token& t : tokenize(post, text_kind::description)) {
    if (t.k != kind::word) continue;
    if (t.content) out.first_seen.emplace_back(t.stem, out.stems.size());
    if (previous != 0) out.pairs.push_back(pair_key(previous, t.stem));
    out.stems.push_back(t.stem);
    previous = t.stem;
  }
  std::sort(out.stems.begin(), out.stems.end());
  std::sort(out.pairs.begin(), out.pairs.end());
  return out;
}

std::vector<oracle::model::word_info> oracle::model::look_up(const std::vector<const token*>& words,
                                                             const post_view& post) const {
  std::vector<word_info> info;
  info.reserve(words.size());
  for (const token* t : words) {
    const word_stats* s = stats.find(t->stem);
    const bool p = post.has(t->stem);
    info.push_back({t->stem, t->content, s, p, s != nullptr || p});
  }
  return info;
}

/// Faithfulness: idf-weighted share of content words the post supports; a word synopses often
/// bring in unsupported (library, tool) gets partial credit. Collects the content stems.
double oracle::model::faithfulness(const std::vector<word_info>& info, std::vector<std::uint64_t>& content) const {
  double claimed = 0, supported = 0;
  for (const word_info& w : info) {
    if (!w.content) continue;
    content.push_back(w.stem);
    const double weight = idf(w.stats);
    claimed += weight;
    supported += weight * (w.in_post ? 1.0 : paraphrase(w.stats));
  }
  return claimed > 0 ? std::min(1.0, supported / claimed / options.faithfulness_saturation) : 0.0;
}

/// Coverage of the post's key words: carry probability times an early-position weight.
double oracle::model::coverage(post_view post, const std::vector<const token*>& words) const {
  auto& first_seen = post.first_seen;
  std::sort(first_seen.begin(), first_seen.end());
  first_seen.erase(std::unique(first_seen.begin(), first_seen.end(),
                               [](const auto& a, const auto& b) { return a.first == b.first; }),
                   first_seen.end());
  std::vector<std::pair<double, std::uint64_t>> keys;
  keys.reserve(first_seen.size());
  for (const auto& [stem, position] : first_seen)
    keys.emplace_back(carry(stats.find(stem)) / (1.0 + static_cast<double>(position) / options.position_scale), stem);
  std::vector<std::uint64_t> summary_stems;
  for (const token* t : words) summary_stems.push_back(t->stem);
  summary_stems = distinct(std::move(summary_stems));
  double covered = 0;
  for (const auto& [weight, stem] : keys)
    if (std::binary_search(summary_stems.begin(), summary_stems.end(), stem)) covered += weight;
  const std::size_t top = std::min(options.key_words, keys.size());
  std::partial_sort(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(top), keys.end(), std::greater<>());
  double total = 0;
  for (std::size_t i = 0; i < top; ++i) total += keys[i].first;
  return total > 0 ? std::min(1.0, covered / total / options.coverage_saturation) : 0.0;
}

/// Phrasing: do adjacent words belong together? Pointwise mutual information of each pair under
/// a Witten–Bell bigram model of the corpus with the post as a cache, log P(w | v) / P(w).
/// Collects the pairs' keys.
double oracle::model::phrasing(const std::vector<word_info>& info, const post_view& post,
                               std::vector<std::uint64_t>& pair_keys) const {
  const oracle_options& o = options;
  double belonging = 0;
  const double vocabulary = static_cast<double>(stats.size()) + 1.0;
  for (std::size_t i = 1; i < info.size(); ++i) {
    const word_info &a = info[i - 1], &b = info[i];
    const std::uint64_t key = pair_key(a.stem, b.stem);
    pair_keys.push_back(key);
    if (!a.known || !b.known) continue;  // a non-word belongs with nothing
    const std::uint32_t* corpus_pair = pairs.find(key);
    const double a_in_post = post.count(post.stems, a.stem);
    const double c = (corpus_pair ? *corpus_pair : 0) + o.cache_weight * post.count(post.pairs, key);
    const double cv = (a.stats ? a.stats->followed : 0) + o.cache_weight * a_in_post;
    const double types = (a.stats ? a.stats->followers : 0) + (a_in_post > 0 ? 1.0 : 0.0) + o.pair_smoothing;
    const double p = ((b.stats ? b.stats->occurrences : 0) + 1.0) / (words + vocabulary);
    const double pmi = std::log((c + types * p) / ((cv + types) * p));
    belonging += 1.0 / (1.0 + std::exp(-(pmi - o.pmi_threshold) / o.phrasing_scale));
  }
  return pair_keys.empty() ? 0.0 : belonging / static_cast<double>(pair_keys.size());
}

/// Form: does the sequence of word classes read like a synopsis rather than like description
/// prose? The mean log-likelihood ratio per transition, through a logistic.
double oracle::model::form(const std::vector<token>& tokens, const std::vector<word_info>& info) const {
  double llr = 0;
  std::size_t previous = begin_class, k = 0;
  for (const token& t : tokens) {
    const bool known = t.k != kind::word || info[k++].known;
    const std::size_t c = class_of(t, known);
    llr += form_llr[previous * classes + c];
    previous = c;
  }
  llr += form_llr[previous * classes + end_class];
  return 1.0 / (1.0 + std::exp(-options.form_sharpness * llr / static_cast<double>(tokens.size() + 1)));
}

/// The weighted geometric mean of the components, each floored, times the redundancy.
double oracle::model::combine(const verdict& v) const {
  const oracle_options& o = options;
  const std::array<std::pair<double, double>, 5> parts{{{v.faithfulness, o.faithfulness_weight},
                                                        {v.coverage, o.coverage_weight},
                                                        {v.phrasing, o.phrasing_weight},
                                                        {v.form, o.form_weight},
                                                        {v.length, o.length_weight}}};
  double log_score = 0, weights = 0;
  for (const auto& [value, weight] : parts) {
    log_score += weight * std::log(o.floor + (1.0 - o.floor) * value);
    weights += weight;
  }
  return v.redundancy * std::exp(log_score / weights);
}

oracle::verdict oracle::rate(std::string_view post, std::string_view summary) const {
  const model& m = *model_;
  verdict v;
  const std::vector<token> tokens = tokenize(summary, text_kind::summary);
  std::vector<const token*> words;
  for (const token& t : tokens)
    if (t.k == kind::word) words.push_back(&t);
  if (words.empty()) return v;
  const model::post_view seen = model::read_post(post);
  const auto info = m.look_up(words, seen);
  std::vector<std::uint64_t> content, pair_keys;
  v.faithfulness = m.faithfulness(info, content);
  v.coverage = m.coverage(seen, words);
  v.phrasing = m.phrasing(info, seen, pair_keys);
  v.form = m.form(tokens, info);
  v.length = m.length_prior[std::min(words.size(), m.length_prior.size() - 1)];
  // Redundancy: the shares of content words and of word pairs that are repeats.
  const auto repeated_share = [](std::vector<std::uint64_t> x) {
    if (x.empty()) return 0.0;
    const double n = static_cast<double>(x.size());
    return (n - static_cast<double>(distinct(std::move(x)).size())) / n;
  };
  v.redundancy =
      std::pow((1.0 - repeated_share(content)) * (1.0 - repeated_share(pair_keys)), m.options.redundancy_power);
  v.score = m.combine(v);
  return v;
}

void score_jsonl(const oracle& o, std::istream& in, std::ostream& out, std::string_view source_name) {
  const auto where = [&](std::size_t line) { return std::string(source_name) + ":" + std::to_string(line); };
  std::string text;
  for (std::size_t line = 1; std::getline(in, text); ++line) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json object;
    try {
      object = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      throw std::runtime_error(where(line) + ": invalid JSON: " + e.what());
    }
    if (!object.is_object())
      throw std::runtime_error(where(line) + ": expected a JSON object, got " + std::string(object.type_name()));
    for (const char* field : {"prompt", "summary"}) {
      const auto it = object.find(field);
      if (it == object.end()) throw std::runtime_error(where(line) + ": field \"" + field + "\" is missing");
      if (!it->is_string())
        throw std::runtime_error(where(line) + ": field \"" + field + "\" is not a string (got " + it->type_name() +
                                 ")");
    }
    const oracle::verdict v =
        o.rate(post_of(object["prompt"].get<std::string>()), object["summary"].get<std::string>());
    object["score"] = v.score;
    object["faithfulness"] = v.faithfulness;
    object["coverage"] = v.coverage;
    object["phrasing"] = v.phrasing;
    object["form"] = v.form;
    object["length"] = v.length;
    object["redundancy"] = v.redundancy;
    out << object.dump() << '\n';
  }
  if (in.bad()) throw std::runtime_error(std::string(source_name) + ": read error");
}

}  // namespace tldr
