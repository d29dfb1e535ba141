#pragma once
// What a benchmark's figures were measured on, printed beside them: the CPU (model, family), the
// flags the kernels were compiled with, what GCC's -march=native resolved to on the machine that
// configured the build, and the SIMD width brain's kernels got from those flags.
// BRAIN_BENCHMARK_FLAGS and BRAIN_BENCHMARK_MARCH come from benchmarks/CMakeLists.txt.

#include <brain/kernels/simd.hpp>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>

namespace brain_bench {

/// "model name", "cpu family" and "model" of the first CPU in /proc/cpuinfo ("?" elsewhere).
inline std::map<std::string, std::string> cpu_fields() {
  std::map<std::string, std::string> fields{{"model name", "?"}, {"cpu family", "?"}, {"model", "?"}};
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line) && !line.empty();) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    if (fields.count(key)) fields[key] = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
  }
  return fields;
}

inline void print_machine() {
  auto cpu = cpu_fields();
  std::printf(
      "machine: %s (family %s, model %s); compiled with: %s; -march=native here: %s; "
      "brain's SIMD packs: %zu bytes\n",
      cpu["model name"].c_str(), cpu["cpu family"].c_str(), cpu["model"].c_str(), BRAIN_BENCHMARK_FLAGS,
      BRAIN_BENCHMARK_MARCH, brain::kernels::simd::register_bytes);
}

}  // namespace brain_bench
