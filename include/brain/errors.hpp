#pragma once
// Error reporting: every bad input becomes std::invalid_argument naming the function,
// the argument, the position and the value (never a silent NaN).

#include <brain/config.hpp>

#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace brain::inline v0::detail {

inline std::string describe_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+inf" : "-inf";
  std::ostringstream os;
  os.precision(std::numeric_limits<double>::max_digits10);
  os << v;
  return os.str();
}

template <class... Parts>
[[noreturn]] void fail(std::string_view where, const Parts&... parts) {
  std::ostringstream os;
  os << "brain::" << where << ": ";
  (os << ... << parts);
  throw std::invalid_argument(os.str());
}

}  // namespace brain::inline v0::detail
