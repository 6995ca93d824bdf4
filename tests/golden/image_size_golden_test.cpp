// vit-convert --image-size (ConvertOptions::image_size) on the ViT-family fixtures
// (tests/data/models/family): pos_embed resampled to the new patch grid as timm's
// resample_abs_pos_embed does, against torch's own F.interpolate(bicubic, antialias=True)
// (tests/data/reference/posembed_resampled.safetensors, made by scripts/make-posembed-ref.py),
// the prefix rows kept bit for bit, the preprocessing following the new size, the model running
// at it, and bad sizes refused with one line.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "golden_util.h"
#include "models/convert.h"
#include "runtime/io/image.h"
#include "runtime/io/safetensors.h"
#include "test_util.h"

namespace vqm::test {
namespace {

struct Case {
  const char *fixture;  // under tests/data/models/family
  int size;             // --image-size
  int prefix_rows;      // pos_embed rows before the patch rows
  int old_grid, new_grid;
  int resize;  // the preprocessing's resize the new size implies
};

void PrintTo(const Case &c, std::ostream *os) {
  *os << c.fixture << "@" << c.size;
}

const Case kCases[] = {
    // DINOv2 at 224 instead of 518: crop_pct 1.0, so resize = crop.
    {"dinov2_small_features", 224, 1, 37, 16, 224},
    // DeiT III (no_embed_class: no prefix rows) up to 256; crop_pct 0.9: floor(256 / 0.9).
    {"deit3_small_layerscale", 256, 0, 14, 16, 284},
    // ViT-B/32 at 384 to 224: 12 -> 7, a ratio with no common factor; crop_pct 1.0.
    {"vit_patch32_384", 224, 1, 12, 7, 224},
};

std::string grid_str(int g) {
  return std::to_string(g) + "x" + std::to_string(g);
}

std::shared_ptr<const VitModel> load(const std::vector<uint8_t> &bytes) {
  return VitModel::load(VqmFile::from_memory(bytes.data(), bytes.size()));
}

// A forward of two noise images at the model's size: every output finite.
void expect_runs(const std::shared_ptr<const VitModel> &model, const std::string &what) {
  const VitConfig &c = model->config();
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<float> in(2 * c.input_size());
  for (float &x : in) x = n(rng);
  SessionOptions so;
  so.max_batch = 2;
  VitSession session(model, so);
  std::vector<float> out(2 * static_cast<size_t>(c.n_outputs()), NAN);
  session.run(in.data(), 2, out.data());
  EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](float v) { return std::isfinite(v); }))
      << what;
}

class ImageSizeGolden : public ::testing::TestWithParam<Case> {};

TEST_P(ImageSizeGolden, PosEmbedIsTimmsAndTheModelRunsAtTheNewSize) {
  const Case &k = GetParam();
  const std::string name = std::string(k.fixture) + "@" + std::to_string(k.size);
  const auto st = SafetensorsFile::from_file(
      data_path(std::string("models/family/") + k.fixture + ".safetensors"));
  ConvertOptions opt;
  opt.image_size = k.size;
  std::vector<std::string> notes;
  const std::vector<uint8_t> bytes = convert_timm(st, opt, &notes).to_bytes();
  const auto model = load(bytes);
  const VitConfig &c = model->config();
  EXPECT_EQ(c.image_size, k.size);
  EXPECT_EQ(c.grid(), k.new_grid);

  const TensorInfo &pe = model->file().get("pos_embed");
  const int64_t d = c.embed_dim, rows = k.prefix_rows + k.new_grid * k.new_grid;
  EXPECT_EQ(pe.shape, (std::vector<int64_t>{1, rows, d}));
  const std::vector<float> got = to_f32(pe);
  const std::vector<float> want =
      reference_tensor("reference/posembed_resampled.safetensors", name);
  ASSERT_EQ(got.size(), want.size());
  const Diff diff = compare(got.data(), want.data(), got.size());
  std::printf("[ measured ] %s: pos_embed max abs diff vs torch %.3g (values up to %.3g)\n",
              name.c_str(), diff.max_abs, diff.ref_scale);
  // The same weights and taps; what differs is float rounding: torch computes the weights in
  // float and sums in float, vqm (as PIL's float mode) in double, and the intermediate between
  // the two passes is rounded to float in both. That is a few 1e-8 at these magnitudes (~0.07);
  // 1e-5 leaves room for other summation orders while any wrong tap or weight is far above it.
  EXPECT_LE(diff.max_abs, 1e-5) << name;
  // The prefix rows (class token) are the checkpoint's, untouched.
  const std::vector<float> src = to_f32(st.get("pos_embed"));
  EXPECT_TRUE(std::equal(got.begin(), got.begin() + k.prefix_rows * d, src.begin())) << name;

  // Preprocessing for the new size: crop N, resize floor(N / crop_pct).
  const PreprocessConfig &p = model->preprocess();
  EXPECT_EQ(p.crop, k.size);
  EXPECT_EQ(p.resize, k.resize);
  EXPECT_EQ(p.resize_mode, ResizeMode::shorter_side);

  // What was done, for the user and in the file.
  const std::string note = "pos_embed resampled from " + grid_str(k.old_grid) + " to " +
                           grid_str(k.new_grid) + " (bicubic, antialias) for " + grid_str(k.size) +
                           " input";
  EXPECT_NE(std::find(notes.begin(), notes.end(), note), notes.end()) << note;
  const auto recorded = model->file().meta()["producer"]["notes"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(recorded.begin(), recorded.end(), note), recorded.end()) << note;

  expect_runs(model, name);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ImageSizeGolden, ::testing::ValuesIn(kCases),
                         [](const auto &info) { return std::string(info.param.fixture); });

