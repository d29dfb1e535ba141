// Tests of the KV-cache sampler and teacher-forced scoring, on a tiny random model, plus a
// throughput report for the pipeline's model size.
#include "sampler.hpp"
#include "tiny_model.hpp"

#include <brain/backends/torch/log_probs.hpp>

#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <stdexcept>
#include <vector>

namespace {

using seqs = std::vector<std::vector<std::int64_t>>;

using tldr::testing::tiny_config;
using tldr::testing::tiny_model;

const seqs prompts = {{5, 9, 3}, {7, 1, 2, 8, 4, 4, 11}, {13, 6, 20, 40, 2}};

tldr::sampling_options options_with(double temperature, std::int64_t top_k = 0, double top_p = 1.0) {
  tldr::sampling_options o;
  o.samples_per_prompt = 4;
  o.max_new_tokens = 8;
  o.temperature = temperature;
  o.top_k = top_k;
  o.top_p = top_p;
  o.eos_id = 49;
  o.pad_id = 0;
  return o;
}

// Next-token logits after `tokens` by a full forward of the unpadded sequence.
torch::Tensor next_logits(tldr::Gpt& model, const std::vector<std::int64_t>& tokens) {
  const auto ids = torch::tensor(tokens, torch::kLong).view({1, -1});
  return model->forward(ids, torch::ones_like(ids, torch::kBool))[0][-1];
}

std::vector<std::int64_t> greedy_by_full_forward(tldr::Gpt& model, std::vector<std::int64_t> tokens,
                                                 const tldr::sampling_options& o) {
  torch::NoGradGuard no_grad;
  std::vector<std::int64_t> response;
  for (std::int64_t s = 0; s < o.max_new_tokens; ++s) {
    const auto next = next_logits(model, tokens).argmax().item<std::int64_t>();
    response.push_back(next);
    tokens.push_back(next);
    if (next == o.eos_id) break;
  }
  return response;
}

seqs repeat_prompts(const seqs& p, std::int64_t n) {
  seqs out;
  for (const auto& x : p)
    for (std::int64_t i = 0; i < n; ++i) out.push_back(x);
  return out;
}

TEST(sampler, greedy_with_cache_matches_repeated_full_forwards) {
  auto model = tiny_model();
  auto o = options_with(0.0);
  o.max_new_tokens = 10;
  // Make eos the second greedy token of prompt 1, so that one row stops early.
  o.eos_id = greedy_by_full_forward(model, prompts[1], o)[1];
  const auto out = tldr::sample(model, prompts, o, 7);
  ASSERT_EQ(out.responses.size(), 12u);
  for (std::size_t p = 0; p < prompts.size(); ++p) {
    const auto expected = greedy_by_full_forward(model, prompts[p], o);
    for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(out.responses[p * 4 + i], expected) << "prompt " << p;
  }
  EXPECT_EQ(out.responses[4].back(), o.eos_id);
  EXPECT_LE(out.responses[4].size(), 2u);
  EXPECT_EQ(out.log_proposal.abs().max().item<double>(), 0.0);
  // Chunks of 2 prompts (rows bounded by 8) give the same result.
  o.max_batch_rows = 8;
  EXPECT_EQ(tldr::sample(model, prompts, o, 7).responses, out.responses);

  // Most rows end at once (eos = prompt 0's first greedy token), so the decoding batch shrinks
  // to the remaining rows; those must continue unchanged.
  o.max_batch_rows = 512;
  o.samples_per_prompt = 1;
  o.eos_id = greedy_by_full_forward(model, prompts[0], o)[0];
  const seqs mostly_done = {prompts[0], prompts[1], prompts[0], prompts[0], prompts[2], prompts[0]};
  const auto shrunk = tldr::sample(model, mostly_done, o, 7);
  for (std::size_t i = 0; i < mostly_done.size(); ++i)
    EXPECT_EQ(shrunk.responses[i], greedy_by_full_forward(model, mostly_done[i], o)) << "row " << i;
  torch::NoGradGuard no_grad;
  const auto forced = tldr::sequence_log_prob(model, mostly_done, shrunk.responses, 0);
  EXPECT_LT((forced - shrunk.log_model).abs().max().item<double>(), 1e-4);
}

TEST(sampler, log_model_matches_teacher_forcing) {
  auto model = tiny_model();
  for (const auto& o : {options_with(1.0), options_with(0.7, 10, 0.9)}) {
    const auto out = tldr::sample(model, prompts, o, 11);
    torch::NoGradGuard no_grad;
    const auto forced = tldr::sequence_log_prob(model, repeat_prompts(prompts, 4), out.responses, 0);
    EXPECT_LT((forced - out.log_model).abs().max().item<double>(), 1e-4);
    EXPECT_TRUE((out.log_proposal >= out.log_model - 1e-4).all().item<bool>())
        << "sharpening and truncation can only raise the sampled tokens' probability here";
  }
}

TEST(sampler, sequence_log_prob_is_the_plain_sum_and_differentiable) {
  auto model = tiny_model();
  const seqs responses = {{1, 2}, {}, {49, 3, 3}};
  const auto lp = tldr::sequence_log_prob(model, prompts, responses, 0, 2);
  ASSERT_EQ(lp.sizes(), (torch::IntArrayRef{3}));
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    torch::NoGradGuard no_grad;
    double expected = 0;
    auto tokens = prompts[i];
    for (const auto y : responses[i]) {
      expected += torch::log_softmax(next_logits(model, tokens), -1)[y].item<double>();
      tokens.push_back(y);
    }
    EXPECT_NEAR(lp[static_cast<std::int64_t>(i)].item<double>(), expected, 1e-4) << "row " << i;
  }
  lp.sum().backward();
  EXPECT_GT(model->head_weight().grad().abs().sum().item<double>(), 0.0);
  EXPECT_THROW(tldr::sequence_log_prob(model, {{}}, {{1}}, 0), std::invalid_argument);
  EXPECT_THROW(tldr::sequence_log_prob(model, {std::vector<std::int64_t>(30, 1)}, {{1, 2, 3}}, 0),
               std::invalid_argument);
}

