// Worker processes (src/jobs.hpp). The workers here are this test program itself, running one of
// the DISABLED_jobs_child tests below.
#include "checkpoint.hpp"
#include "context.hpp"
#include "jobs.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

namespace {
namespace fs = std::filesystem;

fs::path marks() { return std::getenv("TLDR_JOBS_DIR"); }

TEST(DISABLED_jobs_child, succeeds) {
  std::printf("child %d here\n", ::getpid());
  std::ofstream(marks() / ("ok-" + std::to_string(::getpid()))) << "done";
}
TEST(DISABLED_jobs_child, fails) { std::exit(3); }
TEST(DISABLED_jobs_child, sleeps_then_writes) {
  std::this_thread::sleep_for(std::chrono::seconds(2));
  std::ofstream(marks() / "late") << "still alive";
}

tldr::job child(const std::string& name, const std::string& test) {
  return {name, {"--gtest_also_run_disabled_tests", "--gtest_filter=DISABLED_jobs_child." + test}};
}

fs::path scratch() {
  const auto dir = fs::temp_directory_path() / ("tldr-jobs-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  ::setenv("TLDR_JOBS_DIR", dir.c_str(), 1);
  return dir;
}

TEST(jobs, every_job_runs_and_a_failure_is_named_with_its_log) {
  const auto dir = scratch();
  auto log = tldr::open_log(dir, "jobs.log");
  tldr::run_jobs({child("a", "succeeds"), child("b", "succeeds"), child("c", "succeeds")}, 2, dir / "logs", *log);
  std::size_t done = 0;
  for (const auto& f : fs::directory_iterator(dir)) done += f.path().filename().string().starts_with("ok-");
  EXPECT_EQ(done, 3u);
  EXPECT_NE(tldr::read_text(dir / "logs/a.log").find("here"), std::string::npos);  // stdout goes to the log
  try {
    tldr::run_jobs({child("good", "succeeds"), child("bad", "fails")}, 1, dir / "logs", *log);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("bad (exit status 3, log " + (dir / "logs/bad.log").string()), std::string::npos) << what;
    EXPECT_EQ(what.find("good"), std::string::npos) << what;
  }
  // After a failure no new job starts.
  EXPECT_THROW(tldr::run_jobs({child("bad2", "fails"), child("never", "succeeds")}, 1, dir / "logs", *log),
               std::runtime_error);
  EXPECT_FALSE(fs::exists(dir / "logs/never.log"));
  fs::remove_all(dir);
}

TEST(jobs, workers_die_with_the_process_that_started_them) {
  const auto dir = scratch();
  const pid_t parent = ::fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    auto log = tldr::open_log(dir, "jobs.log");
    tldr::run_jobs({child("sleeper", "sleeps_then_writes")}, 1, dir / "logs", *log);
    ::_exit(0);
  }
  for (int i = 0; i < 100 && !fs::exists(dir / "logs/sleeper.log"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ::kill(parent, SIGKILL);
  ::waitpid(parent, nullptr, 0);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_FALSE(fs::exists(dir / "late")) << "the worker outlived its parent";
  fs::remove_all(dir);
}

}  // namespace
