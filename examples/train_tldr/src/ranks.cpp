#include "ranks.hpp"

#include "fail.hpp"

#include <filesystem>
#include <memory>

namespace tldr {
namespace {
std::unique_ptr<dist::group>& ranks_group() {
  static std::unique_ptr<dist::group> group = std::make_unique<dist::group>(dist::launch{});
  return group;
}
}  // namespace

dist::group& ranks() { return *ranks_group(); }

void join_ranks(const dist::launch& where, torch::Device device, std::chrono::milliseconds timeout) {
  if (ranks().world() > 1) fail("join_ranks: this process has joined a run already");
  ranks_group() = std::make_unique<dist::group>(where, device, timeout);
}

std::pair<std::size_t, std::size_t> share_of(std::size_t n, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world) fail("share_of: rank ", rank, " of world ", world);
  const auto w = static_cast<std::size_t>(world), r = static_cast<std::size_t>(rank);
  const std::size_t base = n / w, extra = n % w;
  const std::size_t begin = r * base + std::min(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

std::pair<std::size_t, std::size_t> my_share(std::size_t n) { return share_of(n, ranks().rank(), ranks().world()); }

std::vector<std::uint64_t> indices(std::size_t begin, std::size_t end) {
  std::vector<std::uint64_t> out;
  for (std::size_t i = begin; i < end; ++i) out.push_back(i);
  return out;
}

void sum_over_ranks(std::initializer_list<double*> values) {
  if (ranks().world() == 1) return;
  std::vector<torch::Tensor> one{torch::empty({static_cast<std::int64_t>(values.size())}, torch::kDouble)};
  auto* data = one[0].data_ptr<double>();
  for (double* v : values) *data++ = *v;
  ranks().all_reduce_sum(one);
  data = one[0].data_ptr<double>();
  for (double* v : values) *v = *data++;
}

bool main_has(const std::filesystem::path& path) {
  const bool mine = std::filesystem::exists(path);
  if (ranks().world() == 1) return mine;
  return ranks().sum(std::int64_t(ranks().is_main() && mine)) == 1;  // rank 0's answer, on every rank
}

}  // namespace tldr
