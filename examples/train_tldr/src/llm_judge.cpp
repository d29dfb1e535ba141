// The LLM judge (llm_judge.hpp): the paper's prompt, strict verdicts, both orders, a crash-safe
// cache and an OpenAI-compatible client with timeouts and retries.
//
// This file is compiled in a unity batch with other sources: its private names start with judge_.

#include "llm_judge.hpp"

#include "checkpoint.hpp"
#include "context.hpp"
#include "hashing.hpp"
#include "progress.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/fmt/fmt.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <tuple>

namespace tldr {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// docs/math.md §10, verbatim (its line breaks included); the slots are filled in one pass.
constexpr std::string_view judge_prompt_text =
    "Please act as an impartial judge and evaluate the quality of the tldrs or summaries provided by the\n"
    "two AI assistants to the reddit post displayed below. Begin your evaluation by comparing both\n"
    "assistants' summaries with the reddit post so far. Do not allow the length of the summaries to\n"
    "influence your evaluation. After providing your explanation, output your final verdict by strictly\n"
    "following this format: \"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is better, and\n"
    "\"[[C]]\" for a tie.\n"
    "--------------------------------------------------\n"
    "Reddit Post\n"
    "{{Conversation}}\n"
    "--------------------------------------------------\n"
    "Assistant B\n"
    "{{AssistantB}}\n"
    "--------------------------------------------------\n"
    "Assistant A\n"
    "{{AssistantA}}\n"
    "--------------------------------------------------";

std::string judge_hex(std::uint64_t h) { return fmt::format("{:016x}", h); }

std::uint64_t judge_parse_hex(const json& j, const char* field) {
  const auto s = j.at(field).get<std::string>();
  if (s.size() != 16 || s.find_first_not_of("0123456789abcdef") != std::string::npos)
    throw std::invalid_argument(std::string("field ") + field + " is not 16 hex digits");
  return std::stoull(s, nullptr, 16);
}

/// At most `limit` bytes of s, on one line, for error messages.
std::string judge_excerpt(std::string_view s, std::size_t limit = 300) {
  std::string out(s.substr(0, limit));
  std::replace(out.begin(), out.end(), '\n', ' ');
  if (s.size() > limit) out += "...";
  return out;
}

judge_verdict judge_verdict_of_letter(const std::string& s) {
  if (s == "A") return judge_verdict::a;
  if (s == "B") return judge_verdict::b;
  if (s == "C") return judge_verdict::tie;
  throw std::invalid_argument("verdict '" + s + "' is not A, B or C");
}

/// +1: this order prefers the candidate, -1: the reference, 0: a tie.
int judge_preference(judge_verdict v, bool candidate_is_a) {
  if (v == judge_verdict::tie) return 0;
  return (v == judge_verdict::a) == candidate_is_a ? 1 : -1;
}

/// scheme://host[:port] and the path to post to, from a URL with an optional base path (a
/// trailing /v1 or /v1/chat/completions is accepted and not doubled).
std::pair<std::string, std::string> judge_split_url(const std::string& url) {
  const auto scheme_end = url.find("://");
  const auto scheme = scheme_end == std::string::npos ? std::string() : url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https")
    throw std::invalid_argument("judge-url '" + url + "' must start with http:// or https://");
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
  if (scheme == "https")
    throw std::invalid_argument("judge-url '" + url + "': this build's cpp-httplib has no OpenSSL, so http:// only");
#endif
  const auto rest = url.substr(scheme_end + 3);
  const auto slash = rest.find('/');
  const auto host = rest.substr(0, slash);
  if (host.empty()) throw std::invalid_argument("judge-url '" + url + "' has no host");
  std::string base = slash == std::string::npos ? std::string() : rest.substr(slash);
  while (!base.empty() && base.back() == '/') base.pop_back();
  for (const std::string_view suffix : {"/v1/chat/completions", "/v1"})
    if (base.size() >= suffix.size() && base.compare(base.size() - suffix.size(), suffix.size(), suffix) == 0) {
      base.resize(base.size() - suffix.size());
      break;
    }
  return {scheme + "://" + host, base + "/v1/chat/completions"};
}

std::chrono::microseconds judge_micros(double seconds) {
  return std::chrono::microseconds(std::int64_t(std::llround(seconds * 1e6)));
}

}  // namespace

