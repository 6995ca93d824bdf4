// The post-LayerNorm reparameterization stage (quantizer/reparam.cpp) on the real Fashion-MNIST
// model: the fp32 network computes the same outputs after it, and every channel of qkv's and
// fc1's input then spans the same calibration range (the point of the stage).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "apps/data/calibration.h"
#include "models/convert.h"
#include "quantizer/ptq_internal.h"
#include "test_util.h"

namespace vqm::test {
namespace {

TEST(Reparam, KeepsTheFp32FunctionAndEqualisesPostNormChannelRanges) {
  const auto st = SafetensorsFile::from_file(data_path("models/fmnist_deit_tiny.safetensors"));
  const auto bytes = convert_timm(st, {}).to_bytes();
  const VqmFile fp32 = VqmFile::from_memory(bytes.data(), bytes.size());
  const auto calib = app::load_calibration(fmnist_dir(), 8, 0, *VitModel::load(fp32));
  quant::PtqOptions opt;
  quant::PtqContext c(VitModel::load_mutable(fp32), calib, opt);
  const int last = c.model->config().depth - 1;
  const std::vector<quant::TapKey> taps = {
      {Tap::qkv_in, 0}, {Tap::fc1_in, 5}, {Tap::qkv_in, last}, {Tap::prelogits, -1}};
  const auto before = quant::capture(c, taps);
  quant::reparam_post_layernorm(c);
  const auto after = quant::capture(c, taps);

  // The same function: the pre-logit features agree to float rounding.
  const auto &f0 = before.at({Tap::prelogits, -1}), &f1 = after.at({Tap::prelogits, -1});
  double err = 0, norm = 0;
  for (size_t i = 0; i < f0.size(); ++i) {
    err = std::max(err, std::fabs(double(f0[i]) - f1[i]));
    norm = std::max(norm, std::fabs(double(f0[i])));
  }
  EXPECT_LT(err, 1e-4 * norm);

  const int64_t d = c.model->config().embed_dim;
  for (const auto &key : {taps[0], taps[1], taps[2]}) {
    auto ranges = [&](const std::vector<float> &x) {
      std::vector<double> lo(d, 1e30), hi(d, -1e30), r(d);
      for (size_t i = 0; i < x.size(); ++i) {
        lo[i % d] = std::min(lo[i % d], double(x[i]));
        hi[i % d] = std::max(hi[i % d], double(x[i]));
      }
      for (int64_t j = 0; j < d; ++j) r[j] = hi[j] - lo[j];
      return r;
    };
    const auto r0 = ranges(before.at(key)), r1 = ranges(after.at(key));
    const double spread0 =
        *std::max_element(r0.begin(), r0.end()) / *std::min_element(r0.begin(), r0.end());
    const double spread1 =
        *std::max_element(r1.begin(), r1.end()) / *std::min_element(r1.begin(), r1.end());
    // Before: channel ranges several-fold apart; after: all equal up to rounding (no channel of
    // this model is clamped by the 1/100 floor).
    EXPECT_GT(spread0, 2.0);
    EXPECT_LT(spread1, 1.001);
  }
}

}  // namespace
}  // namespace vqm::test
