#include "seeds.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <numeric>
#include <random>
#include <utility>

namespace tldr {

std::uint64_t derive_seed(std::uint64_t seed, purpose p, std::uint64_t a, std::uint64_t b) {
  std::uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (static_cast<std::uint64_t>(p) + 1) +
                    0xbf58476d1ce4e5b9ULL * (a + 1) + 0x94d049bb133111ebULL * (b + 1);
  for (int round = 0; round < 2; ++round) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
  }
  return z;
}

std::vector<std::size_t> permutation(std::size_t n, std::uint64_t seed) {
  std::vector<std::size_t> p(n);
  std::iota(p.begin(), p.end(), std::size_t{0});
  std::mt19937_64 rng(seed);
  for (std::size_t i = n; i > 1; --i) std::swap(p[i - 1], p[rng() % i]);
  return p;
}

torch::Generator cpu_generator(std::uint64_t seed) { return at::detail::createCPUGenerator(seed); }

void seed_global_generator(std::uint64_t seed) { torch::manual_seed(seed); }

}  // namespace tldr
