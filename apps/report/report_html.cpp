#include "apps/report/report_html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "apps/report/svg_plot.h"
#include "runtime/io/error.h"
#include "runtime/io/format.h"

namespace vqm::quant {

namespace {

using Style = PlotSeries::Style;

const char *const kCss = R"(
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;
 max-width:1100px;margin:24px auto;padding:0 16px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px;border-bottom:1px solid #ddd;
 padding-bottom:3px}p.note{color:#555;margin:4px 0 8px;max-width:900px}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px 3px 0;text-align:left}
th{color:#555;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.layers td,table.layers th{border-bottom:1px solid #eee}
.grid2{display:flex;flex-wrap:wrap;gap:8px 20px}
svg.plot{font-size:11px;background:#fff;max-width:100%;height:auto}
svg .plot-title{font-size:13px;font-weight:600;fill:#1d1d1f}
svg .tick{fill:#444}svg .label{fill:#333;font-size:12px}svg .grid{stroke:#e6e6e6}
svg .frame{stroke:#888}svg .tickmark{stroke:#888}svg .mark{stroke:#d62728;stroke-dasharray:4 3}
svg .value{fill:#333;font-size:10px}svg .legend text{fill:#333}
details summary{cursor:pointer;color:#0b57d0}
)";

const char *const kGray = "#9a9a9a";
const char *const kBlue = "#1f77b4";
const char *const kOrange = "#ff7f0e";

std::string bits_color(int bits) {
  switch (bits) {
    case 2:
      return "#8c564b";
    case 3:
      return "#d62728";
    case 4:
      return "#ff7f0e";
    case 5:
      return "#2ca02c";
    case 6:
      return "#1f77b4";
    case 7:
      return "#17becf";
    default:
      return "#9467bd";
  }
}

PlotSpec plot_spec(const std::string &id, const std::string &title, const std::string &x_label,
                   const std::string &y_label) {
  PlotSpec s;
  s.id = id;
  s.title = title;
  s.x_label = x_label;
  s.y_label = y_label;
  return s;
}

std::string fmt(const char *f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// Block index and kind of a module name "blocks.3.attn"; -1 if it is not one.
int module_block(const std::string &name, bool *attn) {
  int block = -1;
  char kind[8] = {};
  if (std::sscanf(name.c_str(), "blocks.%d.%7s", &block, kind) != 2) return -1;
  *attn = std::string(kind) == "attn";
  return block;
}

std::string summary(const PtqReport &r, const ReportContext &c) {
  std::ostringstream o;
  auto row = [&](const std::string &k, const std::string &v) {
    o << "<tr><th>" << html_escape(k) << "</th><td>" << html_escape(v) << "</td></tr>\n";
  };
  o << "<table class=\"summary\">\n";
  row("fp32 model", c.model_path);
  row("quantized model", c.output_path);
  row("method", c.method + ", " + c.bits_mode);
  row("stages", r.stages_text());
  row("average weight bits", fmt("%.2f (parameter-weighted, MSA and MLP weights)", r.avg_bits));
  row("calibration", c.calibration);
  if (c.fp32_bytes > 0 && c.quant_bytes > 0)
    row("file size", fmt("%.2f MB", c.fp32_bytes / 1e6) + " → " +
                         fmt("%.2f MB", c.quant_bytes / 1e6) +
                         fmt(" (%.1fx smaller)", double(c.fp32_bytes) / c.quant_bytes));
  row("layers searched", std::to_string(r.layers.size()) + fmt(", %.1f s", r.seconds));
  if (c.accuracy)
    row("accuracy (top-1)",
        fmt("fp32 %.4f", c.accuracy->fp32_top1) + fmt(", quantized %.4f", c.accuracy->quant_top1) +
            fmt(" (%+.2f points) on ", 100 * (c.accuracy->quant_top1 - c.accuracy->fp32_top1)) +
            c.accuracy->data);
  if (c.accuracy)
    row("agreement with fp32", fmt("top-1 %.2f %%", 100 * c.accuracy->top1_agreement) +
                                   fmt(", logit cosine mean %.6f", c.accuracy->cosine_mean) +
                                   fmt(", worst image %.6f", c.accuracy->cosine_min));
  o << "</table>\n";
  return o.str();
}

std::string bits_section(const PtqReport &r, int depth) {
  PlotSpec spec = plot_spec("bits", "Weight and activation bits per module", "block", "bits");
  spec.y_lo = 0, spec.y_hi = 8;
  spec.width = 1060;
  for (int l = 0; l < depth; ++l) spec.categories.push_back(std::to_string(l));
  PlotSeries attn{"MSA (attn)", kBlue, Style::bars, {}}, mlp{"MLP", kOrange, Style::bars, {}};
  for (const auto &m : r.modules) {
    bool is_attn = false;
    const int l = module_block(m.name, &is_attn);
    if (l >= 0) (is_attn ? attn : mlp).points.emplace_back(l, m.bits);
  }
  return "<h2>Bits per module</h2>\n" + svg_plot(spec, {attn, mlp});
}

std::string sensitivity_section(const PtqReport &r, int depth) {
  std::ostringstream o;
  o << "<h2>Nuclear-norm sensitivity per module</h2>\n";
  bool any = false;
  for (const auto &m : r.modules) any |= !m.sensitivity.empty();
  if (!any) {
    o << "<p class=\"note\">Not measured: the sensitivity Ω and the Pareto frontier come from "
         "mixed precision (<code>--mixed</code>, <code>--size-budget</code>) or "
         "<code>--sensitivity</code>.</p>\n";
    return o.str();
  }
  o << "<p class=\"note\">Ω(b) = (nuclear norm of the module's attention map or output feature, "
       "relative to the mean of its kind) × squared error, when only that module is quantized at "
       "b bits, of the network's output feature (the default) or of the module's own output "
       "(<code>--sensitivity-at module</code>). Black dots mark the bits chosen.</p>\n"
    << "<div class=\"grid2\">\n";
  for (bool attn : {true, false}) {
    PlotSpec spec =
        plot_spec(attn ? "sensitivity-attn" : "sensitivity-mlp",
                  std::string("Ω per ") + (attn ? "MSA" : "MLP") + " module", "block", "Ω (log)");
    spec.log_y = true;
    std::map<int, PlotSeries> per_bits;
    PlotSeries chosen{"chosen", "#000", Style::markers, {}};
    for (const auto &m : r.modules) {
      bool is_attn = false;
      const int l = module_block(m.name, &is_attn);
      if (l < 0 || is_attn != attn) continue;
      for (const auto &[b, v] : m.sensitivity) {
        auto &s = per_bits[b];
        s.name = std::to_string(b) + " bits";
        s.color = bits_color(b);
        s.points.emplace_back(l, v);
      }
      if (m.sensitivity.count(m.bits)) chosen.points.emplace_back(l, m.sensitivity.at(m.bits));
    }
    std::vector<PlotSeries> series;
    for (auto &[b, s] : per_bits) series.push_back(s);
    series.push_back(chosen);
    if (depth <= 24)
      for (int l = 0; l < depth; ++l) spec.x_ticks.emplace_back(l, std::to_string(l));
    o << svg_plot(spec, series);
  }
  // The nuclear norms themselves, relative to the mean of each kind (as they enter Ω).
  PlotSpec spec = plot_spec("nuclear-norm", "Nuclear norm relative to the mean of its kind",
                            "block", "relative nuclear norm");
  spec.y_from_zero = true;
  PlotSeries attn{"MSA", kBlue, Style::line_markers, {}},
      mlp{"MLP", kOrange, Style::line_markers, {}};
  double mean[2] = {0, 0};
  int count[2] = {0, 0};
  for (const auto &m : r.modules) {
    bool is_attn = false;
    if (module_block(m.name, &is_attn) < 0) continue;
    mean[is_attn] += m.nuclear_norm;
    count[is_attn]++;
  }
  for (const auto &m : r.modules) {
    bool is_attn = false;
    const int l = module_block(m.name, &is_attn);
    if (l < 0 || !(mean[is_attn] > 0)) continue;
    (is_attn ? attn : mlp)
        .points.emplace_back(l, m.nuclear_norm / (mean[is_attn] / count[is_attn]));
  }
  if (depth <= 24)
    for (int l = 0; l < depth; ++l) spec.x_ticks.emplace_back(l, std::to_string(l));
  o << svg_plot(spec, {attn, mlp}) << "</div>\n";
  return o.str();
}

std::string frontier_section(const PtqReport &r) {
  std::ostringstream o;
  o << "<h2>Pareto frontier: size vs predicted error</h2>\n";
  if (r.frontier.empty()) {
    o << "<p class=\"note\">Not measured (see above).</p>\n";
    return o.str();
  }
  o << "<p class=\"note\">Every configuration on the frontier is the least total Ω for its size "
       "of MSA and MLP weights; the budget picks the last one that fits.</p>\n";
  PlotSpec spec =
      plot_spec("pareto", "Pareto frontier", "MSA + MLP weights (MB)", "predicted error Σ Ω (log)");
  spec.log_y = true;
  spec.width = 1060;
  PlotSeries front{"frontier", kBlue, Style::line_markers, {}};
  for (const auto &[bits, err] : r.frontier) front.points.emplace_back(bits / 8e6, err);
  PlotSeries chosen{"chosen", "#d62728", Style::markers, {}};
  double cost = 0, err = 0;
  bool known = !r.modules.empty();
  for (const auto &m : r.modules) {
    auto it = m.sensitivity.find(m.bits);
    if (it == m.sensitivity.end()) {
      known = false;
      break;
    }
    cost += double(m.params) * m.bits;
    err += it->second;
  }
  if (known) chosen.points.emplace_back(cost / 8e6, err);
  o << svg_plot(spec, {front, chosen});
  return o.str();
}

std::string similarity_section(const PtqReport &r) {
  PlotSpec spec =
      plot_spec("similarity", "Output similarity per layer, before and after the interval search",
                "layer (network order; b = block)", "1 − Pearson (log, lower is better)");
  spec.log_y = true;
  spec.width = 1060;
  PlotSeries before{"before search (max-based intervals)", kGray, Style::line_markers, {}};
  PlotSeries after{"after search", kBlue, Style::line_markers, {}};
  int last_block = -1;
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const auto &l = r.layers[i];
    // 1 - r is clamped at 1e-9 so a perfect layer stays on the plot.
    before.points.emplace_back(i, std::max(1e-9, 1 - l.similarity_init));
    after.points.emplace_back(i, std::max(1e-9, 1 - l.similarity));
    int block = -1;
    if (std::sscanf(l.name.c_str(), "blocks.%d.", &block) == 1 && block != last_block) {
      if (block % std::max<int>(1, static_cast<int>(r.layers.size()) / 80 + 1) == 0)
        spec.x_ticks.emplace_back(i, "b" + std::to_string(block));
      last_block = block;
    }
  }
  std::ostringstream o;
  o << "<h2>Similarity per layer</h2>\n<p class=\"note\">Mean Pearson correlation between each "
       "layer's fp32 output and its quantized output over the calibration images (Q·Kᵀ and A·V: "
       "the attention products), measured before the search with max-based intervals and after "
       "it (after bias correction for linear layers).</p>\n"
    << svg_plot(spec, {before, after});
  return o.str();
}

// Up to four layers worth looking at: first qkv, middle Q·Kᵀ, last fc2, the biggest gain.
std::vector<size_t> curve_layers(const PtqReport &r, int depth) {
  std::vector<size_t> out;
  auto add = [&](size_t i) {
    if (i < r.layers.size() && r.layers[i].curve.size() > 1 &&
        std::find(out.begin(), out.end(), i) == out.end())
      out.push_back(i);
  };
  auto find = [&](const std::string &name) {
    for (size_t i = 0; i < r.layers.size(); ++i)
      if (r.layers[i].name == name) return i;
    return r.layers.size();
  };
  add(find("blocks.0.attn.qkv"));
  add(find("blocks." + std::to_string(depth / 2) + ".attn.q@k"));
  add(find("blocks." + std::to_string(std::max(0, depth - 1)) + ".mlp.fc2"));
  size_t best = r.layers.size();
  double gain = -1;
  for (size_t i = 0; i < r.layers.size(); ++i)
    if (std::find(out.begin(), out.end(), i) == out.end() && r.layers[i].curve.size() > 1 &&
        r.layers[i].similarity - r.layers[i].similarity_init > gain) {
      gain = r.layers[i].similarity - r.layers[i].similarity_init;
      best = i;
    }
  add(best);
  for (size_t i = 0; out.size() < 4 && i < r.layers.size(); ++i) add(i);
  return out;
}

std::string curves_section(const PtqReport &r, int depth) {
  std::ostringstream o;
  o << "<h2>Search curves</h2>\n";
  const auto chosen = curve_layers(r, depth);
  if (chosen.empty()) {
    o << "<p class=\"note\">No search curves: the method was a baseline without search, or the "
         "search had a single candidate or no rounds.</p>\n";
    return o.str();
  }
  o << "<p class=\"note\">The objective (mean Pearson; minus γ × ranking loss for Q·Kᵀ) over the "
       "candidate intervals of the input activation (Q for Q·Kᵀ, A for A·V) in the last round of "
       "the alternating search, with the other operand fixed. The dashed line is the interval "
       "kept.</p>\n<div class=\"grid2\">\n";
  for (size_t i : chosen) {
    const auto &l = r.layers[i];
    PlotSpec spec =
        plot_spec("curve:" + l.name, l.name + " (" + std::to_string(l.x_bits) + " bits)",
                  "interval Δ", "objective");
    spec.height = 260;
    spec.x_marks = {l.x_delta};
    PlotSeries s{"objective", kBlue, Style::line_markers, {}};
    s.in_legend = false;
    for (const auto &[d, v] : l.curve) s.points.emplace_back(d, v);
    o << svg_plot(spec, {s});
  }
  o << "</div>\n";
  return o.str();
}

std::string accuracy_section(const ReportContext &c) {
  std::ostringstream o;
  o << "<h2>Accuracy: fp32 vs quantized</h2>\n";
  if (!c.accuracy) {
    o << "<p class=\"note\">Not measured: pass <code>--eval-data SRC</code> (labelled idx files "
         "or an image folder) to vit-quantize.</p>\n";
    return o.str();
  }
  const AccuracyComparison &a = *c.accuracy;
  o << "<p class=\"note\">" << html_escape(a.data) << ": " << a.n << " images.</p>\n"
    << "<div class=\"grid2\">\n";
  PlotSpec spec = plot_spec("accuracy", "Top-1 and top-5 accuracy", "", "accuracy");
  spec.categories = {"top-1", "top-5"};
  spec.y_lo = 0, spec.y_hi = 1;
  spec.value_labels = true;
  spec.width = 360;
  o << svg_plot(spec, {{"fp32", kGray, Style::bars, {{0, a.fp32_top1}, {1, a.fp32_top5}}},
                       {"quantized", kBlue, Style::bars, {{0, a.quant_top1}, {1, a.quant_top5}}}});
  const size_t classes = a.class_names.size();
  if (classes > 0 && classes <= 40) {
    PlotSpec pc = plot_spec("accuracy-per-class", "Top-1 accuracy per class", "", "top-1");
    pc.categories = a.class_names;
    pc.y_lo = 0, pc.y_hi = 1;
    pc.width = 680;
    PlotSeries f{"fp32", kGray, Style::bars, {}}, q{"quantized", kBlue, Style::bars, {}};
    for (size_t k = 0; k < classes; ++k) {
      f.points.emplace_back(k, a.fp32_class_top1[k]);
      q.points.emplace_back(k, a.quant_class_top1[k]);
    }
    o << svg_plot(pc, {f, q});
  }
  o << "</div>\n<table><tr><th></th><th>top-1</th><th>top-5</th></tr>\n"
    << "<tr><th>fp32</th><td class=\"num\">" << fmt("%.4f", a.fp32_top1)
    << "</td><td class=\"num\">" << fmt("%.4f", a.fp32_top5)
    << "</td></tr>\n<tr><th>quantized</th><td class=\"num\">" << fmt("%.4f", a.quant_top1)
    << "</td><td class=\"num\">" << fmt("%.4f", a.quant_top5) << "</td></tr>\n</table>\n"
    << "<p>Top-1 agreement with fp32: " << fmt("%.2f %%", 100 * a.top1_agreement)
    << " of the images keep fp32's class; logit cosine to fp32 mean " << fmt("%.6f", a.cosine_mean)
    << ", worst image " << fmt("%.6f", a.cosine_min) << ".</p>\n";
  return o.str();
}

std::string layer_table(const PtqReport &r) {
  std::ostringstream o;
  o << "<details><summary>Every layer (" << r.layers.size()
    << ")</summary>\n<table class=\"layers\">"
    << "<tr><th>layer</th><th>kind</th><th>bits</th><th>Δ input</th><th>zero point</th>"
       "<th>Pearson before</th><th>after</th><th>rank loss before</th><th>after</th></tr>\n";
  for (const auto &l : r.layers) {
    o << "<tr><td>" << html_escape(l.name) << "</td><td>" << l.kind << "</td><td class=\"num\">"
      << l.x_bits << "</td><td class=\"num\">" << short_number(l.x_delta)
      << "</td><td class=\"num\">" << l.x_zero_point << "</td><td class=\"num\">"
      << fmt("%.6f", l.similarity_init) << "</td><td class=\"num\">" << fmt("%.6f", l.similarity)
      << "</td>";
    if (l.kind == "matmul")
      o << "<td class=\"num\">" << short_number(l.rank_loss_init) << "</td><td class=\"num\">"
        << short_number(l.rank_loss) << "</td>";
    else
      o << "<td></td><td></td>";
    o << "</tr>\n";
  }
  o << "</table></details>\n";
  return o.str();
}

}  // namespace

std::string render_html_report(const PtqReport &report, const ReportContext &context) {
  int depth = 0;
  for (const auto &m : report.modules) {
    bool attn = false;
    depth = std::max(depth, module_block(m.name, &attn) + 1);
  }
  const std::string name = std::filesystem::path(context.output_path).filename().string();
  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    << "<title>vqm quantization report: " << html_escape(name) << "</title>\n<style>" << kCss
    << "</style>\n</head>\n<body>\n<h1>Quantization report: " << html_escape(name) << "</h1>\n"
    << "<p class=\"note\">vqm " << VQM_VERSION_STRING
    << " post-training quantization (similarity- and ranking-aware interval search, bias "
       "correction, nuclear-norm mixed precision).</p>\n"
    << summary(report, context) << bits_section(report, depth) << sensitivity_section(report, depth)
    << frontier_section(report) << similarity_section(report) << curves_section(report, depth)
    << accuracy_section(context) << "<h2>Layers</h2>\n"
    << layer_table(report) << "</body>\n</html>\n";
  return o.str();
}

std::string write_html_report(const std::string &dir, const PtqReport &report,
                              const ReportContext &context) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail(ErrorCode::io, "cannot create report folder '" + dir + "': " + ec.message());
  const std::string path = (std::filesystem::path(dir) / "index.html").string();
  const std::string page = render_html_report(report, context);
  write_file_atomic(path, page.data(), page.size());
  return path;
}

}  // namespace vqm::quant
