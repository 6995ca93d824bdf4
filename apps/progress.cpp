#include "apps/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace vqm::app {

namespace {

int terminal_width() {
  winsize ws{};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
  return 80;
}

std::string format_rate(double per_second, const std::string &unit) {
  char buf[64];
  if (per_second >= 100)
    std::snprintf(buf, sizeof buf, "%.0f %s/s", per_second, unit.c_str());
  else if (per_second >= 1 || per_second == 0)
    std::snprintf(buf, sizeof buf, "%.1f %s/s", per_second, unit.c_str());
  else  // slow steps (a layer search on a big model): seconds per item reads better
    std::snprintf(buf, sizeof buf, "%.1f s/%s", 1 / per_second,
                  unit.substr(0, unit.size() - (unit.back() == 's')).c_str());
  return buf;
}

}  // namespace

bool progress_wanted(bool quiet) {
  return !quiet && isatty(STDERR_FILENO);
}

std::string format_duration(double seconds) {
  const long s = std::max(0L, static_cast<long>(std::ceil(seconds)));
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

std::string format_progress(const std::string &label, int64_t done, int64_t total,
                            double elapsed_seconds, const std::string &unit,
                            const std::string &detail, int width) {
  total = std::max<int64_t>(total, 1);
  done = std::clamp<int64_t>(done, 0, total);
  const double frac = static_cast<double>(done) / static_cast<double>(total);
  char pct[8];
  std::snprintf(pct, sizeof pct, "%3d%%", static_cast<int>(100 * frac));
  std::string tail = " " + std::to_string(done) + "/" + std::to_string(total);
  if (!unit.empty() && elapsed_seconds > 0 && done > 0)
    tail += "  " + format_rate(static_cast<double>(done) / elapsed_seconds, unit);
  if (done == total)
    tail += "  " + format_duration(elapsed_seconds);
  else if (done > 0)
    tail += "  ETA " + format_duration(elapsed_seconds / frac - elapsed_seconds);
  std::string head = label.empty() ? std::string(pct) : label + " " + pct;
  // The bar takes what is left of a third of the line, between 10 and 30 characters.
  const int bar = std::clamp(width / 3, 10, 30);
  std::string line = head + " [";
  const int filled = static_cast<int>(frac * bar);
  line += std::string(static_cast<size_t>(filled), '#') +
          std::string(static_cast<size_t>(bar - filled), '.') + "]" + tail;
  if (!detail.empty()) line += "  " + detail;
  if (static_cast<int>(line.size()) > width) line.resize(static_cast<size_t>(std::max(width, 0)));
  return line;
}

ProgressBar::ProgressBar(std::string label, std::string unit, bool enabled)
    : label_(std::move(label)), unit_(std::move(unit)), enabled_(enabled) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

ProgressBar::~ProgressBar() {
  finish();
}

void ProgressBar::update(int64_t done, int64_t total, const std::string &detail) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  done_ = done;
  total_ = total;
  detail_ = detail;
  draw(false);
}

void ProgressBar::advance(int64_t n, int64_t total, const std::string &detail) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  done_ += n;
  total_ = total;
  if (!detail.empty()) detail_ = detail;
  draw(false);
}

void ProgressBar::finish() {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (drawn_ && !finished_) draw(true);
}

void ProgressBar::clear() {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (drawn_ && !finished_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  finished_ = true;
}

void ProgressBar::draw(bool final) {
  if (finished_) return;
  const auto now = std::chrono::steady_clock::now();
  const bool complete = total_ > 0 && done_ >= total_;
  if (drawn_ && !final && !complete && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  drawn_ = true;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  // \r + erase-line redraws in place; the width leaves the last column free so that a full
  // line never wraps on terminals that wrap eagerly.
  const std::string line =
      format_progress(label_, done_, total_, elapsed, unit_, detail_, terminal_width() - 1);
  std::fprintf(stderr, "\r\033[K%s", line.c_str());
  if (complete || final) {
    std::fputc('\n', stderr);
    finished_ = true;
  }
  std::fflush(stderr);
}

}  // namespace vqm::app