TEST(sampler, unfiltered_sampling_has_proposal_equal_to_model) {
  auto model = tiny_model();
  const auto out = tldr::sample(model, prompts, options_with(1.0), 3);
  EXPECT_TRUE(out.log_proposal.equal(out.log_model));
  EXPECT_TRUE((out.log_model < 0).all().item<bool>());
}

TEST(sampler, top_k_one_is_greedy_with_zero_log_proposal) {
  auto model = tiny_model();
  const auto greedy = tldr::sample(model, prompts, options_with(0.0), 3);
  const auto top1 = tldr::sample(model, prompts, options_with(1.0, 1), 4);
  EXPECT_EQ(top1.responses, greedy.responses);
  EXPECT_EQ(top1.log_proposal.abs().max().item<double>(), 0.0);
  EXPECT_LT((top1.log_model - greedy.log_model).abs().max().item<double>(), 1e-6);
}

TEST(sampler, eos_ends_a_row_and_nothing_follows_it) {
  auto model = tiny_model();
  auto o = options_with(1.0);
  o.samples_per_prompt = 32;
  {
    torch::NoGradGuard no_grad;  // eos := prompt 0's most likely first token: often drawn
    o.eos_id = next_logits(model, prompts[0]).argmax().item<std::int64_t>();
  }
  const auto out = tldr::sample(model, prompts, o, 5);
  std::size_t ended = 0;
  for (const auto& r : out.responses) {
    ASSERT_FALSE(r.empty());
    for (std::size_t t = 0; t + 1 < r.size(); ++t) ASSERT_NE(r[t], o.eos_id);
    if (r.back() == o.eos_id) {
      ++ended;
    } else {
      EXPECT_EQ(static_cast<std::int64_t>(r.size()), o.max_new_tokens);
    }
  }
  EXPECT_GT(ended, 5u);
  EXPECT_LT(ended, out.responses.size());
  torch::NoGradGuard no_grad;
  const auto forced = tldr::sequence_log_prob(model, repeat_prompts(prompts, 32), out.responses, 0);
  EXPECT_LT((forced - out.log_model).abs().max().item<double>(), 1e-4);
}

