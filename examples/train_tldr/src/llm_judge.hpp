#pragma once
// An LLM judge of summaries against the gold one, as in the paper (docs/math.md §9–§10: Mixtral
// judged each arm's summary against the dataset's reference with the prompt of appendix B.3),
// through any OpenAI-compatible chat-completion server the user runs (llama.cpp's llama-server,
// vLLM, ...): POST {url}/v1/chat/completions with {model, messages, temperature 0, max_tokens}.
//
// Unlike the oracle, which labels the preference data (so the reward model learns it), the LLM
// judge is independent of training: it is the paper's check against reward hacking.
//
// - Both orders: each (post, candidate, reference) is judged with the candidate as assistant A and
//   again as assistant B, which cancels the judge's position bias. The two verdicts combine as in
//   FastChat's MT-Bench pairwise judging: a win (score 1) when both orders prefer the candidate, a
//   loss (0) when both prefer the reference, a tie (0.5) otherwise — a tie in either order or two
//   orders that disagree. A judge that always answers [[A]] therefore gives ties only.
// - Strict answers: a reply is a verdict only when exactly one of [[A]], [[B]], [[C]] occurs in it
//   (repeats of the same marker allowed); none, two different ones or variants such as [[a]] are a
//   malformed answer, retried like a server error.
// - Cache: every verdict is appended, as one JSON line written with one write() and fdatasync'ed,
//   to a JSONL file keyed by (model, prompt template hash, post, candidate, reference, order), so a
//   rerun makes no request and a crash loses at most the requests in flight. A corrupt last line
//   (a write cut short) is dropped with a warning; corruption anywhere else is an error.
// - Robustness: connect and read timeouts; timeouts, connection errors, HTTP 429 and 5xx and
//   malformed answers are retried up to `retries` times with exponential backoff; any other HTTP
//   4xx fails at once. Failures throw std::runtime_error naming the URL, the status or error, an
//   excerpt of the body and the pair; what was cached before stays cached.
// - http:// always; https:// when cpp-httplib was built with OpenSSL (Debian's libcpp-httplib-dev
//   is). An API key, when the server wants one, comes from the environment variable
//   BRAIN_JUDGE_API_KEY (sent as "Authorization: Bearer ..."), never from a config file.

#include "config.hpp"

#include <spdlog/logger.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tldr {

class run_context;

/// The paper's summarisation judge prompt (docs/math.md §10, appendix B.3), verbatim, with its
/// slots {{Conversation}} (the post), {{AssistantB}} and {{AssistantA}} (shown B first, as the
/// paper does).
std::string_view tldr_judge_template();
/// The template with the post and the two summaries in their slots (one pass: text inside a
/// summary that looks like a slot is left as it is).
std::string tldr_judge_prompt(std::string_view post, std::string_view assistant_a, std::string_view assistant_b);

/// One order's verdict: assistant A better, B better, or a tie ([[C]]).
enum class judge_verdict { a, b, tie };
/// The verdict of a reply holding exactly one kind of marker among [[A]], [[B]], [[C]]; nullopt
/// otherwise (none, several different ones, or only variants such as "[[a]]" or "[A]").
std::optional<judge_verdict> parse_judge_verdict(std::string_view reply);
char verdict_letter(judge_verdict v);

/// The candidate's score from the two orders: 1 when both prefer it, 0 when both prefer the
/// reference, 0.5 otherwise (a tie in either order, or orders that disagree).
double combine_verdicts(judge_verdict candidate_as_a, judge_verdict candidate_as_b);

/// What is judged: a post, a candidate summary and the reference (gold) one, with a label that
/// names the pair in errors (e.g. "eval/brain-s1 prompt 17").
struct judge_pair {
  std::string post, candidate, reference, label;
};

/// The two verdicts of a pair and the candidate's score (combine_verdicts).
struct judge_result {
  judge_verdict candidate_as_a = judge_verdict::tie, candidate_as_b = judge_verdict::tie;
  double score = 0.5;
};

/// The append-only verdict cache (see the top of this file). Not thread-safe on its own; the
/// judge locks around it.
class judge_cache {
 public:
  struct key {
    std::string model;
    std::uint64_t prompt_template = 0, post = 0, candidate = 0, reference = 0;
    bool candidate_first = true;  ///< the candidate is assistant A
    [[nodiscard]] std::string text() const;
  };
  struct entry {
    judge_verdict verdict = judge_verdict::tie;
    std::string reply;
  };

  /// Loads `file` (creating its directory; a missing file is an empty cache) and opens it for
  /// appending. Throws std::runtime_error on corruption other than in the last line.
  judge_cache(std::filesystem::path file, spdlog::logger* log = nullptr);
  ~judge_cache();
  judge_cache(const judge_cache&) = delete;
  judge_cache& operator=(const judge_cache&) = delete;

  [[nodiscard]] const entry* find(const key& k) const;
  /// Appends the entry to the file (one write, then fdatasync) and to the table.
  void add(const key& k, entry e);
  [[nodiscard]] std::size_t size() const { return entries_.size(); }
  [[nodiscard]] const std::filesystem::path& file() const { return file_; }

 private:
  std::filesystem::path file_;
  std::map<std::string, entry> entries_;
  int fd_ = -1;
};

/// The LLM judge: a client of one server and model, with its cache.
class llm_judge {
 public:
  /// settings: url, model, timeouts, retries, backoff, max_tokens, parallel (judge_config). The
  /// API key is read from BRAIN_JUDGE_API_KEY now. Throws std::invalid_argument on a bad URL.
  llm_judge(judge_config settings, const std::filesystem::path& cache_file, spdlog::logger* log = nullptr);

  /// Both orders of one pair, from the cache or the server.
  judge_result judge(const judge_pair& pair);
  /// Every pair, `parallel` requests at a time; each verdict is cached as soon as it arrives. The
  /// first failure stops the others (after their requests in flight) and is rethrown. on_pair is
  /// called after each pair (one call at a time).
  std::vector<judge_result> judge_all(std::span<const judge_pair> pairs, const std::function<void()>& on_pair = {});

  [[nodiscard]] std::size_t requests() const { return requests_; }         ///< HTTP requests sent
  [[nodiscard]] std::size_t cache_hits() const { return cache_hits_; }     ///< verdicts found in the cache
  [[nodiscard]] const std::string& endpoint() const { return endpoint_; }  ///< the full URL posted to
  [[nodiscard]] const judge_cache& cache() const { return cache_; }

 private:
  judge_verdict verdict_of(const judge_pair& pair, bool candidate_first);
  /// One prompt through the server with retries: the parsed verdict and the reply.
  judge_cache::entry ask(const std::string& prompt, const std::string& what);

  judge_config settings_;
  std::string scheme_host_port_, path_, endpoint_, api_key_;
  judge_cache cache_;
  std::mutex cache_mutex_;
  spdlog::logger* log_;
  std::atomic<std::size_t> requests_{0}, cache_hits_{0};
};

// ---- the evaluation stage's use of it (commands: after the evaluations, when --judge llm) -------

/// eval/llm_judge/<name>.jsonl for each evaluation eval/<name>.jsonl that lacks it (or was judged
/// by another model): per test prompt the two verdicts and the score against the gold summary. The
/// cache is eval/llm_judge/cache.jsonl.
void judge_evaluations(const run_context& ctx, const std::vector<std::string>& names);
/// Per test prompt, the LLM judge's score of evaluation `name` against gold (1 win, 0.5 tie, 0
/// loss). Throws std::runtime_error when the file is missing or from another judge model.
std::vector<double> read_llm_judge(const run_context& ctx, const std::string& name);

}  // namespace tldr
