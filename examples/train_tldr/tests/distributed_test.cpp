// src/distributed.hpp within one process: torchrun's environment protocol and a world of one.
// Several processes: tests/distributed_test.sh with tests/dist_driver.cpp.
#include "distributed.hpp"
#include "ranks.hpp"

#include <gtest/gtest.h>

#include <stdlib.h>

#include <map>
#include <optional>
#include <string>

namespace {

// Sets the launch variables for one test and restores the previous values after it.
class dist_env_scope {
 public:
  explicit dist_env_scope(const std::map<std::string, std::string>& values) {
    for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) {
      const char* old = std::getenv(name);
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
      ::unsetenv(name);
    }
    for (const auto& [name, value] : values) ::setenv(name.c_str(), value.c_str(), 1);
  }
  ~dist_env_scope() {
    for (const auto& [name, value] : saved_) {
      if (value)
        ::setenv(name.c_str(), value->c_str(), 1);
      else
        ::unsetenv(name.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

// The message of launch_from_env's std::invalid_argument, or "" when it returns.
std::string dist_launch_error(const std::map<std::string, std::string>& values) {
  dist_env_scope scope(values);
  try {
    (void)tldr::dist::launch_from_env();
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  return "";
}

TEST(distributed, no_launcher_is_a_world_of_one) {
  dist_env_scope scope({});
  const auto where = tldr::dist::launch_from_env();
  EXPECT_EQ(where.rank, 0);
  EXPECT_EQ(where.world, 1);
  EXPECT_EQ(where.local_rank, 0);
}

TEST(distributed, reads_torchrun_variables) {
  dist_env_scope scope(
      {{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "10.0.0.7"}, {"MASTER_PORT", "12345"}});
  const auto where = tldr::dist::launch_from_env();
  EXPECT_EQ(where.rank, 3);
  EXPECT_EQ(where.world, 4);
  EXPECT_EQ(where.local_rank, 1);
  EXPECT_EQ(where.master_addr, "10.0.0.7");
  EXPECT_EQ(where.master_port, 12345);
}

TEST(distributed, defaults_follow_torch) {
  dist_env_scope scope({{"RANK", "1"}, {"WORLD_SIZE", "2"}});
  const auto where = tldr::dist::launch_from_env();
  EXPECT_EQ(where.local_rank, 1);  // LOCAL_RANK defaults to RANK
  EXPECT_EQ(where.master_addr, "127.0.0.1");
  EXPECT_EQ(where.master_port, 29500);
}

TEST(distributed, bad_variables_are_named_with_their_values) {
  EXPECT_NE(dist_launch_error({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("RANK=2"), std::string::npos);
  EXPECT_NE(dist_launch_error({{"RANK", "-1"}, {"WORLD_SIZE", "2"}}).find("RANK=-1"), std::string::npos);
  EXPECT_NE(dist_launch_error({{"RANK", "0"}, {"WORLD_SIZE", "two"}}).find("WORLD_SIZE=two"), std::string::npos);
  EXPECT_NE(dist_launch_error({{"RANK", "0"}, {"WORLD_SIZE", "0"}}).find("WORLD_SIZE=0"), std::string::npos);
  EXPECT_NE(dist_launch_error({{"RANK", "1x"}, {"WORLD_SIZE", "2"}}).find("RANK=1x"), std::string::npos);
  EXPECT_NE(dist_launch_error({{"WORLD_SIZE", "2"}}).find("without RANK"), std::string::npos);
  EXPECT_NE(dist_launch_error({{"RANK", "1"}}).find("RANK=1 without WORLD_SIZE"), std::string::npos);
  EXPECT_NE(dist_launch_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}}).find("MASTER_PORT=70000"),
            std::string::npos);
  EXPECT_NE(dist_launch_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "x"}}).find("LOCAL_RANK=x"),
            std::string::npos);
  EXPECT_NE(dist_launch_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", ""}}).find("MASTER_ADDR"),
            std::string::npos);
  EXPECT_EQ(dist_launch_error({{"RANK", "0"}}), "");  // rank 0 alone is a world of one
}

TEST(distributed, world_of_one_is_the_identity) {
  tldr::dist::group g(tldr::dist::launch{});
  EXPECT_TRUE(g.is_main());
  EXPECT_EQ(g.world(), 1);
  std::vector<torch::Tensor> tensors = {torch::arange(5, torch::kFloat), torch::ones({2, 2}, torch::kLong)};
  g.all_reduce_sum(tensors);
  EXPECT_TRUE(torch::equal(tensors[0], torch::arange(5, torch::kFloat)));
  EXPECT_EQ(g.sum(2.5), 2.5);
  EXPECT_EQ(g.sum(std::int64_t{7}), 7);
  EXPECT_EQ(g.all_gather("abc"), std::vector<std::string>{"abc"});
  g.broadcast(tensors);
  g.barrier();

  torch::nn::Linear layer(2, 1);
  layer(torch::ones({1, 2})).sum().backward();
  const torch::Tensor grad = layer->weight.grad().clone();
  g.sum_gradients(layer->parameters(), 0.5);
  EXPECT_TRUE(torch::equal(layer->weight.grad(), grad * 0.5));

  // Bad input is refused in a world of one too, not only where it would reach the network.
  std::vector<torch::Tensor> bools = {torch::ones({2}, torch::kBool)};
  EXPECT_THROW(g.all_reduce_sum(bools), std::invalid_argument);
  EXPECT_THROW(g.broadcast(tensors, 1), std::invalid_argument);
  EXPECT_THROW(tldr::dist::group(tldr::dist::launch{.rank = 2, .world = 2}), std::invalid_argument);
}

#ifndef USE_C10D_NCCL
TEST(distributed, cuda_without_nccl_says_what_is_missing) {
  try {
    tldr::dist::group g(tldr::dist::launch{.rank = 0, .world = 2}, torch::Device(torch::kCUDA, 0));
    FAIL() << "a CUDA group was made without NCCL";
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("ProcessGroupNCCL"), std::string::npos) << error.what();
  }
}
#endif

}  // namespace

