// Every ViT-family variant (tests/data/models/family) through the quantizer and both quantized
// engines: W8A8 and mixed 4-bit, calibrated on photos with the checkpoint's own preprocessing.
// The integer engine must agree with the simulated (fake-quant) forward the quantizer reasons
// about, row by row, on photos and on timm's noise inputs; at W8A8 an embedding model's output
// must stay close to fp32 (cosine >= 0.99). Every variant runs at both; DINOv2's mixed-precision
// cases at 224x224 (vit-convert --image-size: 257 tokens), since at its own 518 the 1370-token
// attention maps make the nuclear-norm sensitivity take minutes (518 is covered at W8A8).
#include <gtest/gtest.h>

#include <ostream>

#include <cmath>

#include "apps/data/calibration.h"
#include "golden_util.h"
#include "models/convert.h"
#include "quantizer/ptq.h"
#include "runtime/io/image.h"
#include "test_util.h"

namespace vqm::test {
namespace {

std::vector<float> run(const std::shared_ptr<const VitModel> &m, const std::vector<float> &in,
                       int n, bool simulate) {
  SessionOptions so;
  so.max_batch = n;
  so.simulate = simulate;
  so.n_threads = 2;  // the integer engine's 2-chunk path
  VitSession s(m, so);
  std::vector<float> out(static_cast<size_t>(n) * m->config().n_outputs());
  s.run(in.data(), n, out.data());
  return out;
}

struct Case {
  const char *name;
  int bits;            // uniform bits, or 0 for --mixed 4
  int image_size = 0;  // vit-convert --image-size (0: the checkpoint's own)
};

// Names the parameter in test listings (gtest would print its bytes, pointers included, into
// the names CTest registers).
void PrintTo(const Case &p, std::ostream *os) {
  *os << p.name;
}

class FamilyQuant : public ::testing::TestWithParam<Case> {};

TEST_P(FamilyQuant, IntegerAgreesWithSimulated) {
  const Case &cs = GetParam();
  // The sanitizers look for memory and UB errors, which the W8A8 runs of every variant already
  // take through the same code; mixed precision adds minutes there and no new paths.
  if (reduced_workload() && cs.bits == 0) GTEST_SKIP() << "mixed precision: Release suite only";
  const std::string path = data_path(std::string("models/family/") + cs.name + ".safetensors");
  ConvertOptions convert;
  if (cs.image_size) convert.image_size = cs.image_size;
  const std::vector<uint8_t> fp32_bytes =
      convert_timm(SafetensorsFile::from_file(path), convert).to_bytes();
  const VqmFile fp32_file = VqmFile::from_memory(fp32_bytes.data(), fp32_bytes.size());
  const auto fp32 = VitModel::load(fp32_file);
  const VitConfig &c = fp32->config();
  // Three photos (the folder's colour images) calibrate; the search is cut short (the intervals
  // only have to be a valid quantization here, their quality is tested on trained models).
  const auto calib = app::load_calibration(data_path("images"), 3, 0, *fp32);
  quant::PtqOptions opt;
  opt.search.candidates = 10;
  opt.search.rounds = 1;
  // DINOv2 at 518x518 has 1370+ tokens: the attention products' search would take minutes per
  // block here, so its intervals come from min/max (this test checks the engines, not the search).
  if (c.tokens() > 1000 || reduced_workload()) opt.method = "minmax";
  if (cs.bits > 0) {
    opt.bits = cs.bits;
  } else {
    opt.mixed_avg_bits = 4;
    opt.sensitivity_search.candidates = 5;
  }
  const auto q_bytes = quant::quantize(fp32_file, calib, opt, nullptr).to_bytes();
  const auto quantized = VitModel::load(VqmFile::from_memory(q_bytes.data(), q_bytes.size()));

  // Inputs: two photos through the checkpoint's preprocessing, timm's two noise rows (at another
  // input size than the checkpoint's: the third photo and seeded uniform noise in [-2, 2]).
  std::vector<float> in(4 * c.input_size());
  const char *photos[] = {"chelsea.png", "rocket.jpg", "coffee.png"};
  for (int i = 0; i < (cs.image_size ? 3 : 2); ++i)
    preprocess_image(decode_image_file(data_path(std::string("images/") + photos[i]), 3),
                     fp32->preprocess(), in.data() + i * c.input_size());
  if (cs.image_size) {
    const std::vector<float> noise = uniform_floats(c.input_size(), 0, -2.f, 2.f);
    std::copy(noise.begin(), noise.end(), in.begin() + 3 * c.input_size());
  } else {
    const std::vector<float> noise = reference_tensor(
        std::string("models/family/") + cs.name + ".ref.safetensors", "noise_pixel_values");
    std::copy(noise.begin(), noise.end(), in.begin() + 2 * c.input_size());
  }

  const std::vector<float> integer = run(quantized, in, 4, false);
  const std::vector<float> simulated = run(quantized, in, 4, true);
  const std::vector<float> reference = run(fp32, in, 4, true);
  const int64_t k = c.n_outputs();
  for (int r = 0; r < 4; ++r) {
    const float *i = integer.data() + r * k, *s = simulated.data() + r * k;
    const double agree = cosine(i, s, k), to_fp32 = cosine(i, reference.data() + r * k, k);
    std::printf("[ measured ] %s %s row %d: cosine integer/simulated %.6f, integer/fp32 %.4f\n",
                cs.name, cs.bits ? "W8A8" : "mixed 4", r, agree, to_fp32);
    // Integer and simulated differ by float rounding: the two engines compute LayerNorm, softmax
    // and the activation in a different float order, so a value on a rounding boundary can land
    // one level apart. At 5-8 bits a level is small and the whole output vector stays far below
    // a 1e-3 cosine loss. Mixed 4 bits may give a block 3-bit activations, where one level is an
    // eighth of the range: vit_patch32_384 (3-bit block 1) measured 0.9914 on one photo, its
    // block 0 differing on 6 of 145 token rows and nowhere else (flips, not a wrong kernel; the
    // top-1 still agrees). So mixed precision is held to 0.99 and the same top-1.
    EXPECT_GE(agree, cs.bits ? 0.999 : 0.99) << cs.name << " row " << r;
    if (c.num_classes > 0) {
      EXPECT_EQ(std::max_element(i, i + k) - i, std::max_element(s, s + k) - s)
          << cs.name << " row " << r;
    }
    if (c.num_classes == 0 && cs.bits == 8) {
      EXPECT_GE(to_fp32, 0.99) << cs.name << " row " << r;
    }
  }
}

const Case kCases[] = {
    {"deit3_small_layerscale", 8},
    {"dinov2_small_features", 8},
    {"dinov2_small_reg4_features", 8},
    {"clip_base_quickgelu", 8},
    {"vit_gap_noclass", 8},
    {"vit_fcnorm_avg", 8},
    {"vit_noqkvbias", 8},
    {"vit_patch32_384", 8},
    {"deit3_small_layerscale", 0},
    {"dinov2_small_features", 0, 224},
    {"dinov2_small_reg4_features", 0, 224},
    {"clip_base_quickgelu", 0},
    {"vit_gap_noclass", 0},
    {"vit_fcnorm_avg", 0},
    {"vit_noqkvbias", 0},
    {"vit_patch32_384", 0},
};

INSTANTIATE_TEST_SUITE_P(Family, FamilyQuant, ::testing::ValuesIn(kCases), [](const auto &info) {
  return std::string(info.param.name) + (info.param.bits ? "_w8a8" : "_mixed4") +
         (info.param.image_size ? "_at" + std::to_string(info.param.image_size) : "");
});

}  // namespace
}  // namespace vqm::test
