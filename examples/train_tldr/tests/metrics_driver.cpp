// The C++ side of the ctest tldr_metrics_reference, and a throughput benchmark.
//
//   metrics_driver              reads lines "CANDIDATE<TAB>REFERENCE", each hex-encoded bytes
//                               (so that any byte, newlines and invalid UTF-8 included, can be
//                               sent), and writes "ROUGE-L-F1 CHRF CHRF-EPS" for each, %.17g
//   metrics_driver --bench [N]  scores N (default 200000) pairs of 10-word sentences (English;
//                               Russian) and prints pairs per second for each metric on one
//                               thread, by CPU time and by wall time
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "metrics.hpp"

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool unhex(std::string_view hex, std::string& out) {
  out.clear();
  if (hex.size() % 2 != 0) return false;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
  }
  return true;
}

int score_stdin() {
  std::string line, candidate, reference;
  for (std::size_t number = 1; std::getline(std::cin, line); ++number) {
    const std::size_t tab = line.find('\t');
    if (tab == std::string::npos || !unhex(std::string_view(line).substr(0, tab), candidate) ||
        !unhex(std::string_view(line).substr(tab + 1), reference)) {
      std::fprintf(stderr, "metrics_driver: line %zu is not HEX<TAB>HEX\n", number);
      return 1;
    }
    std::printf("%.17g %.17g %.17g\n", tldr::rouge_l_f1(candidate, reference), tldr::chrf(candidate, reference),
                tldr::chrf(candidate, reference, tldr::chrf_smoothing::epsilon));
  }
  return 0;
}

// Pairs of 10-word sentences drawn from words (1000 distinct pairs, cycled).
void bench(const char* title, std::span<const char* const> words, std::size_t pairs) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::size_t> pick(0, words.size() - 1);
  auto sentence = [&] {
    std::string s;
    for (int k = 0; k < 10; ++k) (s += k ? " " : "") += words[pick(rng)];
    return s;
  };
  const std::size_t distinct = 1000;
  std::vector<std::string> cands, refs;
  for (std::size_t i = 0; i < distinct; ++i) {
    cands.push_back(sentence());
    refs.push_back(sentence());
  }
  auto time = [&](const char* name, auto metric) {
    double sink = 0;
    const std::clock_t cpu_start = std::clock();
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < pairs; ++i) sink += metric(cands[i % distinct], refs[i % distinct]);
    const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
    const double cpu = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    std::printf(
        "%-9s %-18s %8.0f pairs/s of CPU time (%.2f us a pair), %8.0f of wall time "
        "(checksum %.6g)\n",
        title, name, pairs / cpu, 1e6 * cpu / pairs, pairs / wall.count(), sink);
  };
  time("rouge_l_f1", [](const std::string& c, const std::string& r) { return tldr::rouge_l_f1(c, r); });
  time("chrf", [](const std::string& c, const std::string& r) { return tldr::chrf(c, r); });
  time("both", [](const std::string& c, const std::string& r) { return tldr::rouge_l_f1(c, r) + tldr::chrf(c, r); });
}

int bench(std::size_t pairs) {
  static const char* const english[] = {"the",     "program", "parses", "json",   "files",  "and",     "prints",
                                        "a",       "summary", "of",     "each",   "record", "library", "for",
                                        "gtk",     "tools",   "to",     "manage", "disk",   "images",  "with",
                                        "support", "python",  "module", "fast",   "simple", "server"};
  // Characters above U+03FF take chrF's 128-bit path.
  static const char* const russian[] = {"программа",  "читает", "файлы",  "и",       "печатает", "сводку",
                                        "для",        "каждой", "записи", "быстрый", "сервер",   "с",
                                        "поддержкой", "модуль", "диск",   "образы"};
  bench("english", english, pairs);
  bench("russian", russian, pairs);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "--bench") {
    return bench(argc >= 3 ? std::strtoull(argv[2], nullptr, 10) : 200000);
  }
  if (argc != 1) {
    std::fprintf(stderr, "usage: metrics_driver [--bench [N]] (pairs as HEX<TAB>HEX on stdin)\n");
    return 2;
  }
  return score_stdin();
}
