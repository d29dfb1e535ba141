#pragma once
// Alignment and evaluation runs as worker processes of this program: each single-threaded, so a
// run's result does not depend on how many run at once, and `--jobs` of them at a time on the
// machine's cores (2 processes × 1 thread use two cores better than 1 × 2 for these small models).

#include <spdlog/logger.h>

#include <filesystem>
#include <string>
#include <vector>

namespace tldr {

/// One worker: a name (its log file is <log_dir>/<name>.log) and the arguments after the program.
struct job {
  std::string name;
  std::vector<std::string> args;
};

/// Runs the jobs, `parallel` at a time, as child processes of /proc/self/exe with stdout and stderr
/// in their log files. A child is killed with its parent (PR_SET_PDEATHSIG), so a killed run leaves
/// nothing behind that still writes into the work directory. When a job fails, no new one starts;
/// the running ones finish, then std::runtime_error names the failed jobs and their logs.
void run_jobs(const std::vector<job>& jobs, int parallel, const std::filesystem::path& log_dir, spdlog::logger& log);

}  // namespace tldr