TEST(sampler, seeded_generators_are_deterministic) {
  auto model = tiny_model();
  const auto o = options_with(0.9, 20, 0.95);
  const auto a = tldr::sample(model, prompts, o, 42);
  const auto b = tldr::sample(model, prompts, o, 42);
  const auto c = tldr::sample(model, prompts, o, 43);
  EXPECT_EQ(a.responses, b.responses);
  EXPECT_TRUE(a.log_proposal.equal(b.log_proposal));
  EXPECT_TRUE(a.log_model.equal(b.log_model));
  EXPECT_NE(a.responses, c.responses);
}

TEST(sampler, a_prompts_samples_depend_on_its_key_alone) {
  // What data parallelism needs: a prompt sampled alone, in another batch, in other chunks or in
  // another order draws the same responses when it keeps its key.
  auto model = tiny_model();
  auto o = options_with(1.0);
  o.samples_per_prompt = 3;
  const std::vector<std::uint64_t> keys{10, 11, 12};
  const auto all = tldr::sample(model, prompts, o, 5, keys);
  const std::vector<std::vector<std::int64_t>> reversed(prompts.rbegin(), prompts.rend());
  const std::vector<std::uint64_t> reversed_keys(keys.rbegin(), keys.rend());
  o.max_batch_rows = 3;  // one prompt per chunk
  const auto back = tldr::sample(model, reversed, o, 5, reversed_keys);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const auto alone = tldr::sample(model, {prompts[i]}, o, 5, std::vector<std::uint64_t>{keys[i]});
    for (std::size_t j = 0; j < 3; ++j) {
      EXPECT_EQ(alone.responses[j], all.responses[i * 3 + j]) << "prompt " << i << " sample " << j;
      EXPECT_EQ(back.responses[(prompts.size() - 1 - i) * 3 + j], all.responses[i * 3 + j]);
      EXPECT_NEAR(alone.log_model[long(j)].item<double>(), all.log_model[long(i * 3 + j)].item<double>(), 1e-4);
    }
  }
  // Another key, other draws; a key count that does not match the prompts is named.
  EXPECT_NE(tldr::sample(model, prompts, o, 5, std::vector<std::uint64_t>{20, 21, 22}).responses, all.responses);
  EXPECT_THROW(tldr::sample(model, prompts, o, 5, std::vector<std::uint64_t>{1}), std::invalid_argument);
}

// Pearson's statistic of `counts` against probabilities `p`, over tokens expected >= 5 times.
double chi_square(const std::vector<double>& counts, const torch::Tensor& p, double total, int& cells) {
  double chi = 0, rest_observed = 0, rest_expected = 0;
  cells = 0;
  for (std::size_t v = 0; v < counts.size(); ++v) {
    const double expected = total * p[static_cast<std::int64_t>(v)].item<double>();
    if (expected >= 5) {
      chi += (counts[v] - expected) * (counts[v] - expected) / expected;
      ++cells;
    } else {
      rest_observed += counts[v];
      rest_expected += expected;
    }
  }
  if (rest_expected > 0) {
    chi += (rest_observed - rest_expected) * (rest_observed - rest_expected) / rest_expected;
    ++cells;
  }
  return chi;
}