std::string_view tldr_judge_template() { return judge_prompt_text; }

std::string tldr_judge_prompt(std::string_view post, std::string_view assistant_a, std::string_view assistant_b) {
  const std::pair<std::string_view, std::string_view> slots[] = {
      {"{{Conversation}}", post}, {"{{AssistantA}}", assistant_a}, {"{{AssistantB}}", assistant_b}};
  const auto t = tldr_judge_template();
  std::string out;
  out.reserve(t.size() + post.size() + assistant_a.size() + assistant_b.size());
  std::size_t i = 0;
  while (i < t.size()) {
    bool filled = false;
    for (const auto& [slot, text] : slots)
      if (t.substr(i, slot.size()) == slot) {
        out += text;
        i += slot.size();
        filled = true;
        break;
      }
    if (!filled) out += t[i++];
  }
  return out;
}

std::optional<judge_verdict> parse_judge_verdict(std::string_view reply) {
  std::optional<judge_verdict> found;
  const std::pair<std::string_view, judge_verdict> markers[] = {
      {"[[A]]", judge_verdict::a}, {"[[B]]", judge_verdict::b}, {"[[C]]", judge_verdict::tie}};
  for (const auto& [marker, v] : markers)
    if (reply.find(marker) != std::string_view::npos) {
      if (found) return std::nullopt;  // two different verdicts
      found = v;
    }
  return found;
}

char verdict_letter(judge_verdict v) { return v == judge_verdict::a ? 'A' : v == judge_verdict::b ? 'B' : 'C'; }

double combine_verdicts(judge_verdict candidate_as_a, judge_verdict candidate_as_b) {
  const int first = judge_preference(candidate_as_a, true), second = judge_preference(candidate_as_b, false);
  if (first == 1 && second == 1) return 1.0;
  if (first == -1 && second == -1) return 0.0;
  return 0.5;
}

// ---- the cache ------------------------------------------------------------------------------------

std::string judge_cache::key::text() const {
  return model + '\n' + judge_hex(prompt_template) + judge_hex(post) + judge_hex(candidate) + judge_hex(reference) +
         (candidate_first ? "a" : "b");
}

judge_cache::judge_cache(fs::path file, spdlog::logger* log) : file_(std::move(file)) {
  if (file_.has_parent_path()) fs::create_directories(file_.parent_path());
  std::string content;
  if (fs::exists(file_)) {
    std::ifstream in(file_, std::ios::binary);
    if (!in) throw std::runtime_error("LLM judge cache: cannot read " + file_.string());
    std::ostringstream buffer;
    buffer << in.rdbuf();
    content = buffer.str();
  }
  std::size_t pos = 0;
  for (std::size_t number = 1; pos < content.size(); ++number) {
    const auto newline = content.find('\n', pos);
    const auto end = newline == std::string::npos ? content.size() : newline;
    const std::string_view line(content.data() + pos, end - pos);
    const auto next = newline == std::string::npos ? content.size() : newline + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) {
      pos = next;
      continue;
    }
    try {
      const auto j = json::parse(line);
      key k{j.at("model").get<std::string>(), judge_parse_hex(j, "template"),  judge_parse_hex(j, "post"),
            judge_parse_hex(j, "candidate"),  judge_parse_hex(j, "reference"), false};
      const auto order = j.at("order").get<std::string>();
      if (order != "candidate_a" && order != "candidate_b")
        throw std::invalid_argument("order '" + order + "' is not candidate_a or candidate_b");
      k.candidate_first = order == "candidate_a";
      entries_[k.text()] = {judge_verdict_of_letter(j.at("verdict").get<std::string>()),
                            j.at("reply").get<std::string>()};
    } catch (const std::exception& e) {
      const bool last = content.find_first_not_of(" \t\r\n", next) == std::string::npos;
      if (!last)
        throw std::runtime_error(fmt::format(
            "LLM judge cache {}:{}: corrupt entry ({}); only a cut-short last line is dropped automatically: delete "
            "the line (or the file, which costs its requests again)",
            file_.string(), number, e.what()));
      if (log)
        log->warn("LLM judge cache {}:{}: dropping a corrupt last line (a write cut short?): {}", file_.string(),
                  number, e.what());
      fs::resize_file(file_, pos);
      content.resize(pos);
      break;
    }
    pos = next;
  }
  fd_ = ::open(file_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("LLM judge cache: cannot open " + file_.string() + ": " + std::strerror(errno));
  if (!content.empty() && content.back() != '\n') {  // a complete last entry without its newline
    if (::write(fd_, "\n", 1) != 1) {
      ::close(fd_);
      throw std::runtime_error("LLM judge cache: cannot write " + file_.string() + ": " + std::strerror(errno));
    }
  }
}

