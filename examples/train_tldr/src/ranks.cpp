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

bool main_has(const std::filesystem::path& path) {
  const bool mine = std::filesystem::exists(path);
  if (ranks().world() == 1) return mine;
  return ranks().all_gather(mine ? "1" : "0").front() == "1";
}

}  // namespace tldr
