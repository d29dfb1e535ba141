#pragma once
// The pipeline's error for bad arguments: std::invalid_argument with the pieces streamed together.

#include <sstream>
#include <stdexcept>

namespace tldr {

template <class... Args>
[[noreturn]] void fail(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  throw std::invalid_argument(out.str());
}

}  // namespace tldr
