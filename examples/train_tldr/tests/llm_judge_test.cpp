// The LLM judge (src/llm_judge.hpp) against a stub OpenAI-compatible server that runs in this
// process on 127.0.0.1 (an ephemeral port): the request, both orders, strict verdicts, retries,
// errors, timeouts and the cache. Short timeouts and backoffs keep the file to a few seconds.
#include "llm_judge.hpp"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {
namespace fs = std::filesystem;
using nlohmann::json;

/// What the stub answers: an HTTP status and a body.
struct judge_stub_reply {
  int status = 200;
  std::string body;
};

/// An OpenAI-compatible chat-completion endpoint whose answer to request number k (from 0) is
/// answer(request body, k). Counts and keeps the requests.
class judge_stub {
 public:
  using answer_fn = std::function<judge_stub_reply(const json& request, int number)>;

  explicit judge_stub(answer_fn answer) : answer_(std::move(answer)) {
    server_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      int number = 0;
      json body;
      {
        const std::lock_guard lock(mutex_);
        number = count_++;
        body = json::parse(req.body);
        bodies_.push_back(body);
        authorization_.push_back(req.get_header_value("Authorization"));
      }
      const auto reply = answer_(body, number);
      res.status = reply.status;
      res.set_content(reply.body, "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    if (port_ <= 0) throw std::runtime_error("judge_stub: cannot bind 127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~judge_stub() {
    server_.stop();
    thread_.join();
  }
  judge_stub(const judge_stub&) = delete;
  judge_stub& operator=(const judge_stub&) = delete;

  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  [[nodiscard]] int count() const {
    const std::lock_guard lock(mutex_);
    return count_;
  }
  [[nodiscard]] std::vector<json> bodies() const {
    const std::lock_guard lock(mutex_);
    return bodies_;
  }
  [[nodiscard]] std::vector<std::string> authorization() const {
    const std::lock_guard lock(mutex_);
    return authorization_;
  }

 private:
  answer_fn answer_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  mutable std::mutex mutex_;
  int count_ = 0;
  std::vector<json> bodies_;
  std::vector<std::string> authorization_;
};

/// A chat-completion response whose message is `content`.
judge_stub_reply judge_completion(const std::string& content) {
  return {200, json{{"id", "stub"},
                    {"object", "chat.completion"},
                    {"choices", json::array({json{{"index", 0},
                                                  {"message", {{"role", "assistant"}, {"content", content}}},
                                                  {"finish_reason", "stop"}}})}}
                   .dump()};
}

/// The text of a slot of the paper's prompt ("Assistant A", "Assistant B" or "Reddit Post").
std::string judge_slot(const std::string& prompt, const std::string& title) {
  const auto start = prompt.find("\n" + title + "\n");
  if (start == std::string::npos) return "<missing>";
  const auto from = start + title.size() + 2;
  return prompt.substr(from, prompt.find("\n-----", from) - from);
}

std::string judge_prompt_of(const json& request) {
  return request.at("messages").at(0).at("content").get<std::string>();
}

/// A fair judge: prefers the summary holding "good"; [[C]] when neither or both do.
judge_stub_reply judge_fair(const json& request, int) {
  const auto prompt = judge_prompt_of(request);
  const bool a = judge_slot(prompt, "Assistant A").find("good") != std::string::npos;
  const bool b = judge_slot(prompt, "Assistant B").find("good") != std::string::npos;
  return judge_completion(std::string("The explanation. ") + (a == b ? "[[C]]" : a ? "[[A]]" : "[[B]]"));
}

tldr::judge_config judge_test_settings(const std::string& url) {
  tldr::judge_config s;
  s.kind = tldr::judge_kind::llm;
  s.url = url;
  s.model = "stub-model";
  s.connect_timeout = 1;
  s.timeout = 2;
  s.retries = 2;
  s.backoff = 0.001;
  s.max_tokens = 77;
  s.parallel = 1;
  return s;
}

/// A fresh directory under the system's temporary one, removed at the end of the test.
class judge_temp_dir {
 public:
  judge_temp_dir() {
    static std::atomic<int> counter{0};
    path_ =
        fs::temp_directory_path() / ("llm_judge_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~judge_temp_dir() { fs::remove_all(path_); }
  [[nodiscard]] fs::path cache() const { return path_ / "judge" / "cache.jsonl"; }

 private:
  fs::path path_;
};

std::vector<tldr::judge_pair> judge_test_pairs(int count) {
  std::vector<tldr::judge_pair> pairs;
  for (int i = 0; i < count; ++i)
    pairs.push_back({"post number " + std::to_string(i) + " about a package", "candidate " + std::to_string(i),
                     "reference " + std::to_string(i), "test pair " + std::to_string(i)});
  return pairs;
}

std::string judge_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no std::runtime_error";
  return {};
}

// ---- the prompt, the parser and the combination rule -------------------------------------------

TEST(LlmJudgePrompt, is_the_papers_with_the_texts_in_their_slots) {
  const std::string t(tldr::tldr_judge_template());
  EXPECT_EQ(
      t.rfind("Please act as an impartial judge and evaluate the quality of the tldrs or summaries provided by the\n"
              "two AI assistants to the reddit post displayed below.",
              0),
      0u);
  EXPECT_NE(t.find("\"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is better, and\n\"[[C]]\" for a tie."),
            std::string::npos);
  // B is shown before A, as in the paper.
  EXPECT_LT(t.find("{{Conversation}}"), t.find("{{AssistantB}}"));
  EXPECT_LT(t.find("{{AssistantB}}"), t.find("{{AssistantA}}"));
  const auto p = tldr::tldr_judge_prompt("the post", "summary of A {{AssistantB}}", "summary of B");
  EXPECT_EQ(judge_slot(p, "Reddit Post"), "the post");
  EXPECT_EQ(judge_slot(p, "Assistant A"), "summary of A {{AssistantB}}");  // one pass: not filled again
  EXPECT_EQ(judge_slot(p, "Assistant B"), "summary of B");
  EXPECT_EQ(p.find("{{Conversation}}"), std::string::npos);
}

TEST(LlmJudgeParse, takes_exactly_one_kind_of_marker) {
  using tldr::judge_verdict;
  EXPECT_EQ(tldr::parse_judge_verdict("A is clearer. [[A]]"), judge_verdict::a);
  EXPECT_EQ(tldr::parse_judge_verdict("[[B]]\nFinal verdict: [[B]]"), judge_verdict::b);  // repeats of one
  EXPECT_EQ(tldr::parse_judge_verdict("equally good [[C]]"), judge_verdict::tie);
  for (const char* malformed : {"", "A is better.", "[[A]] ... no, [[B]]", "[[A]][[C]]", "[[a]]", "[[b]]", "[[c]]",
                                "[A]", "[[ A ]]", "**A**", "[[D]]"})
    EXPECT_FALSE(tldr::parse_judge_verdict(malformed).has_value()) << malformed;
}

TEST(LlmJudgeCombine, wins_and_losses_need_both_orders) {
  using V = tldr::judge_verdict;
  // (candidate as A, candidate as B) → score.
  EXPECT_EQ(tldr::combine_verdicts(V::a, V::b), 1.0);  // both prefer the candidate
  EXPECT_EQ(tldr::combine_verdicts(V::b, V::a), 0.0);  // both prefer the reference
  EXPECT_EQ(tldr::combine_verdicts(V::a, V::a), 0.5);  // position bias: always A
  EXPECT_EQ(tldr::combine_verdicts(V::b, V::b), 0.5);  // position bias: always B
  EXPECT_EQ(tldr::combine_verdicts(V::tie, V::tie), 0.5);
  EXPECT_EQ(tldr::combine_verdicts(V::a, V::tie), 0.5);  // a tie in either order is a tie
  EXPECT_EQ(tldr::combine_verdicts(V::tie, V::b), 0.5);
  EXPECT_EQ(tldr::combine_verdicts(V::b, V::tie), 0.5);
  EXPECT_EQ(tldr::combine_verdicts(V::tie, V::a), 0.5);
}

// ---- the client -----------------------------------------------------------------------------------

TEST(LlmJudgeClient, sends_the_papers_prompt_in_both_orders) {
  judge_stub stub([](const json&, int) { return judge_completion("[[C]]"); });
  judge_temp_dir dir;
  ::setenv("BRAIN_JUDGE_API_KEY", "secret-key", 1);
  tldr::llm_judge judge(judge_test_settings(stub.url() + "/v1/"), dir.cache());  // a trailing /v1/ is not doubled
  ::unsetenv("BRAIN_JUDGE_API_KEY");
  EXPECT_EQ(judge.endpoint(), stub.url() + "/v1/chat/completions");
  const tldr::judge_pair pair{"The post's text.", "the candidate", "the gold one", "pair"};
  const auto r = judge.judge(pair);
  EXPECT_EQ(r.score, 0.5);
  ASSERT_EQ(stub.count(), 2);
  const auto bodies = stub.bodies();
  for (const auto& b : bodies) {
    EXPECT_EQ(b.at("model"), "stub-model");
    EXPECT_EQ(b.at("temperature"), 0);
    EXPECT_EQ(b.at("max_tokens"), 77);
    ASSERT_EQ(b.at("messages").size(), 1u);
    EXPECT_EQ(b.at("messages").at(0).at("role"), "user");
  }
  // First the candidate as assistant A, then as assistant B.
  EXPECT_EQ(judge_prompt_of(bodies[0]), tldr::tldr_judge_prompt(pair.post, pair.candidate, pair.reference));
  EXPECT_EQ(judge_prompt_of(bodies[1]), tldr::tldr_judge_prompt(pair.post, pair.reference, pair.candidate));
  EXPECT_EQ(judge_slot(judge_prompt_of(bodies[0]), "Assistant A"), "the candidate");
  EXPECT_EQ(judge_slot(judge_prompt_of(bodies[1]), "Assistant B"), "the candidate");
  EXPECT_EQ(judge_slot(judge_prompt_of(bodies[1]), "Reddit Post"), "The post's text.");
  EXPECT_EQ(stub.authorization(), (std::vector<std::string>{"Bearer secret-key", "Bearer secret-key"}));
}

TEST(LlmJudgeClient, a_fair_judge_gives_wins_ties_and_losses) {
  judge_stub stub(judge_fair);
  judge_temp_dir dir;
  auto settings = judge_test_settings(stub.url());
  settings.parallel = 3;  // several requests at once, results in the pairs' order
  tldr::llm_judge judge(settings, dir.cache());
  const std::vector<tldr::judge_pair> pairs{{"post", "a good summary", "a poor one", "win"},
                                            {"post", "a poor summary", "the good one", "loss"},
                                            {"post", "plain", "plain too", "tie"},
                                            {"post 2", "good", "good as well", "tie 2"}};
  const auto r = judge.judge_all(pairs);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].score, 1.0);
  EXPECT_EQ(r[0].candidate_as_a, tldr::judge_verdict::a);
  EXPECT_EQ(r[0].candidate_as_b, tldr::judge_verdict::b);
  EXPECT_EQ(r[1].score, 0.0);
  EXPECT_EQ(r[2].score, 0.5);
  EXPECT_EQ(r[3].score, 0.5);
  EXPECT_EQ(stub.count(), 8);
}

TEST(LlmJudgeClient, a_position_biased_judge_gives_ties) {
  for (const char* always : {"[[A]]", "[[B]]"}) {
    judge_stub stub([&](const json&, int) { return judge_completion(std::string("Verdict: ") + always); });
    judge_temp_dir dir;
    tldr::llm_judge judge(judge_test_settings(stub.url()), dir.cache());
    for (const auto& r : judge.judge_all(judge_test_pairs(3))) EXPECT_EQ(r.score, 0.5) << always;
  }
}

TEST(LlmJudgeClient, malformed_answers_are_retried) {
  // No verdict, two different ones, lowercase, a body that is not a completion: then a verdict.
  judge_stub stub([](const json&, int n) {
    switch (n) {
      case 0:
        return judge_completion("I cannot decide.");
      case 1:
        return judge_completion("[[A]] or maybe [[B]]");
      case 2:
        return judge_completion("[[a]]");
      case 3:
        return judge_stub_reply{200, "{\"choices\": []}"};
      default:
        return judge_completion("[[B]]");
    }
  });
  judge_temp_dir dir;
  auto settings = judge_test_settings(stub.url());
  settings.retries = 4;
  tldr::llm_judge judge(settings, dir.cache());
  const auto r = judge.judge({"post", "candidate", "reference", "pair"});
  EXPECT_EQ(stub.count(), 6);  // five for the first order, one for the second
  EXPECT_EQ(r.candidate_as_a, tldr::judge_verdict::b);
  EXPECT_EQ(r.candidate_as_b, tldr::judge_verdict::b);
  EXPECT_EQ(r.score, 0.5);
}

TEST(LlmJudgeClient, malformed_answers_fail_after_the_retry_limit) {
  judge_stub stub([](const json&, int) { return judge_completion("Both are fine: [[a]]"); });
  judge_temp_dir dir;
  tldr::llm_judge judge(judge_test_settings(stub.url()), dir.cache());  // 2 retries
  const auto message =
      judge_error_of([&] { judge.judge({"post", "the candidate text", "reference", "eval/x prompt 7"}); });
  EXPECT_EQ(stub.count(), 3);
  EXPECT_NE(message.find(stub.url() + "/v1/chat/completions"), std::string::npos) << message;
  EXPECT_NE(message.find("3 attempt"), std::string::npos) << message;
  EXPECT_NE(message.find("malformed answer"), std::string::npos) << message;
  EXPECT_NE(message.find("[[a]]"), std::string::npos) << message;            // the body's excerpt
  EXPECT_NE(message.find("eval/x prompt 7"), std::string::npos) << message;  // the pair
  EXPECT_NE(message.find("the candidate text"), std::string::npos) << message;
}

TEST(LlmJudgeClient, server_errors_and_rate_limits_are_retried) {
  judge_stub stub([](const json& req, int n) {
    if (n == 0) return judge_stub_reply{500, "internal error"};
    if (n == 1) return judge_stub_reply{503, "loading model"};
    if (n == 2) return judge_stub_reply{429, "slow down"};
    return judge_fair(req, n);
  });
  judge_temp_dir dir;
  auto settings = judge_test_settings(stub.url());
  settings.retries = 3;
  tldr::llm_judge judge(settings, dir.cache());
  EXPECT_EQ(judge.judge({"post", "good", "bad", "pair"}).score, 1.0);
  EXPECT_EQ(stub.count(), 5);
  EXPECT_EQ(judge.requests(), 5u);
}

TEST(LlmJudgeClient, persistent_server_errors_name_the_status_and_body) {
  judge_stub stub([](const json&, int) { return judge_stub_reply{502, "upstream is down"}; });
  judge_temp_dir dir;
  tldr::llm_judge judge(judge_test_settings(stub.url()), dir.cache());
  const auto message = judge_error_of([&] { judge.judge({"post", "candidate", "reference", "the pair"}); });
  EXPECT_EQ(stub.count(), 3);
  EXPECT_NE(message.find("HTTP 502"), std::string::npos) << message;
  EXPECT_NE(message.find("upstream is down"), std::string::npos) << message;
  EXPECT_NE(message.find("the pair"), std::string::npos) << message;
}

TEST(LlmJudgeClient, client_errors_fail_at_once) {
  judge_stub stub(
      [](const json&, int) { return judge_stub_reply{400, "{\"error\": \"model 'stub-model' not found\"}"}; });
  judge_temp_dir dir;
  tldr::llm_judge judge(judge_test_settings(stub.url()), dir.cache());
  const auto message = judge_error_of([&] { judge.judge({"post", "candidate", "reference", "the pair"}); });
  EXPECT_EQ(stub.count(), 1);  // not retried
  EXPECT_NE(message.find("HTTP 400"), std::string::npos) << message;
  EXPECT_NE(message.find("not found"), std::string::npos) << message;
  EXPECT_NE(message.find(stub.url()), std::string::npos) << message;
  EXPECT_NE(message.find("the pair"), std::string::npos) << message;
}

TEST(LlmJudgeClient, a_timeout_is_retried_then_reported) {
  // The first reply comes after the read timeout: the retry gets the answer.
  {
    judge_stub stub([](const json& req, int n) {
      if (n == 0) std::this_thread::sleep_for(std::chrono::milliseconds(700));
      return judge_fair(req, n);
    });
    judge_temp_dir dir;
    auto settings = judge_test_settings(stub.url());
    settings.timeout = 0.1;
    tldr::llm_judge judge(settings, dir.cache());
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(judge.judge({"post", "good", "bad", "pair"}).score, 1.0);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(600));  // did not wait for it
    EXPECT_EQ(stub.count(), 3);
  }
  // Every reply too late: an error after the retries.
  {
    judge_stub stub([](const json& req, int n) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      return judge_fair(req, n);
    });
    judge_temp_dir dir;
    auto settings = judge_test_settings(stub.url());
    settings.timeout = 0.05;
    settings.retries = 1;
    tldr::llm_judge judge(settings, dir.cache());
    const auto message = judge_error_of([&] { judge.judge({"post", "good", "bad", "slow pair"}); });
    EXPECT_NE(message.find("no response"), std::string::npos) << message;
    EXPECT_NE(message.find("2 attempt"), std::string::npos) << message;
    EXPECT_NE(message.find("slow pair"), std::string::npos) << message;
  }
}