judge_cache::~judge_cache() {
  if (fd_ >= 0) ::close(fd_);
}

const judge_cache::entry* judge_cache::find(const key& k) const {
  const auto it = entries_.find(k.text());
  return it == entries_.end() ? nullptr : &it->second;
}

void judge_cache::add(const key& k, entry e) {
  const json j{{"model", k.model},
               {"template", judge_hex(k.prompt_template)},
               {"post", judge_hex(k.post)},
               {"candidate", judge_hex(k.candidate)},
               {"reference", judge_hex(k.reference)},
               {"order", k.candidate_first ? "candidate_a" : "candidate_b"},
               {"verdict", std::string(1, verdict_letter(e.verdict))},
               {"reply", e.reply}};
  const auto line = j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  // One write() of the whole line (O_APPEND), then to disk: a crash leaves whole lines, or a cut
  // last one that the next load drops.
  std::size_t done = 0;
  while (done < line.size()) {
    const auto n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw std::runtime_error("LLM judge cache: cannot write " + file_.string() + ": " + std::strerror(errno));
    done += std::size_t(n);
  }
  if (::fdatasync(fd_) != 0)
    throw std::runtime_error("LLM judge cache: cannot sync " + file_.string() + ": " + std::strerror(errno));
  entries_[k.text()] = std::move(e);
}

// ---- the client -----------------------------------------------------------------------------------

llm_judge::llm_judge(judge_config settings, const fs::path& cache_file, spdlog::logger* log)
    : settings_(std::move(settings)), cache_(cache_file, log), log_(log) {
  if (settings_.url.empty() || settings_.model.empty())
    throw std::invalid_argument("LLM judge: needs a server URL (judge-url) and a model name (judge-model)");
  std::tie(scheme_host_port_, path_) = judge_split_url(settings_.url);
  endpoint_ = scheme_host_port_ + path_;
  if (const char* key = std::getenv("BRAIN_JUDGE_API_KEY")) api_key_ = key;
}

judge_cache::entry llm_judge::ask(const std::string& prompt, const std::string& what) {
  const json request{{"model", settings_.model},
                     {"messages", json::array({json{{"role", "user"}, {"content", prompt}}})},
                     {"temperature", 0},
                     {"max_tokens", settings_.max_tokens},
                     {"stream", false}};
  const auto body = request.dump(-1, ' ', false, json::error_handler_t::replace);
  httplib::Headers headers;
  if (!api_key_.empty()) headers.emplace("Authorization", "Bearer " + api_key_);
  const auto attempts = settings_.retries + 1;
  for (std::int64_t attempt = 1;; ++attempt) {
    double wait = std::min(60.0, settings_.backoff * std::pow(2.0, double(attempt - 1)));
    std::string problem;
    {
      httplib::Client client(scheme_host_port_);  // a fresh connection per attempt: none left half-read
      client.set_connection_timeout(judge_micros(settings_.connect_timeout));
      client.set_read_timeout(judge_micros(settings_.timeout));
      client.set_write_timeout(judge_micros(settings_.timeout));
      ++requests_;
      const auto res = client.Post(path_, headers, body, "application/json");
      if (!res) {
        problem = "no response (" + httplib::to_string(res.error()) + ")";
      } else if (res->status == 429 || res->status >= 500) {
        problem = fmt::format("HTTP {}: {}", res->status, judge_excerpt(res->body));
        const auto after = res->get_header_value("Retry-After");
        if (!after.empty() && after.find_first_not_of("0123456789") == std::string::npos && after.size() < 6)
          wait = std::max(wait, std::min(60.0, std::stod(after)));
      } else if (res->status < 200 || res->status >= 300) {
        throw std::runtime_error(fmt::format("LLM judge: {} answered HTTP {} (not retried): {} — judging {}", endpoint_,
                                             res->status, judge_excerpt(res->body), what));
      } else {
        std::string content;
        try {
          content = json::parse(res->body).at("choices").at(0).at("message").at("content").get<std::string>();
        } catch (const std::exception& e) {
          problem = fmt::format("malformed response ({}): {}", e.what(), judge_excerpt(res->body));
        }
        if (problem.empty()) {
          if (const auto v = parse_judge_verdict(content)) return {*v, content};
          problem = "malformed answer (not exactly one of [[A]], [[B]], [[C]]): " + judge_excerpt(content);
        }
      }
    }
    if (attempt >= attempts)
      throw std::runtime_error(fmt::format("LLM judge: no verdict from {} after {} attempt(s), judging {}; last: {}",
                                           endpoint_, attempts, what, problem));
    if (log_)
      log_->warn("LLM judge: {} from {} judging {}; retry {}/{} in {:.1f} s", problem, endpoint_, what, attempt,
                 settings_.retries, wait);
    std::this_thread::sleep_for(judge_micros(wait));
  }
}

