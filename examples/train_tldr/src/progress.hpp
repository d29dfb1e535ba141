#pragma once
// A progress bar for long stages: done/total, rate, elapsed and ETA on one line of stderr. On a
// terminal it redraws in place; otherwise (logs, CI) it prints a line at most every 10 s, so a
// piped run still shows that it is alive without flooding the log.

#include <chrono>
#include <cstdint>
#include <string>

namespace tldr {

class progress {
 public:
  /// `unit` names what is counted ("steps", "samples", "tokens").
  progress(std::string label, std::int64_t total, std::string unit = "steps", std::int64_t start = 0);
  ~progress();  ///< prints the final line (unless finish() already did)
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;

  void advance(std::int64_t by = 1, const std::string& status = {});
  void set(std::int64_t done, const std::string& status = {});
  void finish(const std::string& status = {});
  [[nodiscard]] double elapsed_seconds() const;

 private:
  void draw(bool final);
  std::string label_, unit_, status_;
  std::int64_t total_, done_, start_;
  std::chrono::steady_clock::time_point begin_, last_draw_;
  bool tty_, finished_ = false;
};

/// "1m 23s", "4.2s".
std::string format_duration(double seconds);

}  // namespace tldr