TEST(sampler, first_token_frequencies_follow_the_proposal) {
  auto model = tiny_model();
  const std::int64_t n = 6000;
  torch::Tensor logits;
  {
    torch::NoGradGuard no_grad;
    logits = next_logits(model, prompts[2]).view({1, -1});
  }
  struct setting {
    double temperature;
    std::int64_t top_k;
    double top_p;
  };
  for (const auto s : {setting{0.8, 0, 1.0}, setting{1.3, 6, 1.0}, setting{1.0, 0, 0.7}}) {
    auto o = options_with(s.temperature, s.top_k, s.top_p);
    o.samples_per_prompt = n;
    o.max_new_tokens = 1;
    o.max_batch_rows = n;
    const auto out = tldr::sample(model, {prompts[2]}, o, 99);
    const auto proposal = brain::libtorch::sampled_log_softmax(logits, {s.temperature, s.top_k, s.top_p})[0];
    if (s.top_k == 0 && s.top_p == 1.0) {
      EXPECT_LT((proposal - torch::log_softmax(logits[0] / s.temperature, -1)).abs().max().item<double>(), 1e-6);
    }
    std::vector<double> counts(50, 0.0);
    for (const auto& r : out.responses) {
      ASSERT_EQ(r.size(), 1u);
      ASSERT_TRUE(std::isfinite(proposal[r[0]].item<double>())) << "token " << r[0] << " is outside the kept set";
      counts[static_cast<std::size_t>(r[0])] += 1;
    }
    int cells = 0;
    const double chi = chi_square(counts, proposal.exp(), static_cast<double>(n), cells);
    const double df = std::max(1, cells - 1);
    // Mean df, sd sqrt(2 df): 6 sd is far beyond chance but catches a wrong distribution.
    EXPECT_LT(chi, df + 6 * std::sqrt(2 * df)) << "T " << s.temperature << " k " << s.top_k << " p " << s.top_p;
  }
}

TEST(sampler, rejects_bad_input) {
  auto model = tiny_model();
  auto o = options_with(1.0);
  try {
    tldr::sample(model, {{1, 2}, std::vector<std::int64_t>(25, 3)}, o, 1);  // 25 > 32 - 8
    FAIL() << "expected invalid_argument";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("prompts[1]"), std::string::npos) << what;
    EXPECT_NE(what.find("25"), std::string::npos) << what;
  }
  EXPECT_THROW(tldr::sample(model, {{1}, {}}, o, 1), std::invalid_argument);
  auto no_eos = o;
  no_eos.eos_id = -1;
  EXPECT_THROW(tldr::sample(model, prompts, no_eos, 1), std::invalid_argument);
  auto bad_p = o;
  bad_p.top_p = 0.0;
  EXPECT_THROW(tldr::sample(model, prompts, bad_p, 1), std::invalid_argument);
  model->train();
  tldr::sample(model, prompts, o, 1);
  EXPECT_TRUE(model->is_training()) << "sample restores the model's mode";
}

// Reported, not asserted: the pipeline's model size on one thread.
// Opt-in (TLDR_BENCH=1): it takes longer than all the other tests together.
TEST(sampler_speed, report_throughput) {
  if (std::getenv("TLDR_BENCH") == nullptr) GTEST_SKIP() << "set TLDR_BENCH=1 to measure sampling throughput";
  const int threads = ::at::get_num_threads();
  ::at::set_num_threads(1);
  torch::manual_seed(0);
  tldr::Gpt model(tldr::gpt_config{.vocab = 2000, .context = 160, .d_model = 128, .layers = 4, .heads = 4});
  const auto prompt_ids = torch::randint(1, 2000, {512, 96}, torch::kLong);
  seqs many(512);
  for (std::int64_t i = 0; i < 512; ++i) {
    const auto row = prompt_ids[i];
    many[static_cast<std::size_t>(i)].assign(row.data_ptr<std::int64_t>(), row.data_ptr<std::int64_t>() + 96);
  }
  tldr::sampling_options o;
  o.max_new_tokens = 24;
  o.eos_id = 0;  // never drawn often from a random model: (almost) every row runs 24 tokens
  o.pad_id = 0;
  o.temperature = 0.9;
  o.top_p = 0.95;
  const auto start = std::chrono::steady_clock::now();
  const auto cpu_start = std::clock();
  const auto out = tldr::sample(model, many, o, 1);
  const double cpu = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::size_t tokens = 0;
  for (const auto& r : out.responses) tokens += r.size();
  // CPU time too: on a shared machine the wall time mostly measures the other processes.
  std::printf(
      "[ report   ] sampling 512 x 24 after 96-token prompts (V=2000, d=128, 4 layers, 1 thread): "
      "%.2f s wall, %.2f s CPU, %.0f new tokens per wall second\n",
      seconds, cpu, static_cast<double>(tokens) / seconds);
  ::at::set_num_threads(threads);
  EXPECT_GT(tokens, 0u);
}

}  // namespace