Checkpoint family(const std::string &name) {
  return load_checkpoint(data_path("models/family/" + name));
}

// DINOv2 with registers: no pos_embed rows for the class and register tokens
// (no_embed_class), so every row is a patch row; the five prefix tokens stay.
TEST(ImageSize, RegisterTokensHaveNoPosEmbedRows) {
  ConvertOptions opt;
  opt.image_size = 224;
  const auto model =
      load(convert_checkpoint(family("dinov2_small_reg4_features.safetensors"), opt).to_bytes());
  const VitConfig &c = model->config();
  EXPECT_EQ(c.tokens(), 16 * 16 + 5);
  EXPECT_EQ(model->file().get("pos_embed").shape, (std::vector<int64_t>{1, 256, 192}));
  expect_runs(model, "dinov2_small_reg4_features@224");
}

// A resize the source states (not timm's crop_pct) keeps its ratio to the crop: Hugging Face's
// squash to 224 without crop becomes a squash to N, torchvision's 256 for 224 becomes
// floor(256 * 384 / 224) = 438, as timm's floor(384 / 0.875) would be.
TEST(ImageSize, SourceStatedResizeScalesWithTheSize) {
  ConvertOptions opt;
  opt.image_size = 160;
  const auto hf = load(convert_checkpoint(family("hf_vit_small"), opt).to_bytes());
  EXPECT_EQ(hf->preprocess().resize_mode, ResizeMode::squash);
  EXPECT_EQ(hf->preprocess().resize, 160);
  EXPECT_EQ(hf->preprocess().crop, 160);
  EXPECT_EQ(hf->config().grid(), 10);
  expect_runs(hf, "hf_vit_small@160");

  opt.image_size = 384;
  const auto tv =
      load(convert_checkpoint(family("torchvision_vit_b16_small.safetensors"), opt).to_bytes());
  EXPECT_EQ(tv->preprocess().resize_mode, ResizeMode::shorter_side);
  EXPECT_EQ(tv->preprocess().resize, 438);
  EXPECT_EQ(tv->preprocess().crop, 384);
  EXPECT_EQ(tv->config().grid(), 24);
}

TEST(ImageSize, TheCheckpointsOwnSizeChangesNothing) {
  const Checkpoint in = family("dinov2_small_features.safetensors");
  ConvertOptions opt;
  const std::vector<uint8_t> plain = convert_checkpoint(in, opt).to_bytes();
  opt.image_size = 518;
  EXPECT_EQ(convert_checkpoint(in, opt).to_bytes(), plain);
}

TEST(ImageSize, CropIsCheckedAgainstTheNewSize) {
  const Checkpoint in = family("dinov2_small_features.safetensors");
  ConvertOptions opt;
  opt.image_size = 224;
  opt.crop = 224;
  EXPECT_EQ(load(convert_checkpoint(in, opt).to_bytes())->preprocess().crop, 224);
  opt.crop = 518;
  EXPECT_VQM_ERROR(convert_checkpoint(in, opt), invalid_argument,
                   "--crop 518 differs from the model's input size 224");
}

TEST(ImageSize, BadSizesAreOneLineErrors) {
  const Checkpoint in = family("dinov2_small_features.safetensors");  // patch 14
  // Not a multiple of the patch size, none, negative, over 4096 (VitConfig's largest side;
  // 292 * 14 = 4088 is the largest multiple), and a grid far over 512 per side.
  for (int n : {100, 0, -14, 4102, 14 * 600}) {
    ConvertOptions opt;
    opt.image_size = n;
    const std::string want = "--image-size " + std::to_string(n) +
                             " must be a multiple of the patch size 14 from 14 to 4088";
    try {
      convert_checkpoint(in, opt);
      ADD_FAILURE() << "no error for " << n;
    } catch (const Error &e) {
      EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
      EXPECT_EQ(std::string(e.what()), want);
    }
  }
  // The largest size allowed converts (a 292 x 292 grid: the table only, not run here).
  ConvertOptions opt;
  opt.image_size = 4088;
  EXPECT_EQ(load(convert_checkpoint(in, opt).to_bytes())->config().grid(), 292);
}

}  // namespace
}  // namespace vqm::test