namespace {

// The pipeline's shares (src/ranks.hpp): contiguous, covering, in rank order, the first n % world
// ranks one larger, empty ranks when n < world. A share that overlapped or skipped an item would
// train on a prompt twice or never, which the 2-rank pipeline test (even counts) could not see.
TEST(distributed, shares_are_contiguous_blocks_in_rank_order) {
  for (std::size_t n : {0u, 1u, 2u, 5u, 7u, 64u})
    for (int world : {1, 2, 3, 8}) {
      std::size_t next = 0;
      for (int r = 0; r < world; ++r) {
        const auto [begin, end] = tldr::share_of(n, r, world);
        EXPECT_EQ(begin, next) << n << " items, rank " << r << " of " << world;
        const std::size_t size = n / std::size_t(world) + (std::size_t(r) < n % std::size_t(world) ? 1 : 0);
        EXPECT_EQ(end - begin, size) << n << " items, rank " << r << " of " << world;
        next = end;
      }
      EXPECT_EQ(next, n) << n << " items over " << world;
    }
  EXPECT_THROW((void)tldr::share_of(5, 2, 2), std::invalid_argument);
  EXPECT_THROW((void)tldr::share_of(5, 0, 0), std::invalid_argument);
  // A world of one: the whole, and every helper the identity.
  EXPECT_EQ(tldr::my_share(9), (std::pair<std::size_t, std::size_t>{0, 9}));
  EXPECT_EQ(tldr::slice(std::vector<int>{1, 2, 3, 4}, 1, 3), (std::vector<int>{2, 3}));
  EXPECT_EQ(tldr::indices(3, 6), (std::vector<std::uint64_t>{3, 4, 5}));
  double a = 1.5, b = -2;
  tldr::sum_over_ranks({&a, &b});
  EXPECT_EQ(a, 1.5);
  EXPECT_EQ(b, -2);
  EXPECT_EQ(tldr::gather_shares(std::vector<std::string>{"x", "y"}), (std::vector<std::string>{"x", "y"}));
}

}  // namespace
