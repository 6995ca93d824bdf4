// The ViT family (tests/data/models/family, copied from ../shared/models/family by
// scripts/trim-family-refs.py): small random-weight timm checkpoints of eight architectures, each
// with timm's outputs. Each converts from its own tensors and metadata (no preset, no flags) and
// its fp32 forward matches timm: the two noise rows within 1e-3 of the outputs' scale, and the
// two photos, through our own decode and the preprocessing read from the checkpoint, to the same
// top-1 class (classifiers) or a cosine of at least 0.9999 (embeddings).
#include <gtest/gtest.h>

#include <cmath>

#include "golden_util.h"
#include "runtime/io/image.h"
#include "test_util.h"

namespace vqm::test {
namespace {

struct Variant {
  const char *name;
  // What the converter must have read from the checkpoint.
  void (*check)(const VitConfig &c);
};

std::vector<float> run(const std::shared_ptr<const VitModel> &model, const float *input, int n) {
  SessionOptions so;
  so.max_batch = n;
  VitSession session(model, so);
  std::vector<float> out(static_cast<size_t>(n) * model->config().n_outputs());
  session.run(input, n, out.data());
  return out;
}

double cosine(const float *a, const float *b, int64_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < n; ++i) {
    ab += double{a[i]} * b[i];
    aa += double{a[i]} * a[i];
    bb += double{b[i]} * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

int argmax(const float *x, int64_t n) {
  return static_cast<int>(std::max_element(x, x + n) - x);
}

class FamilyGolden : public ::testing::TestWithParam<Variant> {};

TEST_P(FamilyGolden, ConvertsAndMatchesTimm) {
  const Variant &v = GetParam();
  const auto model = convert_fixture(std::string("family/") + v.name);
  const VitConfig &c = model->config();
  v.check(c);
  const std::string ref = std::string("models/family/") + v.name + ".ref.safetensors";
  const std::vector<float> want = reference_tensor(ref, "output");
  const int64_t k = c.n_outputs();
  ASSERT_EQ(want.size(), static_cast<size_t>(4 * k));

  // Rows 2-3: timm's own input tensors (noise), the forward alone.
  const std::vector<float> noise =
      run(model, reference_tensor(ref, "noise_pixel_values").data(), 2);
  const Diff d = compare(noise.data(), want.data() + 2 * k, static_cast<size_t>(2 * k));
  std::printf("[ measured ] %s: noise rows max abs diff %.3g, output scale %.3g\n", v.name,
              d.max_abs, d.ref_scale);
  EXPECT_LE(d.max_abs, 1e-3 * std::max(1.0, d.ref_scale)) << v.name;

  // Rows 0-1: the photos through our decode and the checkpoint's own preprocessing.
  std::vector<float> photos(2 * c.input_size());
  const char *files[] = {"chelsea.png", "rocket.jpg"};
  for (int i = 0; i < 2; ++i)
    preprocess_image(decode_image_file(data_path(std::string("images/") + files[i]), 3),
                     model->preprocess(), photos.data() + i * c.input_size());
  const std::vector<float> got = run(model, photos.data(), 2);
  for (int i = 0; i < 2; ++i) {
    const float *g = got.data() + i * k, *w = want.data() + i * k;
    if (c.num_classes > 0) {
      EXPECT_EQ(argmax(g, k), argmax(w, k)) << v.name << " " << files[i];
    } else {
      const double cos = cosine(g, w, k);
      std::printf("[ measured ] %s: %s embedding cosine %.7f\n", v.name, files[i], cos);
      EXPECT_GE(cos, 0.9999) << v.name << " " << files[i];
    }
  }
}

const Variant kVariants[] = {
    {"deit3_small_layerscale",
     [](const VitConfig &c) {
       EXPECT_FALSE(c.pos_embed_prefix);  // pos_embed [1, 196, D]
       EXPECT_EQ(c.num_classes, 10);
     }},
    {"dinov2_small_features",
     [](const VitConfig &c) {
       EXPECT_EQ(c.patch_size, 14);
       EXPECT_EQ(c.image_size, 518);
       EXPECT_TRUE(c.pos_embed_prefix);
       EXPECT_EQ(c.num_classes, 0);
       EXPECT_EQ(c.n_outputs(), 192);
     }},
    {"dinov2_small_reg4_features",
     [](const VitConfig &c) {
       EXPECT_EQ(c.reg_tokens, 4);
       EXPECT_FALSE(c.pos_embed_prefix);
       EXPECT_EQ(c.tokens(), 37 * 37 + 5);
     }},
    {"clip_base_quickgelu",
     [](const VitConfig &c) {
       EXPECT_TRUE(c.norm_pre);
       EXPECT_FALSE(c.patch_bias);
       EXPECT_EQ(c.act, Activation::quick_gelu);
       EXPECT_FLOAT_EQ(c.ln_eps, 1e-5f);
     }},
    {"vit_gap_noclass",
     [](const VitConfig &c) {
       EXPECT_FALSE(c.class_token);
       EXPECT_EQ(c.pool, Pool::avg);
       EXPECT_FALSE(c.fc_norm);
       EXPECT_FALSE(c.qkv_bias);
       EXPECT_EQ(c.image_size, 256);
     }},
    {"vit_fcnorm_avg",
     [](const VitConfig &c) {
       EXPECT_EQ(c.pool, Pool::avg);
       EXPECT_TRUE(c.fc_norm);
     }},
    {"vit_noqkvbias", [](const VitConfig &c) { EXPECT_FALSE(c.qkv_bias); }},
    {"vit_patch32_384",
     [](const VitConfig &c) {
       EXPECT_EQ(c.patch_size, 32);
       EXPECT_EQ(c.image_size, 384);
     }},
};

INSTANTIATE_TEST_SUITE_P(Timm, FamilyGolden, ::testing::ValuesIn(kVariants),
                         [](const auto &info) { return std::string(info.param.name); });

}  // namespace
}  // namespace vqm::test
