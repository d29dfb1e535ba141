// Tests of the GPT, its KV cache, the reward model and the padding helpers, on a tiny random model.
#include "model.hpp"
#include "tiny_model.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

namespace {

using tldr::gpt_config;
using seqs = std::vector<std::vector<std::int64_t>>;

using tldr::testing::tiny_config;
using tldr::testing::tiny_model;

torch::Tensor one_row(const std::vector<std::int64_t>& s) { return torch::tensor(s, torch::kLong).view({1, -1}); }

torch::Tensor all_real(const torch::Tensor& ids) { return torch::ones_like(ids, torch::kBool); }

const seqs example = {{5, 9, 3}, {7, 1, 2, 8, 4, 4, 11}, {13, 6, 20, 40, 2}};

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

TEST(model_config, json_round_trip_and_validation) {
  const gpt_config c{.vocab = 123, .context = 77, .d_model = 48, .layers = 3, .heads = 6};
  const nlohmann::json j = c;
  EXPECT_EQ(j.get<gpt_config>(), c);
  EXPECT_EQ(gpt_config::from_json(c.to_json()), c);
  auto missing = j;
  missing.erase("heads");
  EXPECT_THROW(gpt_config::from_json(missing), std::invalid_argument);
  auto bad = j;
  bad["heads"] = 5;  // does not divide d_model
  try {
    gpt_config::from_json(bad);
    FAIL() << "expected invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("heads = 5"), std::string::npos) << e.what();
  }
}

TEST(model_padding, helpers_pad_and_reject_long_sequences) {
  const auto left = tldr::left_pad({{1, 2}, {3}}, 0);
  EXPECT_TRUE(left.ids.equal(torch::tensor({1, 2, 0, 3}, torch::kLong).view({2, 2})));
  EXPECT_TRUE(left.mask.equal(torch::tensor({true, true, false, true}).view({2, 2})));
  const auto right = tldr::right_pad({{1, 2}, {3}}, 9, 3);
  EXPECT_TRUE(right.ids.equal(torch::tensor({1, 2, 9, 3, 9, 9}, torch::kLong).view({2, 3})));
  EXPECT_TRUE(right.mask.equal(torch::tensor({true, true, false, true, false, false}).view({2, 3})));
  try {
    tldr::left_pad({{1}, {1, 2, 3}}, 0, 2);
    FAIL() << "expected invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("sequences[1]"), std::string::npos) << e.what();
  }
}

TEST(model_padding, left_and_right_padding_match_unpadded) {
  auto model = tiny_model();
  torch::NoGradGuard no_grad;
  const auto left = tldr::left_pad(example, 0, 9);
  const auto right = tldr::right_pad(example, 0, 9);
  const auto h_left = model->hidden(left.ids, left.mask);
  const auto h_right = model->hidden(right.ids, right.mask);
  for (std::size_t b = 0; b < example.size(); ++b) {
    const auto ids = one_row(example[b]);
    const auto alone = model->hidden(ids, all_real(ids))[0];
    const auto n = ids.size(1), row = static_cast<std::int64_t>(b);
    EXPECT_LT(max_diff(h_left[row].narrow(0, 9 - n, n), alone), 1e-5) << "row " << b;
    EXPECT_LT(max_diff(h_right[row].narrow(0, 0, n), alone), 1e-5) << "row " << b;
  }
}

TEST(model_padding, fully_padded_rows_stay_finite_forward_and_backward) {
  auto model = tiny_model();
  model->train();
  auto input = tldr::left_pad({{4, 5, 6}, {}, {7}}, 0, 5);
  const auto h = model->hidden(input.ids, input.mask);
  ASSERT_TRUE(torch::isfinite(h).all().item<bool>());
  h.pow(2).sum().backward();
  for (const auto& p : model->parameters()) ASSERT_TRUE(torch::isfinite(p.grad()).all().item<bool>());
  tldr::RewardModel rm(tiny_config());
  EXPECT_TRUE(torch::isfinite(rm->forward(input.ids, input.mask)).all().item<bool>());
}

TEST(model_attention, causal) {
  auto model = tiny_model();
  torch::NoGradGuard no_grad;
  auto ids = one_row({3, 1, 4, 1, 5, 9, 2, 6});
  const auto before = model->hidden(ids, all_real(ids));
  ids[0][7] = 30;
  ids[0][5] = 31;
  const auto after = model->hidden(ids, all_real(ids));
  EXPECT_LT(max_diff(before[0].narrow(0, 0, 5), after[0].narrow(0, 0, 5)), 1e-6);
  EXPECT_GT(max_diff(before[0][5], after[0][5]), 1e-3);
}

TEST(model_cache, step_by_step_matches_full_forward) {
  auto model = tiny_model();
  torch::NoGradGuard no_grad;
  // Left-padded prompts (width 7), then 6 decoded columns in which row 1 finishes early (its
  // later tokens are padding with mask 0), as the sampler does.
  const auto prompts = tldr::left_pad(example, 0, 7);
  auto more = torch::randint(0, 50, {3, 6}, torch::kLong);
  auto more_mask = torch::ones({3, 6}, torch::kBool);
  more_mask[1].narrow(0, 2, 4).fill_(false);
  const auto ids = torch::cat({prompts.ids, more}, 1), mask = torch::cat({prompts.mask, more_mask}, 1);
  const auto full = model->hidden(ids, mask);

  auto cache = model->make_cache(3, 13);
  std::vector<torch::Tensor> pieces;
  // Prefill in two pieces (exercises the causal offset), then one token at a time.
  pieces.push_back(model->step(ids.narrow(1, 0, 4), mask.narrow(1, 0, 4), cache));
  pieces.push_back(model->step(ids.narrow(1, 4, 3), mask.narrow(1, 4, 3), cache));
  for (std::int64_t t = 7; t < 13; ++t) pieces.push_back(model->step(ids.narrow(1, t, 1), mask.narrow(1, t, 1), cache));
  const auto stepped = torch::cat(pieces, 1);
  EXPECT_EQ(cache.length, 13);
  ASSERT_TRUE(torch::isfinite(stepped).all().item<bool>());
  const auto real = mask.unsqueeze(2).expand_as(full);
  EXPECT_LT(max_diff(stepped.masked_select(real), full.masked_select(real)), 1e-5);
  EXPECT_THROW(model->step(ids.narrow(1, 0, 1), mask.narrow(1, 0, 1), cache), std::invalid_argument);  // full

  // select_rows (n samples per prompt) continues each row as its source does.
  auto prefix = model->make_cache(3, 8);
  model->step(ids.narrow(1, 0, 7), mask.narrow(1, 0, 7), prefix);
  auto repeated = prefix.select_rows(torch::tensor({2, 2, 0}, torch::kLong));
  const auto next = model->step(ids.narrow(1, 7, 1).index_select(0, torch::tensor({2, 2, 0}, torch::kLong)),
                                torch::ones({3, 1}, torch::kBool), repeated);
  EXPECT_LT(max_diff(next[0], full[2].narrow(0, 7, 1)), 1e-5);
  EXPECT_LT(max_diff(next[2], full[0].narrow(0, 7, 1)), 1e-5);
}

TEST(model_gpt, rejects_bad_input) {
  auto model = tiny_model();
  const auto ids = one_row({1, 50});
  try {
    model->hidden(ids, all_real(ids));
    FAIL() << "expected invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("50"), std::string::npos) << e.what();
  }
  const auto long_ids = torch::zeros({1, 33}, torch::kLong);
  EXPECT_THROW(model->hidden(long_ids, all_real(long_ids)), std::invalid_argument);
  EXPECT_THROW(model->hidden(ids, torch::ones({1, 3}, torch::kBool)), std::invalid_argument);
  EXPECT_THROW(model->make_cache(2, 33), std::invalid_argument);
}

TEST(model_gpt, logits_use_the_tied_embedding_and_init_follows_gpt2) {
  auto model = tiny_model();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(model->head_weight().is_same(model->token_embedding->weight));
  const auto ids = one_row({1, 2, 3});
  const auto h = model->hidden(ids, all_real(ids));
  EXPECT_LT(max_diff(model->forward(ids, all_real(ids)), torch::matmul(h, model->head_weight().t())), 1e-5);

  torch::manual_seed(0);
  tldr::Gpt fresh(gpt_config{});  // default size: 4 layers, d = 128
  const auto& block = fresh->blocks->at<tldr::BlockImpl>(0);
  EXPECT_NEAR(block.qkv->weight.std().item<double>(), 0.02, 0.002);
  EXPECT_NEAR(block.fc_proj->weight.std().item<double>(), 0.02 / std::sqrt(8.0), 0.0007);
  EXPECT_EQ(block.qkv->bias.abs().max().item<double>(), 0.0);
}

TEST(model_utils, parameter_count_and_clone) {
  const auto c = tiny_config();
  auto model = tiny_model();
  const std::int64_t d = c.d_model;
  const std::int64_t per_block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d);
  EXPECT_EQ(tldr::parameter_count(*model), c.vocab * d + c.context * d + c.layers * per_block + 2 * d);

