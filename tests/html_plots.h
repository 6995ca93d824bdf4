// Reads back what the HTML report's plots hold (apps/report/svg_plot.h marks every chart with
// data-plot and every series with data-series / data-points), for the report tests. Plain string
// search: GCC 12 with sanitizers warns (falsely) inside <regex>.
#pragma once
#include <gtest/gtest.h>

#include <map>
#include <string>

namespace vqm::test {

// The value of attribute `name` (as `name="`) at or after `from` and before `end`; "" if none.
inline std::string html_attribute(const std::string &s, const std::string &name, size_t from,
                                  size_t end, size_t *after = nullptr) {
  const std::string key = name + "=\"";
  const size_t p = s.find(key, from);
  if (p == std::string::npos || p >= end) return "";
  const size_t q = s.find('"', p + key.size());
  if (after) *after = q;
  return s.substr(p + key.size(), q - p - key.size());
}

// plot id -> (series name -> points).
inline std::map<std::string, std::map<std::string, int>> html_plots(const std::string &html) {
  std::map<std::string, std::map<std::string, int>> out;
  const std::string open = "<svg class=\"plot\" data-plot=\"";
  for (size_t start = html.find(open); start != std::string::npos;
       start = html.find(open, start + 1)) {
    const size_t end = html.find("</svg>", start);
    EXPECT_NE(end, std::string::npos) << "unterminated plot";
    auto &series = out[html_attribute(html, "data-plot", start, end)];
    for (size_t p = html.find("data-series=\"", start); p < end;
         p = html.find("data-series=\"", p + 1)) {
      size_t after = p;
      const std::string name = html_attribute(html, "data-series", p, end, &after);
      series[name] = std::stoi(html_attribute(html, "data-points", after, end));
    }
  }
  return out;
}

}  // namespace vqm::test