judge_verdict llm_judge::verdict_of(const judge_pair& pair, bool candidate_first) {
  static const auto template_hash = fnv1a64(tldr_judge_template());
  const judge_cache::key k{settings_.model,         template_hash,           fnv1a64(pair.post),
                           fnv1a64(pair.candidate), fnv1a64(pair.reference), candidate_first};
  {
    const std::lock_guard lock(cache_mutex_);
    if (const auto* e = cache_.find(k)) {
      ++cache_hits_;
      return e->verdict;
    }
  }
  const auto prompt = candidate_first ? tldr_judge_prompt(pair.post, pair.candidate, pair.reference)
                                      : tldr_judge_prompt(pair.post, pair.reference, pair.candidate);
  const auto what = fmt::format("{} (candidate as assistant {}; candidate: \"{}\")", pair.label,
                                candidate_first ? 'A' : 'B', judge_excerpt(pair.candidate, 80));
  auto e = ask(prompt, what);
  const auto v = e.verdict;
  const std::lock_guard lock(cache_mutex_);
  cache_.add(k, std::move(e));
  return v;
}

judge_result llm_judge::judge(const judge_pair& pair) {
  judge_result r;
  r.candidate_as_a = verdict_of(pair, true);
  r.candidate_as_b = verdict_of(pair, false);
  r.score = combine_verdicts(r.candidate_as_a, r.candidate_as_b);
  return r;
}

std::vector<judge_result> llm_judge::judge_all(std::span<const judge_pair> pairs,
                                               const std::function<void()>& on_pair) {
  std::vector<judge_result> out(pairs.size());
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  std::exception_ptr error;
  std::mutex mutex;  // error and on_pair
  const auto work = [&] {
    while (!stop) {
      const auto i = next++;
      if (i >= pairs.size()) return;
      try {
        out[i] = judge(pairs[i]);
        if (on_pair) {
          const std::lock_guard lock(mutex);
          on_pair();
        }
      } catch (...) {
        const std::lock_guard lock(mutex);
        if (!error) error = std::current_exception();
        stop = true;
      }
    }
  };
  const auto threads = std::min<std::size_t>(std::size_t(std::max<std::int64_t>(1, settings_.parallel)), pairs.size());
  if (threads <= 1) {
    work();
  } else {
    std::vector<std::jthread> pool;
    for (std::size_t t = 0; t < threads; ++t) pool.emplace_back(work);
  }  // joined here
  if (error) std::rethrow_exception(error);
  return out;
}

// ---- the evaluation stage -------------------------------------------------------------------------

