// The HTML quantization report: page structure (self-contained, balanced SVG), and that each plot
// holds the series the report promises with the right number of points.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>

#include "apps/report/report_html.h"
#include "apps/report/svg_plot.h"
#include "html_plots.h"
#include "test_util.h"

namespace vqm::test {
namespace {

using quant::PtqReport;

int count(const std::string &s, const std::string &what) {
  int n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

// A two-block report as mixed precision leaves it: 14 layers with 10-point curves, 4 modules
// with Omega at 3, 4 and 8 bits, a 5-point frontier.
PtqReport sample_report() {
  PtqReport r;
  r.avg_bits = 5.5;
  r.seconds = 12;
  std::vector<std::string> names = {"patch_embed.proj"};
  for (int l = 0; l < 2; ++l)
    for (const char *s : {"attn.qkv", "attn.q@k", "attn.a@v", "attn.proj", "mlp.fc1", "mlp.fc2"})
      names.push_back("blocks." + std::to_string(l) + "." + s);
  names.push_back("head");
  for (size_t i = 0; i < names.size(); ++i) {
    quant::LayerReport l;
    l.name = names[i];
    l.kind = names[i].find('@') != std::string::npos ? "matmul" : "linear";
    l.x_bits = 4;
    l.x_delta = 0.05f;
    l.similarity_init = 0.9 + 0.001 * i;
    l.similarity = 0.99 + 0.0001 * i;
    for (int c = 0; c < 10; ++c) l.curve.emplace_back(0.01f * (c + 1), 0.9 + 0.005 * c);
    r.layers.push_back(l);
  }
  for (int l = 0; l < 2; ++l)
    for (const char *kind : {"attn", "mlp"}) {
      quant::ModuleReport m;
      m.name = "blocks." + std::to_string(l) + "." + kind;
      m.bits = l == 0 ? 8 : 4;
      m.params = 1000;
      m.nuclear_norm = 10.0 + l;
      m.sensitivity = {{3, 1.0}, {4, 0.1}, {8, 0.001}};
      r.modules.push_back(m);
    }
  for (int i = 0; i < 5; ++i) r.frontier.emplace_back(12000 + 4000 * i, 1.0 / (1 + i));
  return r;
}

quant::ReportContext sample_context() {
  quant::ReportContext c;
  c.model_path = "in.vqm";
  c.output_path = "out/model.mp.vqm";
  c.calibration = "calib/, 8 images";
  c.method = "ptq";
  c.bits_mode = "mixed precision, 5.5 average bits";
  c.fp32_bytes = 4000000;
  c.quant_bytes = 1000000;
  quant::AccuracyComparison a;
  a.data = "val/";
  a.n = 30;
  a.fp32_top1 = 0.9, a.fp32_top5 = 1, a.quant_top1 = 0.8, a.quant_top5 = 0.97;
  a.class_names = {"cat", "<dog & co>", "emu"};
  a.fp32_class_top1 = {1, 0.9, 0.8};
  a.quant_class_top1 = {0.9, 0.8, 0.7};
  c.accuracy = a;
  return c;
}

TEST(HtmlReport, EveryPlotHoldsItsSeries) {
  const std::string html = quant::render_html_report(sample_report(), sample_context());
  ASSERT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  // Self-contained: no script, nothing fetched (the SVG namespace is a name, not a request).
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(count(html, "http"), count(html, "xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_EQ(count(html, "<svg"), count(html, "</svg>"));
  EXPECT_EQ(count(html, "<g "), count(html, "</g>"));
  // Names are escaped.
  EXPECT_NE(html.find("&lt;dog &amp; co&gt;"), std::string::npos);
  EXPECT_EQ(html.find("<dog"), std::string::npos);

  const auto p = html_plots(html);
  using S = std::map<std::string, int>;
  EXPECT_EQ(p.at("bits"), (S{{"MSA (attn)", 2}, {"MLP", 2}}));
  EXPECT_EQ(p.at("sensitivity-attn"),
            (S{{"3 bits", 2}, {"4 bits", 2}, {"8 bits", 2}, {"chosen", 2}}));
  EXPECT_EQ(p.at("sensitivity-mlp"),
            (S{{"3 bits", 2}, {"4 bits", 2}, {"8 bits", 2}, {"chosen", 2}}));
  EXPECT_EQ(p.at("nuclear-norm"), (S{{"MSA", 2}, {"MLP", 2}}));
  EXPECT_EQ(p.at("pareto"), (S{{"frontier", 5}, {"chosen", 1}}));
  EXPECT_EQ(p.at("similarity"),
            (S{{"before search (max-based intervals)", 14}, {"after search", 14}}));
  // Search curves: the first qkv, the middle block's Q.K^T (depth 2: block 1), the last fc2, and
  // the layer the search improved most among the rest (the first: similarity_init grows faster).
  for (const char *layer :
       {"blocks.0.attn.qkv", "blocks.1.attn.q@k", "blocks.1.mlp.fc2", "patch_embed.proj"})
    EXPECT_EQ(p.at(std::string("curve:") + layer), (S{{"objective", 10}})) << layer;
  EXPECT_EQ(p.at("accuracy"), (S{{"fp32", 2}, {"quantized", 2}}));
  EXPECT_EQ(p.at("accuracy-per-class"), (S{{"fp32", 3}, {"quantized", 3}}));
  EXPECT_EQ(p.size(), 12u);
  // The chosen configuration on the frontier plot: 1000 params at 8, 8, 4, 4 bits = 3e-3 MB,
  // Omega 0.001 + 0.001 + 0.1 + 0.1.
  EXPECT_NE(html.find("<title>chosen: 0.003, 0.202</title>"), std::string::npos);
}

TEST(HtmlReport, UniformRunWithoutSensitivityOrLabelsSaysWhatIsMissing) {
  PtqReport r = sample_report();
  for (auto &m : r.modules) m.sensitivity.clear();
  r.frontier.clear();
  for (auto &l : r.layers) l.curve.clear();
  quant::ReportContext c = sample_context();
  c.accuracy.reset();
  const std::string html = quant::render_html_report(r, c);
  const auto p = html_plots(html);
  EXPECT_EQ(p.size(), 2u);  // bits and similarity
  EXPECT_TRUE(p.count("bits") && p.count("similarity"));
  EXPECT_NE(html.find("--sensitivity"), std::string::npos);
  EXPECT_NE(html.find("--eval-data"), std::string::npos);
  EXPECT_NE(html.find("No search curves"), std::string::npos);
}

TEST(HtmlReport, WritesIndexHtmlIntoANewFolder) {
  const std::string dir = scratch_dir() + "/report/nested";
  const std::string path = quant::write_html_report(dir, sample_report(), sample_context());
  EXPECT_EQ(path, dir + "/index.html");
  EXPECT_GT(std::filesystem::file_size(path), 5000u);
  // A folder that cannot be created is one io error naming it.
  const std::string file = scratch_dir() + "/f";
  write_bytes(file, {1});
  EXPECT_VQM_ERROR(quant::write_html_report(file + "/sub", sample_report(), sample_context()), io,
                   "cannot create report folder");
}

TEST(SvgPlot, LogAxesDropNonPositiveValuesAndTicksAreRound) {
  quant::PlotSpec spec;
  spec.id = "t";
  spec.log_y = true;
  const std::string svg = quant::svg_plot(
      spec, {{"s", "#000", quant::PlotSeries::Style::markers, {{0, 0.001}, {1, -1}, {2, 10}}}});
  EXPECT_NE(svg.find("data-points=\"2\""), std::string::npos);
  EXPECT_NE(svg.find(">0.001<"), std::string::npos);  // decade ticks from 1e-3 to 10
  EXPECT_NE(svg.find(">10<"), std::string::npos);
  EXPECT_EQ(quant::short_number(1.5e-5), "1.5e-05");
  EXPECT_EQ(quant::short_number(0.25), "0.25");
  EXPECT_EQ(quant::html_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
}

}  // namespace
}  // namespace vqm::test
