// The ViT family (tests/data/models/family, copied from ../shared/models/family by
// scripts/trim-family-refs.py): small random-weight timm checkpoints of eight architectures, each
// with timm's outputs. Each converts from its own tensors and metadata (no preset, no flags) and
// its fp32 forward matches timm: the two noise rows within 1e-3 of the outputs' scale, and the
// two photos, through our own decode and the preprocessing read from the checkpoint, to the same
// top-1 class (classifiers) or a cosine of at least 0.9999 (embeddings).
#include <gtest/gtest.h>

#include <ostream>

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

// Names the parameter in test listings (gtest would print its bytes, pointers included, into
// the names CTest registers).
void PrintTo(const Variant &p, std::ostream *os) {
  *os << p.name;
}

class FamilyGolden : public ::testing::TestWithParam<Variant> {};

TEST_P(FamilyGolden, ConvertsAndMatchesTimm) {
  const Variant &v = GetParam();
  const auto model = convert_fixture(std::string("family/") + v.name);
  const VitConfig &c = model->config();
  v.check(c);
  expect_matches_family_reference(
      model, std::string("models/family/") + v.name + ".ref.safetensors", v.name);
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