namespace {

fs::path judge_file_of(const run_context& ctx, const std::string& name) {
  return ctx.path("eval/llm_judge/" + name + ".jsonl");
}

/// Whether eval/llm_judge/<name>.jsonl exists and holds this model's verdicts with this prompt.
bool judge_file_current(const run_context& ctx, const fs::path& file) {
  if (!fs::exists(file)) return false;
  std::ifstream in(file);
  std::string line;
  if (!std::getline(in, line)) return false;
  try {
    const auto j = json::parse(line);
    return j.at("model").get<std::string>() == ctx.settings().judge.model &&
           j.at("template").get<std::string>() == judge_hex(fnv1a64(tldr_judge_template()));
  } catch (const json::exception&) {
    return false;
  }
}

}  // namespace

void judge_evaluations(const run_context& ctx, const std::vector<std::string>& names) {
  const auto& settings = ctx.settings().judge;
  std::optional<llm_judge> judge;  // made (and its cache read) only when something is left to judge
  for (const auto& name : names) {
    const auto out_file = judge_file_of(ctx, name);
    if (judge_file_current(ctx, out_file)) continue;
    if (!judge) {
      judge.emplace(settings, ctx.path("eval/llm_judge/cache.jsonl"), &ctx.log());
      ctx.log().info("LLM judge: {} at {}, {} cached verdict(s) in {}", settings.model, judge->endpoint(),
                     judge->cache().size(), judge->cache().file().string());
    }
    const auto eval_file = ctx.path("eval/" + name + ".jsonl");
    std::ifstream in(eval_file);
    if (!in) throw std::runtime_error("LLM judge: cannot read " + eval_file.string());
    std::vector<judge_pair> pairs;
    std::vector<std::string> ids;
    std::string line;
    for (std::size_t i = 0; std::getline(in, line); ++i) {
      const auto j = json::parse(line);
      if (i >= ctx.test().size() || j.at("id").get<std::string>() != ctx.test()[i].id)
        throw std::runtime_error(
            fmt::format("LLM judge: {}:{} is not test prompt {} of this work directory", eval_file.string(), i + 1, i));
      const auto& e = ctx.test()[i];
      ids.push_back(e.id);
      pairs.push_back(
          {e.post, j.at("summary").get<std::string>(), e.gold_text, fmt::format("eval/{} prompt {}", name, e.id)});
    }
    const auto requests_before = judge->requests();
    const auto hits_before = judge->cache_hits();
    std::vector<judge_result> results;
    {
      progress bar("llm-judge/" + name, std::int64_t(pairs.size()), "pairs");
      results = judge->judge_all(pairs, [&] { bar.advance(); });
      bar.finish();
    }
    std::string text;
    double total = 0;
    const auto template_hex = judge_hex(fnv1a64(tldr_judge_template()));
    for (std::size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      total += r.score;
      text += json{{"id", ids[i]},
                   {"model", settings.model},
                   {"template", template_hex},
                   {"candidate_a", std::string(1, verdict_letter(r.candidate_as_a))},
                   {"candidate_b", std::string(1, verdict_letter(r.candidate_as_b))},
                   {"score", r.score}}
                  .dump() +
              "\n";
    }
    atomic_write_text(out_file, text);
    ctx.log().info("LLM judge: {}: win rate against gold {:.1f}% over {} prompts ({} request(s), {} cached verdict(s))",
                   name, results.empty() ? 0.0 : 100 * total / double(results.size()), results.size(),
                   judge->requests() - requests_before, judge->cache_hits() - hits_before);
  }
}

std::vector<double> read_llm_judge(const run_context& ctx, const std::string& name) {
  const auto file = judge_file_of(ctx, name);
  std::ifstream in(file);
  if (!in)
    throw std::runtime_error("LLM judge: no verdicts in " + file.string() + " (the evaluation stage makes them)");
  std::vector<double> scores;
  std::string line;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    try {
      const auto j = json::parse(line);
      if (j.at("model").get<std::string>() != ctx.settings().judge.model)
        throw std::runtime_error("judged by " + j.at("model").get<std::string>() + ", not judge-model " +
                                 ctx.settings().judge.model);
      scores.push_back(j.at("score").get<double>());
    } catch (const std::exception& e) {
      throw std::runtime_error(file.string() + ":" + std::to_string(number) + ": " + e.what());
    }
  }
  return scores;
}

}  // namespace tldr
