// A downstream program: it only includes <brain/loss.hpp> and uses the public entry point.
#include <brain/loss.hpp>

#include <cmath>
#include <cstdio>
#include <string>

int main() {
  Eigen::MatrixXd lp(1, 2), lq(1, 2), l0(1, 2), r(1, 2);
  lp << 0, 0;
  lq = lp;
  l0 = lp;
  r << 0, std::log(3.0);
  brain::samples<Eigen::MatrixXd> s{.log_policy = lp, .log_proposal = lq, .log_prior = l0, .reward = r};
  const auto out = brain::brain_loss(s);
  const double expect = 0.25 * std::log(0.5) + 0.75 * std::log(1.5);
  std::printf("brain %d.%d.%d: loss %.17g (expected %.17g)\n", BRAIN_VERSION_MAJOR, BRAIN_VERSION_MINOR,
              BRAIN_VERSION_PATCH, out.loss, expect);
#if defined(BRAIN_PACKAGE_VERSION)
  // One version source: the macros of config.hpp are the version the installed package reports.
  const std::string version = std::to_string(BRAIN_VERSION_MAJOR) + "." + std::to_string(BRAIN_VERSION_MINOR) + "." +
                              std::to_string(BRAIN_VERSION_PATCH);
  if (version != BRAIN_PACKAGE_VERSION) {
    std::printf("version mismatch: config.hpp says %s, the CMake package %s\n", version.c_str(), BRAIN_PACKAGE_VERSION);
    return 1;
  }
#endif
  return std::abs(out.loss - expect) < 1e-15 ? 0 : 1;
}
