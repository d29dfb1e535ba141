// config.hpp: the version macros are the one version source (CMake's project version is read
// from them), and the portability macro is empty in host code.

#include <brain/config.hpp>

#include <gtest/gtest.h>

#include <string>
#include <type_traits>

namespace {

TEST(Config, VersionIsCMakesProjectVersion) {
  const std::string version = std::to_string(BRAIN_VERSION_MAJOR) + "." + std::to_string(BRAIN_VERSION_MINOR) + "." +
                              std::to_string(BRAIN_VERSION_PATCH);
  EXPECT_EQ(version, BRAIN_CMAKE_PROJECT_VERSION);
}

TEST(Config, IndexIsSignedAndHostDeviceIsEmptyOnTheHost) {
  static_assert(std::is_signed_v<brain::index>);
#define BRAIN_TEST_STRINGIFY(x) #x
#define BRAIN_TEST_EXPAND(x) BRAIN_TEST_STRINGIFY(x)
  EXPECT_EQ(std::string(BRAIN_TEST_EXPAND(BRAIN_HOST_DEVICE)), "");
}

}  // namespace