  auto copy = tldr::clone(model);
  torch::NoGradGuard no_grad;
  const auto ids = one_row({4, 8, 15, 16, 23, 42});
  EXPECT_TRUE(copy->hidden(ids, all_real(ids)).equal(model->hidden(ids, all_real(ids))));
  model->head_weight().add_(1.0);  // the clone owns its parameters
  EXPECT_FALSE(copy->head_weight().equal(model->head_weight()));
}

TEST(model_reward, reads_last_real_token_under_both_paddings) {
  auto gpt = tiny_model(3);
  tldr::RewardModel rm(tiny_config());
  rm->load_backbone(gpt);
  rm->eval();
  torch::NoGradGuard no_grad;
  const auto left = tldr::left_pad(example, 0, 9);
  const auto right = tldr::right_pad(example, 7, 9);
  const auto from_left = rm->forward(left.ids, left.mask);
  const auto from_right = rm->forward(right.ids, right.mask);
  ASSERT_EQ(from_left.sizes(), (torch::IntArrayRef{3}));
  for (std::size_t b = 0; b < example.size(); ++b) {
    const auto ids = one_row(example[b]);
    // The backbone is the SFT model's: the score is the head applied to its last hidden state.
    const auto last = gpt->hidden(ids, all_real(ids))[0][ids.size(1) - 1];
    const double expected = rm->head(last.view({1, -1})).item<double>();
    const auto row = static_cast<std::int64_t>(b);
    EXPECT_NEAR(from_left[row].item<double>(), expected, 1e-5) << "row " << b;
    EXPECT_NEAR(from_right[row].item<double>(), expected, 1e-5) << "row " << b;
  }
  tldr::RewardModel other(gpt_config{.vocab = 50, .context = 32, .d_model = 32, .layers = 1, .heads = 4});
  EXPECT_THROW(other->load_backbone(gpt), std::invalid_argument);
}

}  // namespace
