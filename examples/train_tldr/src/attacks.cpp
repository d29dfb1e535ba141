#include "attacks.hpp"

#include "hashing.hpp"
#include "text.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <utility>

namespace tldr {
namespace {

using text::is_alnum;
using text::is_space;

std::vector<std::string_view> pieces_of(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    const std::size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    if (i > start) out.push_back(text.substr(start, i - start));
  }
  return out;
}

std::string join(std::span<const std::string_view> words) {
  std::string out;
  for (std::string_view w : words) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

std::string join(std::span<const std::string> words) {
  std::vector<std::string_view> views(words.begin(), words.end());
  return join(views);
}

// Letter/digit runs: the surface form and its lowercase key.
std::vector<std::pair<std::string_view, std::string>> runs_of(std::string_view text) {
  std::vector<std::pair<std::string_view, std::string>> out;
  for (std::size_t i = 0; i < text.size();) {
    if (!is_alnum(text[i])) {
      ++i;
      continue;
    }
    std::size_t j = i;
    std::string key;
    while (j < text.size() && is_alnum(text[j]))
      key += static_cast<char>(std::tolower(static_cast<unsigned char>(text[j++])));
    out.emplace_back(text.substr(i, j - i), std::move(key));
    i = j;
  }
  return out;
}

// The first sentence: up to a full stop, question or exclamation mark followed by a space, or a
// line break.
std::string_view first_sentence(std::string_view post) {
  for (std::size_t i = 0; i < post.size(); ++i) {
    if (post[i] == '\n') return post.substr(0, i);
    if ((post[i] == '.' || post[i] == '!' || post[i] == '?') && (i + 1 == post.size() || is_space(post[i + 1])))
      return post.substr(0, i + 1);
  }
  return post;
}

std::set<std::string> word_set(std::string_view text) {
  std::set<std::string> out;
  for (auto& [surface, key] : runs_of(text)) out.insert(std::move(key));
  return out;
}

double jaccard(const std::set<std::string>& a, const std::set<std::string>& b) {
  std::size_t shared = 0;
  for (const std::string& w : a) shared += b.contains(w);
  const std::size_t all = a.size() + b.size() - shared;
  return all == 0 ? 0.0 : static_cast<double>(shared) / static_cast<double>(all);
}

}  // namespace

std::string first_words(std::string_view text, std::size_t n) {
  auto words = pieces_of(text);
  words.resize(std::min(n, words.size()));
  return join(words);
}

std::string last_words(std::string_view text, std::size_t n) {
  const auto words = pieces_of(text);
  return join(std::span(words).last(std::min(n, words.size())));
}

std::string shuffled_words(std::string_view text, std::uint64_t seed) {
  const auto words = pieces_of(text);
  auto order = words;
  std::mt19937_64 rng(seed);
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);  // Fisher–Yates
  // A rotation differs from the original unless all words are equal.
  if (order == words) std::rotate(order.begin(), order.begin() + (order.empty() ? 0 : 1), order.end());
  if (order == words) return std::string(text);
  return join(order);
}

std::string repeated(std::string_view word, std::size_t times) {
  std::vector<std::string_view> words(times, word);
  return join(words);
}

std::string title_of(std::string_view prompt) {
  if (!prompt.starts_with("TITLE: ")) return "";
  const std::size_t end = prompt.find('\n');
  return std::string(prompt.substr(7, end == std::string_view::npos ? std::string_view::npos : end - 7));
}

attacker::attacker(std::span<const example> corpus, std::uint64_t seed) : seed_(seed) {
  documents_ = static_cast<double>(corpus.size());
  for (const example& e : corpus)
    for (const std::string& w : word_set(post_of(e.prompt))) ++document_frequency_[w];
}

std::uint64_t attacker::seed_for(const example& target, std::uint64_t stream) const {
  return mix64(seed_ ^ mix64(fnv1a64(target.id) + stream));
}

