// The quantizer's central claims, measured on the real Fashion-MNIST model (32 calibration
// images from the train split, the first t10k images, integer execution): the default method
// beats the min/max and percentile baselines of the same tool at W4A4 and W3A3 by margins a
// broken search could not reach; the GPTQ stage lowers every linear layer's output error and
// brings the quantized outputs closer to fp32 at 3 bits, and its fp32 target closer than GPTQ on
// each layer's own output; --per-tensor means one weight delta per
// layer for every method; a file records only the settings that ran. Full-size figures (10,000
// images, 3 seeds): docs/quantization.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <tuple>

#include "apps/data/calibration.h"
#include "apps/data/idx.h"
#include "models/convert.h"
#include "quantizer/ptq.h"
#include "test_util.h"

namespace vqm::test {
namespace {

// Sanitizer builds look for memory errors on a smaller workload; the margins are asserted on
// the full one (Release CI), where they were measured.
const int kEval = workload(2000, 100);
const int kCalib = workload(32, 4);

struct Measured {
  double top1 = 0;       // against the labels
  double agreement = 0;  // top-1 equal to fp32's
  double cosine = 0;     // mean cosine of the logits to fp32's
};

const VqmFile &fp32_file() {
  static const VqmFile f = [] {
    const auto st = SafetensorsFile::from_file(data_path("models/fmnist_deit_tiny.safetensors"));
    const auto bytes = convert_timm(st, {}).to_bytes();
    return VqmFile::from_memory(bytes.data(), bytes.size());
  }();
  return f;
}

std::vector<float> logits(const std::shared_ptr<const VitModel> &model) {
  static const std::vector<float> inputs = fmnist_t10k_inputs(*VitModel::load(fp32_file()), kEval);
  SessionOptions so;
  so.max_batch = 100;
  VitSession session(model, so);
  std::vector<float> out(static_cast<size_t>(kEval) * 10);
  const int64_t in = model->config().input_size();
  for (int s = 0; s < kEval; s += 100) {
    const int n = std::min(100, kEval - s);
    session.run(inputs.data() + s * in, n, out.data() + s * 10);
  }
  return out;
}

int argmax10(const float *v) {
  return static_cast<int>(std::max_element(v, v + 10) - v);
}

Measured measure(const std::shared_ptr<const VitModel> &model) {
  static const std::vector<float> ref = logits(VitModel::load(fp32_file()));
  static const std::vector<int> labels = [] {
    const auto l = load_idx_labels(find_idx_file(fmnist_dir(), "t10k", "labels"));
    return std::vector<int>(l.begin(), l.begin() + kEval);
  }();
  const std::vector<float> out = logits(model);
  Measured m;
  for (int i = 0; i < kEval; ++i) {
    const float *a = out.data() + i * 10, *b = ref.data() + i * 10;
    m.top1 += argmax10(a) == labels[i];
    m.agreement += argmax10(a) == argmax10(b);
    double ab = 0, aa = 0, bb = 0;
    for (int k = 0; k < 10; ++k)
      ab += double(a[k]) * b[k], aa += double(a[k]) * a[k], bb += double(b[k]) * b[k];
    m.cosine += ab / std::sqrt(aa * bb);
  }
  m.top1 /= kEval, m.agreement /= kEval, m.cosine /= kEval;
  return m;
}

std::shared_ptr<const VitModel> quantized(const quant::PtqOptions &opt,
                                          quant::PtqReport *report = nullptr) {
  static const auto calib =
      app::load_calibration(fmnist_dir(), kCalib, 0, *VitModel::load(fp32_file()));
  const auto bytes = quant::quantize(fp32_file(), calib, opt, report).to_bytes();
  return VitModel::load(VqmFile::from_memory(bytes.data(), bytes.size()));
}

// Default settings of the tool at `bits`, or with one stage off ("gptq", "fp32_target"),
// measured once per process (tests share runs).
Measured run(const std::string &method, int bits, const std::string &off = "",
             quant::PtqReport *report = nullptr) {
  static std::map<std::tuple<std::string, int, std::string>, std::pair<Measured, quant::PtqReport>>
      done;
  auto it = done.find({method, bits, off});
  if (it == done.end()) {
    quant::PtqOptions opt;
    opt.method = method;
    opt.bits = bits;
    opt.gptq = off != "gptq";
    opt.fp32_target = off != "fp32_target";
    opt.codebook = off != "codebook";
    quant::PtqReport r;
    const Measured m = measure(quantized(opt, &r));
    std::printf("%-10s W%dA%d off '%s': top-1 %.4f, agreement %.4f, cosine %.5f\n", method.c_str(),
                bits, bits, off.c_str(), m.top1, m.agreement, m.cosine);
    it = done.emplace(std::make_tuple(method, bits, off), std::make_pair(m, r)).first;
  }
  if (report) *report = it->second.second;
  return it->second.first;
}

TEST(PtqClaim, SearchBeatsMinmaxAndPercentileAtFourAndThreeBits) {
  const Measured fp32 = measure(VitModel::load(fp32_file()));
  std::printf("fp32: top-1 %.4f\n", fp32.top1);
  std::map<std::pair<std::string, int>, Measured> all;
  for (int bits : {4, 3})
    for (const char *method : {"ptq", "minmax", "percentile"})
      all[{method, bits}] = run(method, bits);
  auto m = [&](const char *method, int bits) { return all.at({method, bits}); };
  if (reduced_workload()) {
    // 4 calibration and 100 test images: only that the default method is not behind.
    EXPECT_GE(m("ptq", 3).cosine, m("minmax", 3).cosine);
    return;
  }
  // Margins from the measurement (2000 images): W3 ptq 0.87 top-1 against 0.71 (min/max) and
  // 0.78 (percentile) on all 10,000; at W4 the gaps are 2 and 0.7 points. Agreement with fp32 is
  // paired (the same images), so it separates the methods with less noise than top-1 does.
  EXPECT_GT(m("ptq", 3).top1, m("minmax", 3).top1 + 0.08);
  EXPECT_GT(m("ptq", 3).top1, m("percentile", 3).top1 + 0.04);
  EXPECT_GT(m("ptq", 3).agreement, m("percentile", 3).agreement + 0.04);
  EXPECT_GT(m("ptq", 4).agreement, m("minmax", 4).agreement + 0.01);
  EXPECT_GT(m("ptq", 4).agreement, m("percentile", 4).agreement);
  EXPECT_GT(m("ptq", 4).cosine, m("percentile", 4).cosine);
  EXPECT_GT(m("ptq", 4).top1, fp32.top1 - 0.02);
}

TEST(PtqClaim, GptqLowersEveryLinearLayersErrorAndHelpsAtThreeBits) {
  quant::PtqReport report;
  const Measured on = run("ptq", 3, "", &report);
  int linear = 0;
  for (const auto &l : report.layers) {
    if (l.kind != "linear") continue;
    ++linear;
    // The output error energy on the calibration inputs, GPTQ over nearest rounding: below 1
    // wherever there is anything to compensate (measured 0.03-0.16 in the blocks).
    EXPECT_GT(l.gptq_error_ratio, 0.0) << l.name;
    EXPECT_LT(l.gptq_error_ratio, 1.0) << l.name;
  }
  EXPECT_EQ(linear, 2 + 4 * 12);
  const Measured off = run("ptq", 3, "gptq");
  if (reduced_workload()) return;
  // Measured on 2000 images with every other stage on: cosine 0.9826 with GPTQ (and its fp32
  // target), 0.9686 without (before the codebook stage: 0.9810 and 0.9711, with agreement 0.9475
  // against 0.9460, too close to assert): what GPTQ reliably changes is the distance of the
  // logits to fp32.
  EXPECT_GT(on.cosine, off.cosine);
}

// The fp32 target (GPTQ rounding toward the weights that reproduce the fp32 model's layer outputs
// from the quantized inputs) against GPTQ on the layer's own output. Measured here (2000 images):
// agreement 0.9420 against 0.9345, cosine 0.9826 against 0.9716 (before the codebook stage 0.9475
// against 0.9420 and 0.9810 against 0.9744); on all 10,000 over 3 seeds (docs/quantization.md)
// agreement 94.32 % against 94.08 %.
TEST(PtqClaim, Fp32TargetBringsThreeBitsCloserToFp32) {
  const Measured on = run("ptq", 3);
  const Measured off = run("ptq", 3, "fp32_target");
  if (reduced_workload()) return;
  EXPECT_GT(on.cosine, off.cosine);
  EXPECT_GT(on.agreement, off.agreement);
}

// Chosen levels (the codebook stage) on LayerNorm and GELU outputs at 3 bits: only qkv's, fc1's
// and fc2's inputs take them (where the search's objective is higher than the uniform grid's:
// all 36 here), and they bring the logits closer to fp32. Measured here (2000 images, seed 0):
// cosine 0.98258 against 0.98218; agreement 0.9420 against 0.9445 is seed noise (all 10,000
// images over 3 seeds and two models, docs/quantization.md: +0.20 point at W3A3, +0.12 to +0.28
// under mixed precision).
TEST(PtqClaim, ChosenLevelsAtThreeBits) {
  quant::PtqReport on_report, off_report;
  const Measured on = run("ptq", 3, "", &on_report);
  const Measured off = run("ptq", 3, "codebook", &off_report);
  int chosen = 0;
  for (const auto &l : on_report.layers) {
    if (l.x_levels.empty()) continue;
    ++chosen;
    EXPECT_EQ(l.x_levels.size(), 8u) << l.name;
    const bool allowed = l.name.find("qkv") != std::string::npos ||
                         l.name.find("fc1") != std::string::npos ||
                         l.name.find("fc2") != std::string::npos;
    EXPECT_TRUE(allowed) << l.name;
  }
  for (const auto &l : off_report.layers) EXPECT_TRUE(l.x_levels.empty()) << l.name;
  std::printf("layers with chosen levels: %d of 36\n", chosen);
  EXPECT_GT(chosen, 0);
  if (reduced_workload()) return;
  EXPECT_GT(on.cosine, off.cosine);
}

TEST(PtqClaim, PerTensorIsOneWeightDeltaForEveryMethodAndOnlyWhatRanIsRecorded) {
  for (const char *method : {"minmax", "percentile", "ptq"}) {
    SCOPED_TRACE(method);
    quant::PtqOptions opt;
    opt.method = method;
    opt.search.per_channel = false;
    opt.search.refine_channels = false;
    opt.search.candidates = 5;  // the search's quality is not what this test is about
    opt.search.rounds = 1;
    const auto q = quantized(opt);
    for (const char *w : {"blocks.0.attn.qkv.weight.scale", "blocks.11.mlp.fc2.weight.scale",
                          "patch_embed.proj.weight.scale", "head.weight.scale"}) {
      // Stored per row as always (the format has one scale per output channel), all equal.
      const auto &t = q->file().get(w);
      std::vector<float> scale(static_cast<size_t>(t.shape.at(0)));
      std::memcpy(scale.data(), t.data, scale.size() * sizeof(float));
      EXPECT_EQ(std::count(scale.begin(), scale.end(), scale[0]), t.shape.at(0)) << w;
    }
    const auto &settings = q->file().meta()["quantization"]["settings"];
    EXPECT_EQ(settings["per_channel"], false);
    const bool search = std::string(method) == "ptq";
    for (const char *k : {"candidates", "rounds", "alpha", "ranking", "gptq", "coarse_stride"})
      EXPECT_EQ(settings.contains(k), search) << k;
    EXPECT_EQ(settings.contains("percentile"), !search);
    EXPECT_FALSE(settings.contains("candidate_bits"));  // uniform bits: no mixed precision ran
    EXPECT_EQ(settings["min_act_bits"], 3);  // resolved from 0 (automatic): uniform bits floor at 3
  }
}

}  // namespace
}  // namespace vqm::test
