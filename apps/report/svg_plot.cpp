#include "apps/report/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace vqm::quant {

namespace {

std::string num(double v) {  // SVG coordinates
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// About `want` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart).
std::vector<double> nice_ticks(double lo, double hi, int want) {
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / want;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::floor(lo / step) * step; v <= hi + step * 1e-9; v += step)
    t.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

}  // namespace

std::string html_escape(const std::string &s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string short_number(double v) {
  char buf[32];
  const double a = std::fabs(v);
  if (a != 0 && (a >= 1e5 || a < 1e-3)) {
    std::snprintf(buf, sizeof buf, "%.1e", v);
    std::string s = buf;  // 1.0e-05 -> 1e-05
    const auto dot = s.find(".0e");
    if (dot != std::string::npos) s.erase(dot, 2);
    return s;
  }
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string svg_plot(const PlotSpec &spec, const std::vector<PlotSeries> &series) {
  const bool categorical = !spec.categories.empty();
  const double inf = std::numeric_limits<double>::infinity();
  auto usable = [&](double y) { return std::isfinite(y) && (!spec.log_y || y > 0); };

  // Data ranges.
  double x_lo = inf, x_hi = -inf, y_lo = inf, y_hi = -inf;
  bool has_bars = false;
  int bar_series = 0;
  for (const auto &s : series) {
    if (s.style == PlotSeries::Style::bars) {
      has_bars = true;
      ++bar_series;
    }
    for (const auto &[x, y] : s.points) {
      if (!usable(y) || !std::isfinite(x)) continue;
      x_lo = std::min(x_lo, x), x_hi = std::max(x_hi, x);
      y_lo = std::min(y_lo, y), y_hi = std::max(y_hi, y);
    }
  }
  for (double m : spec.x_marks) x_lo = std::min(x_lo, m), x_hi = std::max(x_hi, m);
  if (!std::isfinite(x_lo)) x_lo = 0, x_hi = 1;
  if (!std::isfinite(y_lo)) y_lo = spec.log_y ? 1 : 0, y_hi = spec.log_y ? 10 : 1;
  if (spec.y_hi > spec.y_lo) y_lo = spec.y_lo, y_hi = spec.y_hi;
  if (!spec.log_y && (spec.y_from_zero || has_bars)) y_lo = std::min(y_lo, 0.0);

  // y axis: ticks and the mapped range.
  std::vector<std::pair<double, std::string>> y_ticks;
  double ty_lo, ty_hi;  // in axis units (log10 for log axes)
  if (spec.log_y) {
    ty_lo = std::floor(std::log10(y_lo));
    ty_hi = std::ceil(std::log10(y_hi));
    if (ty_hi <= ty_lo) ty_hi = ty_lo + 1;
    const int every = static_cast<int>(std::ceil((ty_hi - ty_lo) / 6));
    for (double e = ty_lo; e <= ty_hi; e += every)
      y_ticks.emplace_back(e, short_number(std::pow(10, e)));
  } else {
    if (!(y_hi > y_lo)) y_hi = y_lo + (y_lo == 0 ? 1 : std::fabs(y_lo) * 0.1);
    const auto t = nice_ticks(y_lo, y_hi, 5);
    ty_lo = std::min(t.front(), y_lo);
    ty_hi = std::max(t.back(), y_hi);
    for (double v : t) y_ticks.emplace_back(v, short_number(v));
  }

  // Layout: room for rotated category labels when they would not fit side by side.
  const int W = spec.width, H0 = spec.height;
  size_t longest = 0;
  for (const auto &c : spec.categories) longest = std::max(longest, c.size());
  const double left = 62, right = 14;
  const double band = categorical ? (W - left - right) / spec.categories.size() : 0;
  const bool rotate = categorical && longest * 6.2 > band - 4;
  const double extra = rotate ? std::min(90.0, longest * 4.6) : 0;
  const int H = static_cast<int>(H0 + extra);
  int legend_items = 0;
  for (const auto &s : series) legend_items += s.in_legend;
  const double top = 30 + (legend_items ? 18 : 0), bottom = 44 + extra;
  const double pw = W - left - right, ph = H - top - bottom;

  auto map_x = [&](double x) {
    if (categorical) return left + (x + 0.5) * band;
    const double pad = (x_hi - x_lo) * 0.03 + (x_hi == x_lo ? 0.5 : 0);
    return left + (x - (x_lo - pad)) / ((x_hi + pad) - (x_lo - pad)) * pw;
  };
  auto map_y = [&](double y) {
    const double v = spec.log_y ? std::log10(y) : y;
    return top + ph - (v - ty_lo) / (ty_hi - ty_lo) * ph;
  };

  std::ostringstream o;
  o << "<svg class=\"plot\" data-plot=\"" << html_escape(spec.id)
    << "\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << W << " " << H << "\" width=\""
    << W << "\" height=\"" << H << "\" role=\"img\">\n";
  o << "<title>" << html_escape(spec.title) << "</title>\n";
  o << "<text class=\"plot-title\" x=\"" << num(left) << "\" y=\"18\">" << html_escape(spec.title)
    << "</text>\n";
  // Legend.
  double lx = left;
  for (const auto &s : series) {
    if (!s.in_legend) continue;
    o << "<g class=\"legend\"><rect x=\"" << num(lx)
      << "\" y=\"28\" width=\"12\" height=\"8\" fill=\"" << s.color << "\"/><text x=\""
      << num(lx + 16) << "\" y=\"36\">" << html_escape(s.name) << "</text></g>\n";
    lx += 28 + 6.4 * s.name.size();
  }
  // Grid, y ticks.
  o << "<g class=\"axis\">\n";
  for (const auto &[v, label] : y_ticks) {
    const double y = top + ph - (v - ty_lo) / (ty_hi - ty_lo) * ph;
    o << "<line class=\"grid\" x1=\"" << num(left) << "\" x2=\"" << num(left + pw) << "\" y1=\""
      << num(y) << "\" y2=\"" << num(y) << "\"/><text class=\"tick\" x=\"" << num(left - 5)
      << "\" y=\"" << num(y + 3.5) << "\" text-anchor=\"end\">" << label << "</text>\n";
  }
  // x ticks.
  if (categorical) {
    for (size_t i = 0; i < spec.categories.size(); ++i) {
      const double x = map_x(static_cast<double>(i));
      if (rotate)
        o << "<text class=\"tick\" transform=\"translate(" << num(x + 3) << ","
          << num(top + ph + 12) << ") rotate(-40)\" text-anchor=\"end\">"
          << html_escape(spec.categories[i]) << "</text>\n";
      else
        o << "<text class=\"tick\" x=\"" << num(x) << "\" y=\"" << num(top + ph + 15)
          << "\" text-anchor=\"middle\">" << html_escape(spec.categories[i]) << "</text>\n";
    }
  } else {
    auto ticks = spec.x_ticks;
    if (ticks.empty())
      for (double v : nice_ticks(x_lo, x_hi, 6))
        if (v >= x_lo - (x_hi - x_lo) * 0.03 && v <= x_hi + (x_hi - x_lo) * 0.03)
          ticks.emplace_back(v, short_number(v));
    for (const auto &[v, label] : ticks)
      o << "<line class=\"tickmark\" x1=\"" << num(map_x(v)) << "\" x2=\"" << num(map_x(v))
        << "\" y1=\"" << num(top + ph) << "\" y2=\"" << num(top + ph + 4)
        << "\"/><text class=\"tick\" x=\"" << num(map_x(v)) << "\" y=\"" << num(top + ph + 15)
        << "\" text-anchor=\"middle\">" << html_escape(label) << "</text>\n";
  }
  o << "<line class=\"frame\" x1=\"" << num(left) << "\" x2=\"" << num(left + pw) << "\" y1=\""
    << num(top + ph) << "\" y2=\"" << num(top + ph) << "\"/>\n";
  o << "<line class=\"frame\" x1=\"" << num(left) << "\" x2=\"" << num(left) << "\" y1=\""
    << num(top) << "\" y2=\"" << num(top + ph) << "\"/>\n";
  o << "<text class=\"label\" x=\"" << num(left + pw / 2) << "\" y=\"" << num(H - 8)
    << "\" text-anchor=\"middle\">" << html_escape(spec.x_label) << "</text>\n";
  o << "<text class=\"label\" transform=\"translate(13," << num(top + ph / 2)
    << ") rotate(-90)\" text-anchor=\"middle\">" << html_escape(spec.y_label) << "</text>\n";
  o << "</g>\n";
  for (double m : spec.x_marks)
    o << "<line class=\"mark\" x1=\"" << num(map_x(m)) << "\" x2=\"" << num(map_x(m)) << "\" y1=\""
      << num(top) << "\" y2=\"" << num(top + ph) << "\"/>\n";

  // Series.
  int bar_index = 0;
  for (const auto &s : series) {
    std::vector<std::pair<double, double>> pts;
    for (const auto &p : s.points)
      if (usable(p.second) && std::isfinite(p.first)) pts.push_back(p);
    o << "<g class=\"series\" data-series=\"" << html_escape(s.name) << "\" data-points=\""
      << pts.size() << "\">\n";
    if (s.style == PlotSeries::Style::bars) {
      const double slot = band * 0.8 / std::max(1, bar_series);
      for (const auto &[x, y] : pts) {
        const double bx = left + x * band + band * 0.1 + slot * bar_index;
        const double y0 = map_y(spec.log_y ? std::pow(10, ty_lo) : std::max(0.0, ty_lo));
        const double y1 = map_y(y);
        o << "<rect x=\"" << num(bx) << "\" y=\"" << num(std::min(y0, y1)) << "\" width=\""
          << num(std::max(1.0, slot - 1)) << "\" height=\"" << num(std::fabs(y0 - y1))
          << "\" fill=\"" << s.color << "\"><title>" << html_escape(s.name) << ": "
          << short_number(y) << "</title></rect>\n";
        if (spec.value_labels)
          o << "<text class=\"value\" x=\"" << num(bx + slot / 2) << "\" y=\""
            << num(std::min(y0, y1) - 3) << "\" text-anchor=\"middle\">" << short_number(y)
            << "</text>\n";
      }
      ++bar_index;
    } else {
      if (s.style != PlotSeries::Style::markers && pts.size() > 1) {
        o << "<polyline fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"1.6\""
          << (s.dashed ? " stroke-dasharray=\"5 3\"" : "") << " points=\"";
        for (const auto &[x, y] : pts) o << num(map_x(x)) << "," << num(map_y(y)) << " ";
        o << "\"/>\n";
      }
      if (s.style != PlotSeries::Style::line) {
        const double r = pts.size() == 1 ? 5 : pts.size() > 60 ? 1.8 : 2.8;
        for (const auto &[x, y] : pts)
          o << "<circle cx=\"" << num(map_x(x)) << "\" cy=\"" << num(map_y(y)) << "\" r=\"" << r
            << "\" fill=\"" << s.color << "\"><title>" << html_escape(s.name) << ": "
            << (categorical && x >= 0 && x < static_cast<double>(spec.categories.size())
                    ? html_escape(spec.categories[static_cast<size_t>(x)])
                    : short_number(x))
            << ", " << short_number(y) << "</title></circle>\n";
      }
    }
    o << "</g>\n";
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace vqm::quant