TEST(LlmJudgeClient, a_server_that_is_not_there_is_reported) {
  std::string url;
  {
    judge_stub gone([](const json&, int) { return judge_completion("[[C]]"); });
    url = gone.url();
  }  // its port is closed now
  judge_temp_dir dir;
  auto settings = judge_test_settings(url);
  settings.retries = 1;
  tldr::llm_judge judge(settings, dir.cache());
  const auto message = judge_error_of([&] { judge.judge({"post", "candidate", "reference", "pair"}); });
  EXPECT_NE(message.find("no response"), std::string::npos) << message;
  EXPECT_NE(message.find(url), std::string::npos) << message;
}

TEST(LlmJudgeClient, rejects_bad_urls_and_settings) {
  judge_temp_dir dir;
  EXPECT_THROW(tldr::llm_judge(judge_test_settings("127.0.0.1:8080"), dir.cache()), std::invalid_argument);
  EXPECT_THROW(tldr::llm_judge(judge_test_settings("ftp://host"), dir.cache()), std::invalid_argument);
  EXPECT_THROW(tldr::llm_judge(judge_test_settings("http:///v1"), dir.cache()), std::invalid_argument);
  tldr::config c;
  EXPECT_NO_THROW(c.validate());  // the default: the oracle, no server
  c.judge.kind = tldr::judge_kind::llm;
  EXPECT_THROW(c.validate(), std::invalid_argument);  // no url, no model
  c.judge.url = "http://127.0.0.1:8080";
  EXPECT_THROW(c.validate(), std::invalid_argument);  // no model
  c.judge.model = "mixtral";
  EXPECT_NO_THROW(c.validate());
  c.judge.retries = -1;
  EXPECT_THROW(c.validate(), std::invalid_argument);
}

