// ImageNet geometry: timm deit_small_patch16_224 (and its distilled twin) with depth 1 and random
// weights stored in fp16; timm's fp32 logits for the stored inputs and for three real photos.
#include <gtest/gtest.h>

#include "golden_util.h"
#include "runtime/io/image.h"
#include "test_util.h"

namespace vqm::test {
namespace {

// "Within 1e-3 relative to the logits' scale": max |ours - timm| <= 1e-3 * max |timm|.
void expect_logits(const std::shared_ptr<const VitModel> &model, const std::vector<float> &input,
                   int n, const std::vector<float> &ref, const char *what) {
  SessionOptions so;
  so.max_batch = n;
  VitSession session(model, so);
  std::vector<float> logits(static_cast<size_t>(n) * 1000);
  session.run(input.data(), n, logits.data());
  ASSERT_EQ(ref.size(), logits.size());
  const Diff d = compare(logits.data(), ref.data(), ref.size());
  std::printf("[ measured ] %s: max abs diff %.3g, logit scale %.3g, relative %.3g\n", what,
              d.max_abs, d.ref_scale, d.max_abs / d.ref_scale);
  EXPECT_LE(d.max_abs, 1e-3 * d.ref_scale) << what;
}

TEST(DeitSmallGolden, RandomDepth1MatchesTimm) {
  const std::string name = "deit_small_patch16_224_depth1_random";
  const auto model = convert_fixture(name, "deit_small_patch16_224");
  EXPECT_EQ(model->config().tokens(), 197);
  const std::string ref = "models/" + name + ".ref.safetensors";
  expect_logits(model, reference_tensor(ref, "input"), 2, reference_tensor(ref, "logits"),
                "deit_small");
}

TEST(DeitSmallGolden, DistilledDepth1MatchesTimm) {
  const std::string name = "deit_small_distilled_patch16_224_depth1_random";
  const auto model = convert_fixture(name, "deit_small_distilled_patch16_224");
  EXPECT_TRUE(model->config().distilled);
  EXPECT_EQ(model->config().tokens(), 198);
  const std::string ref = "models/" + name + ".ref.safetensors";
  expect_logits(model, reference_tensor(ref, "input"), 2, reference_tensor(ref, "logits"),
                "deit_small_distilled");
}

TEST(DeitSmallGolden, RealPhotosThroughOurPreprocessing) {
  const auto model =
      convert_fixture("deit_small_patch16_224_depth1_random", "deit_small_patch16_224");
  const char *ref = "reference/images_deit_small_224.ref.safetensors";
  // Our own decode + resize + crop + normalise, then the forward: the whole path a user takes.
  std::vector<float> input(3 * 3 * 224 * 224);
  const char *photos[] = {"chelsea.png", "coffee.png", "rocket.jpg"};
  for (int i = 0; i < 3; ++i) {
    const Image img = decode_image_file(data_path(std::string("images/") + photos[i]), 3);
    preprocess_image(img, model->preprocess(), input.data() + i * 3 * 224 * 224);
  }
  expect_logits(model, input, 3, reference_tensor(ref, "logits"), "photos (own preprocessing)");
  // And timm's own pixel_values, isolating the forward from preprocessing differences.
  expect_logits(model, reference_tensor(ref, "pixel_values"), 3, reference_tensor(ref, "logits"),
                "photos (timm pixels)");
}

}  // namespace
}  // namespace vqm::test
