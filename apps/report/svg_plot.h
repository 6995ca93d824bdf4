// Hand-written SVG charts for the HTML quantization report (report_html.cpp): lines, markers and
// grouped bars on linear or log axes, with ticks, labels and a legend. No scripts, no fonts or
// files from elsewhere: the markup is inlined into a page that must open offline.
//
// Each chart is <svg class="plot" data-plot=ID> and each series a <g class="series"
// data-series=NAME data-points=N>, so tests (and curious readers of the source) can check what
// a plot holds without rendering it.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace vqm::quant {

struct PlotSeries {
  enum class Style { line, markers, line_markers, bars };
  std::string name;   // legend text and data-series
  std::string color;  // CSS colour
  Style style = Style::line_markers;
  std::vector<std::pair<double, double>> points;  // (x, y); bars: x is the category index
  bool dashed = false;
  bool in_legend = true;
};

struct PlotSpec {
  std::string id;  // data-plot
  std::string title, x_label, y_label;
  bool log_y = false;  // non-positive y values are left out of log plots
  // Categorical x axis (bars, or points at 0..K-1): one label per category.
  std::vector<std::string> categories;
  // Explicit x ticks (value, label) for numeric axes; empty: automatic.
  std::vector<std::pair<double, std::string>> x_ticks;
  // Fixed y range (both set) instead of the data's; y_from_zero: linear axis starts at 0.
  double y_lo = 0, y_hi = 0;
  bool y_from_zero = false;
  std::vector<double> x_marks;  // vertical guide lines (e.g. the chosen interval)
  bool value_labels = false;    // bars: print each bar's value above it
  int width = 520, height = 300;
};

std::string svg_plot(const PlotSpec &spec, const std::vector<PlotSeries> &series);

// Escapes &, <, >, " and ' for HTML text and attribute values.
std::string html_escape(const std::string &s);

// "0.123", "1.2e-05": short, for tick and value labels.
std::string short_number(double v);

}  // namespace vqm::quant