// ---- the cache ------------------------------------------------------------------------------------

TEST(LlmJudgeCache, a_rerun_makes_no_request) {
  judge_stub stub(judge_fair);
  judge_temp_dir dir;
  auto pairs = judge_test_pairs(3);
  pairs[0].candidate = "good";
  std::vector<tldr::judge_result> first;
  {
    tldr::llm_judge judge(judge_test_settings(stub.url()), dir.cache());
    first = judge.judge_all(pairs);
    EXPECT_EQ(judge.requests(), 6u);
    EXPECT_EQ(judge.cache().size(), 6u);
  }
  ASSERT_EQ(stub.count(), 6);
  {
    tldr::llm_judge again(judge_test_settings(stub.url()), dir.cache());
    const auto second = again.judge_all(pairs);
    EXPECT_EQ(stub.count(), 6);  // no request
    EXPECT_EQ(again.cache_hits(), 6u);
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      EXPECT_EQ(second[i].score, first[i].score);
      EXPECT_EQ(second[i].candidate_as_a, first[i].candidate_as_a);
    }
    EXPECT_EQ(second[0].score, 1.0);
  }
  {
    // Another candidate for the same post and reference, or another model, is a new question.
    auto other = judge_test_settings(stub.url());
    other.model = "another-model";
    tldr::llm_judge judge(other, dir.cache());
    (void)judge.judge(pairs[1]);
    EXPECT_EQ(stub.count(), 8);
    tldr::llm_judge same(judge_test_settings(stub.url()), dir.cache());
    (void)same.judge({pairs[1].post, "a new candidate", pairs[1].reference, "new"});
    EXPECT_EQ(stub.count(), 10);
  }
}