std::vector<std::string> attacker::salient_words(std::string_view post, std::size_t k) const {
  std::vector<std::pair<std::string, std::string_view>> first_seen;  // key, surface
  std::unordered_map<std::string, double> tf;
  for (auto& [surface, key] : runs_of(post)) {
    if (key.size() < 2 || std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    if (tf[key]++ == 0) first_seen.emplace_back(key, surface);
  }
  std::vector<std::pair<double, std::string>> ranked;
  for (const auto& [key, surface] : first_seen) {
    const auto it = document_frequency_.find(key);
    const double df = it == document_frequency_.end() ? 0.0 : it->second;
    ranked.emplace_back(tf[key] * std::log((documents_ + 1.0) / (df + 1.0)), key);
  }
  std::sort(ranked.begin(), ranked.end(),
            [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
  std::vector<std::string> out;
  for (std::size_t i = 0; i < std::min(k, ranked.size()); ++i) out.push_back(ranked[i].second);
  return out;
}

std::vector<attack> attacker::designed(const example& target, std::span<const example> pool) const {
  const std::string post = post_of(target.prompt);
  const auto salient = salient_words(post, 10);
  const std::string top = salient.empty() ? "" : salient.front();
  const auto gold_words = pieces_of(target.label);
  std::string other;
  if (!pool.empty()) {
    const std::string group = package_group(target.id);
    const std::size_t start = seed_for(target, 2) % pool.size();
    for (std::size_t i = 0; i < pool.size(); ++i) {
      const example& e = pool[(start + i) % pool.size()];
      if (package_group(e.id) != group && e.label != target.label) {
        other = e.label;
        break;
      }
    }
  }
  auto list = [&](std::size_t k) { return join(std::span(salient).first(std::min(k, salient.size()))); };
  return {
      {"first 10 words of the post", first_words(post, 10)},
      {"5 most salient words", list(5)},
      {"10 most salient words", list(10)},
      {"gold's words shuffled", shuffled_words(target.label, seed_for(target, 1))},
      {"most salient word x5", repeated(top, 5)},
      {"gold's first word x5", repeated(gold_words.empty() ? "" : gold_words.front(), 5)},
      {"another package's gold", other},
      {"empty", ""},
      {"most salient word", top},
      {"title", title_of(target.prompt)},
  };
}

std::vector<attack> attacker::held_out(const example& target, std::span<const example> pool) const {
  const std::string post = post_of(target.prompt);
  const auto salient = salient_words(post, 3);
  auto salient_at = [&](std::size_t i) { return i < salient.size() ? salient[i] : std::string(); };
  const auto words = pieces_of(post);
  const auto gold = pieces_of(target.label);

  std::string span;
  if (!words.empty()) {
    const std::size_t start = seed_for(target, 3) % words.size();
    span = join(std::span(words).subspan(start, std::min<std::size_t>(8, words.size() - start)));
  }
  // The first sentence's predicate: what follows "is a", "is an", "provides a" ..., 8 words.
  const auto sentence = pieces_of(first_sentence(post));
  std::size_t from = 0;
  for (std::size_t i = 0; i + 1 < sentence.size(); ++i) {
    if ((sentence[i] == "is" || sentence[i] == "provides" || sentence[i] == "are") &&
        (sentence[i + 1] == "a" || sentence[i + 1] == "an" || sentence[i + 1] == "the")) {
      from = i + 2;
      break;
    }
  }
  const std::string predicate =
      join(std::span(sentence).subspan(from, std::min<std::size_t>(8, sentence.size() - from)));

  std::string near_gold;
  {
    const auto mine = word_set(post);
    double best = -1;
    for (const example& e : pool) {
      if (e.id == target.id || e.label == target.label) continue;
      const double j = jaccard(mine, word_set(post_of(e.prompt)));
      if (j > best) best = j, near_gold = e.label;
    }
  }
  std::string other_gold;
  if (!pool.empty()) other_gold = first_words(pool[seed_for(target, 4) % pool.size()].label, 3);

  return {
      {"first 6 words of the post", first_words(post, 6)},
      {"first sentence", std::string(first_sentence(post))},
      {"last 10 words of the post", last_words(post, 10)},
      {"random 8-word span", span},
      {"first sentence after \"is a\" (8 words)", predicate},
      {"gold + 3 words of another gold", first_words(target.label, 100) + " " + other_gold},
      {"gold + its post's 3 salient words", first_words(target.label, 100) + " " + join(salient)},
      {"gold truncated to half", join(std::span(gold).first(gold.size() / 2))},
      {"gold of the most similar post", near_gold},
      {"title + 2 salient words", title_of(target.prompt) + " " + salient_at(0) + " " + salient_at(1)},
      {"\"library for X Y\"", "library for " + salient_at(0) + " " + salient_at(1)},
      {"\"X Y tool\"", salient_at(0) + " " + salient_at(1) + " tool"},
  };
}

}  // namespace tldr
