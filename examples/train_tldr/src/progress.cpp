#include "progress.hpp"

#include "ranks.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cmath>

namespace tldr {

std::string format_duration(double s) {
  char buf[32];
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%dm %02ds", int(s) / 60, int(s) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dh %02dm", int(s) / 3600, int(s) % 3600 / 60);
  return buf;
}

progress::progress(std::string label, std::int64_t total, std::string unit, std::int64_t start)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(std::max<std::int64_t>(total, 1)),
      done_(start),
      start_(start),
      begin_(std::chrono::steady_clock::now()),
      last_draw_(begin_),
      tty_(isatty(STDERR_FILENO) != 0) {
  draw(false);
}

progress::~progress() {
  if (!finished_) finish(status_);
}

double progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - begin_).count();
}

void progress::advance(std::int64_t by, const std::string& status) { set(done_ + by, status); }

void progress::set(std::int64_t done, const std::string& status) {
  done_ = std::min(done, total_);
  if (!status.empty()) status_ = status;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since >= (tty_ ? 0.2 : 10.0)) draw(false);
}

void progress::finish(const std::string& status) {
  if (finished_) return;
  if (!status.empty()) status_ = status;
  done_ = total_;
  draw(true);
  finished_ = true;
}

void progress::draw(bool final) {
  last_draw_ = std::chrono::steady_clock::now();
  if (!ranks().is_main()) return;  // data parallel: one bar, rank 0's
  const double elapsed = elapsed_seconds();
  // The rate counts only this session's work: a resumed stage starts at `start_`.
  const double rate = elapsed > 0 ? double(done_ - start_) / elapsed : 0.0;
  const double eta = rate > 0 ? double(total_ - done_) / rate : NAN;
  const double fraction = double(done_) / double(total_);
  constexpr int width = 24;
  std::string bar(width, ' ');
  std::fill_n(bar.begin(), int(fraction * width), '#');
  // Slow units read better as seconds per unit than as a rate of 0.0.
  char speed[48];
  if (rate >= 1.0 || rate <= 0.0)
    std::snprintf(speed, sizeof speed, "%.1f %s/s", rate, unit_.c_str());
  else
    std::snprintf(speed, sizeof speed, "%.1f s/%s", 1.0 / rate, unit_.c_str());
  char line[512];
  std::snprintf(line, sizeof line, "%-14s [%s] %3d%% %lld/%lld %s  %s  %s%s%s%s", label_.c_str(), bar.c_str(),
                int(fraction * 100), static_cast<long long>(done_), static_cast<long long>(total_), unit_.c_str(),
                speed, final ? "took " : "ETA ", format_duration(final ? elapsed : eta).c_str(),
                status_.empty() ? "" : "  ", status_.c_str());
  if (tty_)
    std::fprintf(stderr, "\r\033[K%s%s", line, final ? "\n" : "");
  else
    std::fprintf(stderr, "%s\n", line);
  std::fflush(stderr);
}

}  // namespace tldr
