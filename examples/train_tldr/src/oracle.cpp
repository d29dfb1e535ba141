#include "oracle.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <istream>
#include <ostream>
#include <stdexcept>
#include <array>
#include <cctype>
#include <cmath>
#include <utility>
#include <vector>

namespace tldr {
namespace {

bool is_ascii_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Lowercase words and whether a sentence ends after each ('.', '!', '?', ':', a line break or
// the end of the text before the next word).
struct token {
  std::string word;
  bool ends_sentence = false;
};

std::vector<token> tokens_of(std::string_view text) {
  std::vector<token> tokens;
  std::string word;
  for (char c : text) {
    if (is_ascii_alnum(c)) {
      word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      continue;
    }
    if (!word.empty()) {
      tokens.push_back({std::move(word), false});
      word.clear();
    }
    if (!tokens.empty() && (c == '.' || c == '!' || c == '?' || c == ':' || c == '\n')) tokens.back().ends_sentence = true;
  }
  if (!word.empty()) tokens.push_back({std::move(word), false});
  if (!tokens.empty()) tokens.back().ends_sentence = true;
  return tokens;
}

std::vector<std::string> words_of(std::string_view text) {
  std::vector<std::string> words;
  for (token& t : tokens_of(text)) words.push_back(std::move(t.word));
  return words;
}

// Sorted, for binary search.
constexpr std::array<std::string_view, 126> stopwords{
    "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "as",
    "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can",
    "could", "did", "do", "does", "doing", "don", "down", "during", "each", "eg", "etc", "even", "every",
    "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "him",
    "his", "how", "ie", "if", "in", "into", "is", "it", "its", "just", "may", "me", "might", "more", "most",
    "much", "must", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "one", "only", "or",
    "other", "our", "out", "over", "own", "same", "shall", "she", "should", "so", "some", "such", "than",
    "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "through", "to",
    "too", "under", "until", "up", "upon", "us", "very", "was", "we", "were", "what", "when", "where",
    "which", "while", "who", "will", "with", "would", "you", "your"};

bool is_stopword(std::string_view w) { return std::binary_search(stopwords.begin(), stopwords.end(), w); }
bool is_content(std::string_view w) { return w.size() >= 2 && !is_stopword(w); }

// Words that cannot end a finished phrase, or start one.
constexpr std::array<std::string_view, 22> dangling_end{
    "a", "an", "and", "as", "at", "but", "by", "for", "from", "in", "into", "is",
    "of", "on", "or", "than", "that", "the", "to", "which", "with", "are"};
constexpr std::array<std::string_view, 10> dangling_start{"and", "or", "but", "of", "nor", "s", "t", "ing", "ed", "es"};

template <std::size_t N>
bool one_of(const std::array<std::string_view, N>& list, std::string_view w) {
  return std::find(list.begin(), list.end(), w) != list.end();
}

bool ends_with(const std::string& w, std::string_view suffix) { return std::string_view(w).ends_with(suffix); }

std::string stem(std::string w) {
  // A version digit on a name does not make another word: css2/css, python3/python.
  if (const std::size_t last = w.find_last_not_of("0123456789");
      last != std::string::npos && last + 1 < w.size() && std::isalpha(static_cast<unsigned char>(w[last])))
    w.resize(last + 1);
  const std::size_t n = w.size();
  if (n > 5 && ends_with(w, "ing")) {
    w.resize(n - 3);
  } else if (n > 4 && ends_with(w, "ies")) {
    w.resize(n - 3);
    w += 'y';
  } else if (n > 4 && ends_with(w, "ed")) {
    w.resize(n - 2);
  } else if (n > 4 && ends_with(w, "es") &&
             (w[n - 3] == 's' || w[n - 3] == 'x' || w[n - 3] == 'z' || ends_with(w, "ches") || ends_with(w, "shes"))) {
    w.resize(n - 2);
  } else if (n > 3 && w.back() == 's' && !ends_with(w, "ss") && !ends_with(w, "us") && !ends_with(w, "is")) {
    w.resize(n - 1);
  }
  if (w.size() > 4 && w.back() == 'e') w.pop_back();  // parse/parses/parsing all give "pars"
  return w;
}

std::uint64_t pair_hash(const std::string& a, const std::string& b) {
  std::uint64_t h = 14695981039346656037ULL;  // FNV-1a 64, stable across runs
  auto add = [&h](std::string_view s) {
    for (char c : s) {
      h ^= static_cast<unsigned char>(c);
      h *= 1099511628211ULL;
    }
  };
  add(a);
  add("\x1f");
  add(b);
  return h;
}

std::vector<std::string> stems_of(const std::vector<std::string>& words) {
  std::vector<std::string> stems;
  stems.reserve(words.size());
  for (const std::string& w : words) stems.push_back(stem(w));
  return stems;
}

// Whitespace-separated pieces of text that are not words: stray punctuation, the "⁇" that
// SentencePiece prints for unknown pieces, replacement characters, runs like "!!!" or ",,,".
bool junk_piece(std::string_view piece) {
  if (piece.find("\xE2\x81\x87") != std::string_view::npos || piece.find("\xEF\xBF\xBD") != std::string_view::npos)
    return true;
  for (std::size_t i = 0; i + 2 < piece.size(); ++i) {
    const char c = piece[i];
    if (std::ispunct(static_cast<unsigned char>(c)) && piece[i + 1] == c && piece[i + 2] == c) return true;
  }
  if (std::any_of(piece.begin(), piece.end(), is_ascii_alnum)) return false;
  static constexpr std::array<std::string_view, 7> allowed{"-", "--", "/", "&", "+", "\xE2\x80\x93", "\xE2\x80\x94"};
  return !one_of(allowed, piece);
}

std::vector<std::string_view> pieces_of(std::string_view text) {
  std::vector<std::string_view> pieces;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    const std::size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    if (i > start) pieces.push_back(text.substr(start, i - start));
  }
  return pieces;
}

}  // namespace

oracle::oracle(std::span<const example> corpus, oracle_options options) : options_(options) {
  documents_ = corpus.size();
  std::vector<std::string> distinct;
  for (const example& ex : corpus) {
    const std::vector<token> tokens = tokens_of(post_of(ex.prompt));
    std::vector<std::string> stems;
    stems.reserve(tokens.size());
    for (const token& t : tokens) {
      stems.push_back(stem(t.word));
      word_stats& st = stats_[stems.back()];
      ++st.occurrences;
      if (t.ends_sentence) ++st.sentence_ends;
    }
    distinct = stems;
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    for (const std::string& s : distinct) ++stats_[s].documents;
    for (std::size_t i = 0; i + 1 < stems.size(); ++i) bigrams_.push_back(pair_hash(stems[i], stems[i + 1]));
  }
  std::sort(bigrams_.begin(), bigrams_.end());
  bigrams_.erase(std::unique(bigrams_.begin(), bigrams_.end()), bigrams_.end());
  bigrams_.shrink_to_fit();
}

double oracle::idf(const std::string& stem) const {
  const auto it = stats_.find(stem);
  const double df = it == stats_.end() ? 0.0 : it->second.documents;
  return std::log((static_cast<double>(documents_) + 1.0) / (df + 1.0)) + 1.0;
}

double oracle::ending_rate(const std::string& stem) const {
  // Smoothed towards `prior`, so that a word seen a few times is not judged on them alone.
  constexpr double prior = 0.15, strength = 5.0;
  const auto it = stats_.find(stem);
  if (it == stats_.end()) return prior;
  return (it->second.sentence_ends + prior * strength) / (it->second.occurrences + strength);
}

oracle::verdict oracle::rate(std::string_view post, std::string_view summary) const {
  verdict v{0, 0, 0, 0, 0};
  const std::vector<std::string> words = words_of(summary);
  if (words.empty()) return v;  // nothing said: nothing to reward
  const std::vector<std::string> stems = stems_of(words);
  const std::vector<std::string> post_words = words_of(post);
  const std::vector<std::string> post_stems = stems_of(post_words);
  std::vector<std::string> post_set = post_stems;
  std::sort(post_set.begin(), post_set.end());
  post_set.erase(std::unique(post_set.begin(), post_set.end()), post_set.end());
  auto in_post = [&](const std::string& s) { return std::binary_search(post_set.begin(), post_set.end(), s); };

  // Faithfulness, idf-weighted: an unsupported rare word is a claim the post does not make,
  // an unsupported common one ("tool", "library") mostly a paraphrase.
  double claimed = 0.0, supported = 0.0;
  std::vector<std::string> content_stems;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (!is_content(words[i])) continue;
    content_stems.push_back(stems[i]);
    const double w = idf(stems[i]);
    claimed += w;
    if (in_post(stems[i])) supported += w;
  }
  v.faithfulness = claimed > 0.0 ? supported / claimed : 0.0;

