#pragma once
// The pipeline's data parallelism (issue 15) over the process group of src/distributed.hpp: which
// share of the prompts this rank takes, and gathering the shares back. One process (no launcher)
// is a world of one, where every function here is the identity, so each stage has one code path.
//
// The rules every stage follows: a share is a contiguous block of the items in their global order
// (so gathering in rank order restores that order); every random draw is keyed by the item's
// global index (sampler.hpp), never by the rank; losses are divided by the global count and
// gradients summed over ranks (training.hpp's optimizer_step); rank 0 alone writes files
// (checkpoint.hpp's atomic_write) and stage outputs are read only after a barrier.

#include "distributed.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace tldr {

/// The process's group: a world of one until join_ranks.
[[nodiscard]] dist::group& ranks();
/// Joins the run `where` describes (once, before any stage).
void join_ranks(const dist::launch& where, torch::Device device, std::chrono::milliseconds timeout);

/// Items [begin, end) of n that `rank` of `world` takes: contiguous blocks, the first n % world
/// ranks one item more.
[[nodiscard]] std::pair<std::size_t, std::size_t> share_of(std::size_t n, int rank, int world);
/// This process's share of n items.
[[nodiscard]] std::pair<std::size_t, std::size_t> my_share(std::size_t n);

/// Elements [begin, end) of `all` (a share of it).
template <class T>
[[nodiscard]] std::vector<T> slice(const std::vector<T>& all, std::size_t begin, std::size_t end) {
  return {all.begin() + static_cast<std::ptrdiff_t>(begin), all.begin() + static_cast<std::ptrdiff_t>(end)};
}
/// begin, begin + 1, ..., end - 1: a share's global indices, the sampler's keys (sampler.hpp).
[[nodiscard]] std::vector<std::uint64_t> indices(std::size_t begin, std::size_t end);
/// Each value replaced by its sum over the ranks, in one all-reduce.
void sum_over_ranks(std::initializer_list<double*> values);

/// Every rank's share, concatenated in rank order (each element through nlohmann json).
template <class T>
[[nodiscard]] std::vector<T> gather_shares(const std::vector<T>& mine) {
  if (ranks().world() == 1) return mine;
  std::vector<T> all;
  for (const auto& part : ranks().all_gather(nlohmann::json(mine).dump()))
    for (auto& item : nlohmann::json::parse(part).get<std::vector<T>>()) all.push_back(std::move(item));
  return all;
}

/// Whether rank 0 sees `path` (every rank gets rank 0's answer): stage skips decided alike on
/// every rank, even while rank 0 is writing.
[[nodiscard]] bool main_has(const std::filesystem::path& path);

}  // namespace tldr
