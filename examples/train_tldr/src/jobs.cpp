#include "jobs.hpp"

#include "progress.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <map>
#include <stdexcept>

namespace tldr {
namespace fs = std::filesystem;

namespace {
struct running {
  std::string name;
  std::chrono::steady_clock::time_point start;
};

pid_t start(const job& j, const fs::path& log_file) {
  std::vector<std::string> argv{"train_tldr"};
  argv.insert(argv.end(), j.args.begin(), j.args.end());
  std::vector<char*> raw;
  for (auto& a : argv) raw.push_back(a.data());
  raw.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("run_jobs: fork failed for " + j.name);
  if (pid == 0) {
    // In the child: die with the parent, even if it died between fork and here.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    const int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::close(fd);
    }
    ::execv("/proc/self/exe", raw.data());
    ::_exit(127);
  }
  return pid;
}
}  // namespace

void run_jobs(const std::vector<job>& jobs, int parallel, const fs::path& log_dir, spdlog::logger& log) {
  if (jobs.empty()) return;
  if (parallel < 1) throw std::invalid_argument("run_jobs: parallel = " + std::to_string(parallel) + " must be >= 1");
  fs::create_directories(log_dir);
  std::map<pid_t, running> active;
  std::vector<std::string> failed;
  std::size_t next = 0;
  progress bar("runs", static_cast<std::int64_t>(jobs.size()), "runs");
  while (next < jobs.size() || !active.empty()) {
    while (failed.empty() && next < jobs.size() && static_cast<int>(active.size()) < parallel) {
      const auto& j = jobs[next++];
      active[start(j, log_dir / (j.name + ".log"))] = {j.name, std::chrono::steady_clock::now()};
    }
    if (active.empty()) break;
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("run_jobs: waitpid failed");
    }
    const auto it = active.find(pid);
    if (it == active.end()) continue;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - it->second.start).count();
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      log.info("{} done in {}", it->second.name, format_duration(seconds));
    } else {
      const auto file = (log_dir / (it->second.name + ".log")).string();
      const std::string why = WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                                                  : "exit status " + std::to_string(WEXITSTATUS(status));
      log.error("{} failed ({}); see {}", it->second.name, why, file);
      failed.push_back(it->second.name + " (" + why + ", log " + file + ")");
    }
    bar.advance(1, it->second.name);
    active.erase(it);
  }
  bar.finish();
  if (!failed.empty()) {
    std::string list;
    for (const auto& f : failed) list += (list.empty() ? "" : "; ") + f;
    throw std::runtime_error(std::to_string(failed.size()) + " run(s) failed: " + list);
  }
}

}  // namespace tldr
