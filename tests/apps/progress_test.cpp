// The progress bar's line: percentage, bar, count, rate and ETA, within the terminal width.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "apps/progress.h"

namespace vqm::app {
namespace {

TEST(Progress, DurationsRoundUp) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(0.2), "0:01");
  EXPECT_EQ(format_duration(59.2), "1:00");
  EXPECT_EQ(format_duration(3725), "1:02:05");
  EXPECT_EQ(format_duration(-3), "0:00");
}

TEST(Progress, LineHasPercentBarCountRateAndEta) {
  // 420 of 1000 in 10 s: 42 images/s, 580 left at that rate is 13.8 s, shown as 0:14.
  EXPECT_EQ(format_progress("eval", 420, 1000, 10.0, "images", "t10k", 120),
            "eval  42% [############..................] 420/1000  42.0 images/s  ETA 0:14  t10k");
  // Done: the elapsed time replaces the ETA.
  EXPECT_EQ(format_progress("eval", 1000, 1000, 8.0, "images", "", 120),
            "eval 100% [##############################] 1000/1000  125 images/s  0:08");
  // Slow steps read as seconds per item; no unit, no rate; nothing done yet, no ETA.
  EXPECT_EQ(format_progress("search", 3, 74, 30.0, "layers", "", 80),
            "search   4% [#.........................] 3/74  10.0 s/layer  ETA 11:50");
  EXPECT_EQ(format_progress("", 0, 10, 0.0, "", "", 80), "  0% [..........................] 0/10");
  // Narrow terminals: cut, never wrapped.
  EXPECT_EQ(format_progress("a-long-label", 1, 2, 1.0, "x", "detail", 30).size(), 30u);
}

// What a bar writes to stderr while `body` runs.
template <class F>
std::string captured_stderr(F &&body) {
  std::fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  FILE *tmp = std::tmpfile();
  dup2(fileno(tmp), STDERR_FILENO);
  body();
  std::fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::string out;
  std::rewind(tmp);
  for (int c; (c = std::fgetc(tmp)) != EOF;) out += static_cast<char>(c);
  std::fclose(tmp);
  return out;
}

TEST(Progress, DisabledBarWritesNothing) {
  const std::string err = captured_stderr([] {
    ProgressBar bar("x", "items", false);
    for (int i = 0; i <= 10; ++i) bar.update(i, 10);
    bar.advance(1, 10);
    bar.finish();
  });
  EXPECT_EQ(err, "");
}

TEST(Progress, EnabledBarRedrawsInPlaceAndEndsTheLine) {
  const std::string err = captured_stderr([] {
    ProgressBar bar("x", "items", true);
    for (int i = 0; i <= 1000; ++i) bar.update(i, 1000);  // throttled: far fewer redraws
    bar.update(1000, 1000);                               // after the end: nothing more
  });
  EXPECT_EQ(err.rfind("\r\033[Kx   0% [", 0), 0u) << err;  // the first call always draws
  EXPECT_NE(err.find("1000/1000"), std::string::npos);
  EXPECT_EQ(err.back(), '\n');
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1);
  EXPECT_LT(std::count(err.begin(), err.end(), '\r'), 20);
  // clear() erases an unfinished line instead of keeping it.
  const std::string cleared = captured_stderr([] {
    ProgressBar bar("y", "", true);
    bar.update(1, 4);
    bar.clear();
    bar.update(4, 4);
  });
  EXPECT_EQ(cleared.substr(cleared.size() - 4), "\r\033[K");
  EXPECT_EQ(cleared.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace vqm::app
