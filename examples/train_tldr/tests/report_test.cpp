// The report's plots (src/stages/report.cpp): gnuplot strings quoted so that any label draws.
#include "stages.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>

namespace {
namespace fs = std::filesystem;

TEST(report, gnuplot_strings_double_their_quotes) {
  EXPECT_EQ(tldr::gnuplot_quoted("DPO-sft at BRAIn's settings"), "'DPO-sft at BRAIn''s settings'");
  EXPECT_EQ(tldr::gnuplot_quoted(""), "''");
  EXPECT_EQ(tldr::gnuplot_quoted("a \"b\" c\\d"), "'a \"b\" c\\d'");  // no escapes inside single quotes
}

// The study's row labels carry apostrophes ("DPO-sft at BRAIn's settings"): unquoted, gnuplot
// stopped at them and no plot was drawn.
TEST(report, a_label_with_an_apostrophe_is_drawn) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) GTEST_SKIP() << "gnuplot is not installed";
  const fs::path dir = fs::temp_directory_path() / ("tldr-report-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ostringstream text;
  spdlog::logger log("report-test", std::make_shared<spdlog::sinks::ostream_sink_mt>(text));
  const fs::path png = dir / "plot.png";
  tldr::draw_with_gnuplot(
      "set title " + tldr::gnuplot_quoted("BRAIn's settings") + "; plot x title " + tldr::gnuplot_quoted("it's a line"),
      png, 300, 200, log);
  EXPECT_TRUE(fs::exists(png)) << text.str();
  EXPECT_EQ(text.str().find("gnuplot failed"), std::string::npos) << text.str();
  fs::remove_all(dir);
}

}  // namespace
