// The progress bar every vqm tool uses for long work (calibration, interval search, evaluation,
// benchmarking): one line on stderr with percentage, count, rate and ETA, redrawn at most ten
// times a second. It draws only when stderr is a terminal and --quiet was not given, so logs,
// pipes and CI output stay clean; results always go to stdout.
#pragma once
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace vqm::app {

// True when bars should be drawn: stderr is a terminal and the user did not ask for quiet.
bool progress_wanted(bool quiet);

// "0:07", "12:34", "1:02:03" (seconds rounded up, so an ETA never reads 0:00 before the end).
std::string format_duration(double seconds);

// One bar line without terminal control codes, at most `width` characters:
// "label  42% [#####.......] 420/1000  35.2 images/s  ETA 0:16  detail".
// `unit` empty: no rate. done == total: the ETA gives way to the elapsed time.
std::string format_progress(const std::string &label, int64_t done, int64_t total,
                            double elapsed_seconds, const std::string &unit,
                            const std::string &detail, int width);

class ProgressBar {
 public:
  // `enabled` is normally progress_wanted(quiet); a disabled bar does nothing at all.
  ProgressBar(std::string label, std::string unit, bool enabled);
  ~ProgressBar();  // ends the line if something was drawn
  ProgressBar(const ProgressBar &) = delete;
  ProgressBar &operator=(const ProgressBar &) = delete;

  // Thread-safe. Redraws when 100 ms have passed since the last redraw, and always on the first
  // call and when done reaches total (which also ends the line).
  void update(int64_t done, int64_t total, const std::string &detail = "");
  // Adds `n` to the count (thread-safe; for workers that finish items in any order).
  void advance(int64_t n, int64_t total, const std::string &detail = "");
  // Ends the line (keeping the last state on screen) if it is not ended yet.
  void finish();
  // Erases the line instead (for bars between result lines on stdout, as in vit-bench).
  void clear();

 private:
  void draw(bool final);

  std::string label_, unit_, detail_;
  bool enabled_;
  bool drawn_ = false, finished_ = false;
  int64_t done_ = 0, total_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::mutex mutex_;
};

}  // namespace vqm::app
