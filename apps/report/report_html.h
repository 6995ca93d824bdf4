// The HTML quantization report (vit-quantize --html-report DIR): one self-contained page (inline
// CSS and SVG; no script, no network) with the chosen bits per module, the nuclear-norm
// sensitivity per module, the Pareto frontier of size vs predicted error, the similarity before
// and after the search per layer, the search curve of a few layers, and fp32 vs quantized
// accuracy when labelled data was given.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "quantizer/ptq.h"

namespace vqm::quant {

struct AccuracyComparison {
  std::string data;  // what was evaluated, e.g. "/data/val (1000 images)"
  int n = 0;
  double fp32_top1 = 0, fp32_top5 = 0, quant_top1 = 0, quant_top5 = 0;
  // What users feel beyond net accuracy: the share of images whose top-1 class is fp32's, and
  // the cosine of the quantized logits to fp32's (mean, and the worst image's).
  double top1_agreement = 0, cosine_mean = 0, cosine_min = 0;
  // Per class with images: name, fp32 top-1, quantized top-1 (plotted up to 40 classes).
  std::vector<std::string> class_names;
  std::vector<double> fp32_class_top1, quant_class_top1;
};

struct ReportContext {
  std::string model_path, output_path, calibration;  // calibration: source and image count
  std::string method;                                // "ptq", "minmax", "percentile"
  std::string bits_mode;  // "uniform 8 bits", "mixed, 4 average bits", ...
  int64_t fp32_bytes = 0, quant_bytes = 0;
  std::optional<AccuracyComparison> accuracy;
};

// The page as a string. Layers with a search curve: up to four are plotted (first block's qkv,
// the middle block's Q·Kᵀ, the last block's fc2, and the layer the search improved most).
std::string render_html_report(const PtqReport &report, const ReportContext &context);

// Creates `dir` if needed and writes dir/index.html atomically; returns the file's path.
// Throws vqm::Error(io) when the folder cannot be created or written.
std::string write_html_report(const std::string &dir, const PtqReport &report,
                              const ReportContext &context);

}  // namespace vqm::quant