TEST(LlmJudgeCache, what_was_judged_before_a_failure_is_kept) {
  judge_temp_dir dir;
  const auto pairs = judge_test_pairs(5);
  {
    // The fifth request (the third pair's first order) fails with a client error.
    judge_stub failing([](const json& req, int n) {
      if (n == 4) return judge_stub_reply{401, "unauthorised"};
      return judge_fair(req, n);
    });
    tldr::llm_judge judge(judge_test_settings(failing.url()), dir.cache());
    EXPECT_THROW(judge.judge_all(pairs), std::runtime_error);
    EXPECT_EQ(failing.count(), 5);
  }
  judge_stub healthy(judge_fair);
  tldr::llm_judge judge(judge_test_settings(healthy.url()), dir.cache());
  EXPECT_EQ(judge.cache().size(), 4u);
  const auto r = judge.judge_all(pairs);
  EXPECT_EQ(r.size(), 5u);
  EXPECT_EQ(healthy.count(), 6);  // only the three pairs not yet judged
  EXPECT_EQ(judge.cache_hits(), 4u);
}

TEST(LlmJudgeCache, a_truncated_last_line_is_dropped_with_a_warning) {
  judge_stub stub(judge_fair);
  judge_temp_dir dir;
  const auto pairs = judge_test_pairs(2);
  {
    (void)tldr::llm_judge(judge_test_settings(stub.url()), dir.cache()).judge_all(pairs);
  }
  ASSERT_EQ(stub.count(), 4);
  {
    std::ofstream out(dir.cache(), std::ios::app);
    out << R"({"model":"stub-model","template":"0123)";  // a write cut short
  }
  std::ostringstream log_text;
  spdlog::logger log("judge-test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_text));
  {
    tldr::llm_judge judge(judge_test_settings(stub.url()), dir.cache(), &log);
    log.flush();
    EXPECT_NE(log_text.str().find("dropping a corrupt last line"), std::string::npos) << log_text.str();
    EXPECT_EQ(judge.cache().size(), 4u);
    (void)judge.judge_all(judge_test_pairs(3));  // appends after the repaired end
    EXPECT_EQ(stub.count(), 6);
  }
  tldr::llm_judge reloaded(judge_test_settings(stub.url()), dir.cache());
  EXPECT_EQ(reloaded.cache().size(), 6u);
  (void)reloaded.judge_all(judge_test_pairs(3));
  EXPECT_EQ(stub.count(), 6);
}

TEST(LlmJudgeCache, corruption_before_the_last_line_is_an_error) {
  judge_stub stub(judge_fair);
  judge_temp_dir dir;
  {
    (void)tldr::llm_judge(judge_test_settings(stub.url()), dir.cache()).judge_all(judge_test_pairs(2));
  }
  std::string text;
  {
    std::ifstream in(dir.cache());
    std::ostringstream s;
    s << in.rdbuf();
    text = s.str();
  }
  const auto second_line = text.find('\n') + 1;
  text.insert(second_line, "not json\n");
  {
    std::ofstream out(dir.cache(), std::ios::trunc);
    out << text;
  }
  const auto message = judge_error_of([&] { tldr::llm_judge judge(judge_test_settings(stub.url()), dir.cache()); });
  EXPECT_NE(message.find(dir.cache().string() + ":2"), std::string::npos) << message;
  EXPECT_NE(message.find("corrupt"), std::string::npos) << message;
}

}  // namespace