  // Coverage of the post's salient stems.
  std::unordered_map<std::string, std::size_t> tf;
  for (std::size_t i = 0; i < post_words.size(); ++i)
    if (is_content(post_words[i])) ++tf[post_stems[i]];
  std::vector<std::pair<double, std::string>> salient;
  salient.reserve(tf.size());
  for (const auto& [s, count] : tf) salient.emplace_back(static_cast<double>(count) * idf(s), s);
  std::sort(salient.begin(), salient.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;  // ties by stem: deterministic
  });
  if (salient.size() > options_.salient_words) salient.resize(options_.salient_words);
  std::vector<std::string> summary_set = stems;
  std::sort(summary_set.begin(), summary_set.end());
  double total = 0.0, covered = 0.0;
  for (const auto& [weight, s] : salient) {
    const double w = idf(s);
    total += w;
    if (std::binary_search(summary_set.begin(), summary_set.end(), s)) covered += w;
  }
  v.coverage = total > 0.0 ? covered / total : 0.0;

  // Fluency.
  double penalty = 0.0;
  if (!content_stems.empty()) {  // repeated content words
    std::vector<std::string> distinct = content_stems;
    std::sort(distinct.begin(), distinct.end());
    const auto unique = std::unique(distinct.begin(), distinct.end()) - distinct.begin();
    penalty += static_cast<double>(content_stems.size() - static_cast<std::size_t>(unique)) /
               static_cast<double>(content_stems.size());
  }
  if (stems.size() >= 2) {  // repeated bigrams; word pairs English does not use
    std::vector<std::uint64_t> post_pairs;
    for (std::size_t i = 0; i + 1 < post_stems.size(); ++i) post_pairs.push_back(pair_hash(post_stems[i], post_stems[i + 1]));
    std::sort(post_pairs.begin(), post_pairs.end());
    std::vector<std::uint64_t> pairs;
    std::size_t unseen = 0;
    for (std::size_t i = 0; i + 1 < stems.size(); ++i) {
      const std::uint64_t h = pair_hash(stems[i], stems[i + 1]);
      pairs.push_back(h);
      if (!std::binary_search(bigrams_.begin(), bigrams_.end(), h) &&
          !std::binary_search(post_pairs.begin(), post_pairs.end(), h))
        ++unseen;
    }
    const double n_pairs = static_cast<double>(pairs.size());
    std::sort(pairs.begin(), pairs.end());
    const auto unique = std::unique(pairs.begin(), pairs.end()) - pairs.begin();
    penalty += 0.5 * (n_pairs - static_cast<double>(unique)) / n_pairs;
    penalty += 0.4 * static_cast<double>(unseen) / n_pairs;
  }
  const std::vector<std::string_view> pieces = pieces_of(summary);
  const auto junk = std::count_if(pieces.begin(), pieces.end(), junk_piece);
  penalty += 2.0 * static_cast<double>(junk) / static_cast<double>(pieces.size());
  const auto unknown = std::count_if(stems.begin(), stems.end(),
                                     [&](const std::string& s) { return !stats_.contains(s) && !in_post(s); });
  penalty += static_cast<double>(unknown) / static_cast<double>(stems.size());
  // An unfinished ending: a function word or open punctuation last, an unclosed parenthesis,
  // or, without a closing full stop, a last word that rarely ends a sentence in the corpus
  // (a summary cut off mid-phrase).
  const char last_char = pieces.back().back();
  const bool dangling = one_of(dangling_end, words.back()) || last_char == ',' || last_char == ';' ||
                        last_char == ':' || last_char == '(' || last_char == '-' ||
                        std::count(summary.begin(), summary.end(), '(') > std::count(summary.begin(), summary.end(), ')');
  if (dangling) {
    penalty += 0.3;
  } else if (last_char != '.' && last_char != '!' && last_char != '?') {
    constexpr double natural = 0.1;  // a noun ending a noun phrase ends sentences about this often
    penalty += 0.3 * std::max(0.0, 1.0 - ending_rate(stems.back()) / natural);
  }
  const unsigned char first_char = static_cast<unsigned char>(pieces.front().front());
  const bool bad_start =
      one_of(dangling_start, words.front()) ||
      (first_char < 0x80 && !is_ascii_alnum(static_cast<char>(first_char)) &&
       std::string_view("\"'([`").find(static_cast<char>(first_char)) == std::string_view::npos);
  if (bad_start) penalty += 0.3;
  v.fluency = std::clamp(1.0 - penalty, 0.0, 1.0);

  // Brevity.
  const double n = static_cast<double>(words.size());
  const double lo = static_cast<double>(options_.short_words), hi = static_cast<double>(options_.long_words);
  v.brevity = n < lo ? n / lo : n <= hi ? 1.0 : std::exp(-(n - hi) / options_.length_decay);

  v.score = options_.faithfulness_weight * v.faithfulness + options_.coverage_weight * v.coverage +
            options_.fluency_weight * v.fluency + options_.brevity_weight * v.brevity;
  return v;
}

void score_jsonl(const oracle& o, std::istream& in, std::ostream& out, const std::string& source_name) {
  std::string line;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto where = source_name + ":" + std::to_string(number);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(where + ": not JSON (" + e.what() + ")");
    }
    for (const char* field : {"prompt", "summary"})
      if (!j.is_object() || !j.contains(field) || !j[field].is_string())
        throw std::runtime_error(where + ": field \"" + field + "\" missing or not a string");
    const auto v = o.rate(post_of(j["prompt"].get<std::string>()), j["summary"].get<std::string>());
    j["score"] = v.score;
    out << j.dump() << "\n";
  }
}

}  // namespace tldr
