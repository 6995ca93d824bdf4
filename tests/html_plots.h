// Reads back what the HTML report's plots hold (quantizer/svg_plot.h marks every chart with
// data-plot and every series with data-series / data-points), for the report tests.
#pragma once
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <string>

namespace vqm::test {

// plot id -> (series name -> points).
inline std::map<std::string, std::map<std::string, int>> html_plots(const std::string &html) {
  std::map<std::string, std::map<std::string, int>> out;
  const std::regex svg_re("<svg class=\"plot\" data-plot=\"([^\"]*)\"");
  const std::regex series_re("data-series=\"([^\"]*)\" data-points=\"([0-9]+)\"");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), svg_re);
       it != std::sregex_iterator(); ++it) {
    const size_t start = static_cast<size_t>(it->position(0));
    const size_t end = html.find("</svg>", start);
    EXPECT_NE(end, std::string::npos) << "unterminated plot " << (*it)[1];
    const std::string svg = html.substr(start, end - start);
    auto &series = out[(*it)[1].str()];
    for (auto s = std::sregex_iterator(svg.begin(), svg.end(), series_re);
         s != std::sregex_iterator(); ++s)
      series[(*s)[1].str()] = std::stoi((*s)[2].str());
  }
  return out;
}

}  // namespace vqm::test
