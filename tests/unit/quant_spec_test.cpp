// The "quantization" section of a .vqm (models/quant_spec.h): a round trip of every point, the
// optional two-range softmax grid (twin_shift) and chosen levels (levels), and one-line format
// errors for the grids a file may not hold.
#include "models/quant_spec.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace vqm::test {
namespace {

using nlohmann::json;

ModelQuant two_blocks() {
  ModelQuant m;
  auto point = [](int bits, int zp, float delta) {
    ActQuant a;
    a.enabled = true;
    a.bits = bits, a.zero_point = zp, a.delta = delta;
    return a;
  };
  m.patch_in = m.head_in = point(8, 128, 0.02f);
  for (int b = 0; b < 2; ++b) {
    BlockQuant bq;
    for (const auto &p : block_points()) bq.*p.member = point(4, 8, 0.1f * float(b + 1));
    bq.attn = point(4, 0, 1.f / 64);
    bq.attn.twin_shift = b == 0 ? 3 : 0;
    if (b == 1) {  // chosen levels on a fine grid of step 0.1 / 8, zero point 100
      bq.fc2_in.zero_point = 100;
      bq.fc2_in.levels = {10,  40,  70,  90,  100, 104, 108, 112,
                          118, 126, 140, 160, 190, 220, 240, 255};
    }
    bq.attn_bits = bq.mlp_bits = 4;
    m.blocks.push_back(bq);
  }
  return m;
}

// two_blocks() in JSON with one activation's entry patched.
json with(const std::string &point, const json &patch) {
  json q = json::object();
  quant_to_json(two_blocks(), q);
  q["activations"][point].update(patch);
  return q;
}

TEST(QuantSpec, RoundTripKeepsEveryGridAndTheTwoRangeShift) {
  json q = json::object();
  quant_to_json(two_blocks(), q);
  EXPECT_EQ(q["activations"]["blocks.0.attn.softmax"]["twin_shift"], 3);
  EXPECT_FALSE(q["activations"]["blocks.1.attn.softmax"].contains("twin_shift"));  // uniform
  const ModelQuant back = quant_from_json(q, 2, true);
  const ModelQuant want = two_blocks();
  for (int b = 0; b < 2; ++b)
    for (const auto &p : block_points()) {
      const ActQuant &x = back.blocks[b].*p.member, &y = want.blocks[b].*p.member;
      EXPECT_EQ(x.bits, y.bits) << p.key;
      EXPECT_EQ(x.zero_point, y.zero_point) << p.key;
      EXPECT_EQ(x.delta, y.delta) << p.key;
      EXPECT_EQ(x.twin_shift, y.twin_shift) << p.key;
      EXPECT_EQ(x.levels, y.levels) << p.key;
    }
  EXPECT_EQ(q["activations"]["blocks.1.mlp.fc2.input"]["levels"].size(), 16u);
  EXPECT_FALSE(q["activations"]["blocks.0.mlp.fc2.input"].contains("levels"));  // uniform
}

TEST(QuantSpec, ChosenLevelsAFileMayNotHoldAreFormatErrors) {
  const json eight = json::array({0, 30, 60, 90, 120, 150, 180, 210});  // 3 bits
  // Only the inputs the layer table marks (LayerNorm and GELU outputs): not proj's, not Q's.
  EXPECT_VQM_ERROR(
      quant_from_json(with("blocks.0.attn.proj.input", {{"bits", 3}, {"levels", eight}}), 2, true),
      format, "only LayerNorm and GELU outputs");
  EXPECT_VQM_ERROR(
      quant_from_json(with("blocks.0.attn.q", {{"bits", 3}, {"levels", eight}}), 2, true), format,
      "only LayerNorm and GELU outputs");
  EXPECT_NO_THROW(quant_from_json(
      with("blocks.0.attn.qkv.input", {{"bits", 3}, {"zero_point", 200}, {"levels", eight}}), 2,
      true));
  // 2^bits codes, increasing, in [0, 255]; at most 7 bits; no two-range shift beside them.
  EXPECT_VQM_ERROR(quant_from_json(with("blocks.0.mlp.fc1.input", {{"levels", eight}}), 2, true),
                   format,
                   "not 2^bits codes");  // 4 bits, 8 codes
  EXPECT_VQM_ERROR(
      quant_from_json(with("blocks.0.mlp.fc1.input",
                           {{"bits", 3}, {"levels", {0, 30, 60, 60, 120, 150, 180, 210}}}),
                      2, true),
      format, "not increasing");
  EXPECT_VQM_ERROR(
      quant_from_json(with("blocks.0.mlp.fc1.input",
                           {{"bits", 3}, {"levels", {0, 30, 60, 90, 120, 150, 180, 256}}}),
                      2, true),
      format, "not increasing codes in [0, 255]");
  EXPECT_VQM_ERROR(
      quant_from_json(with("blocks.0.mlp.fc1.input", {{"bits", 3}, {"levels", "x"}}), 2, true),
      format, "not 2^bits codes");
  json all(json::array());
  for (int c = 0; c < 256; ++c) all.push_back(c);
  EXPECT_VQM_ERROR(
      quant_from_json(with("blocks.0.mlp.fc1.input", {{"bits", 8}, {"levels", all}}), 2, true),
      format, "at most 7 bits");
  // With levels the zero point is the fine grid's (up to 255), without them the b-bit grid's.
  EXPECT_VQM_ERROR(
      quant_from_json(with("blocks.0.mlp.fc1.input", {{"bits", 3}, {"zero_point", 200}}), 2, true),
      format, "zero_point 200 outside [0, 7]");
}

TEST(QuantSpec, TwoRangeGridsAFileMayNotHoldAreFormatErrors) {
  EXPECT_VQM_ERROR(quant_from_json(with("blocks.0.attn.q", {{"twin_shift", 1}}), 2, true), format,
                   "only the softmax output");
  EXPECT_VQM_ERROR(quant_from_json(with("blocks.0.attn.softmax", {{"twin_shift", 4}}), 2, true),
                   format, "twin_shift 4");  // 4 bits: shift at most 3
  EXPECT_VQM_ERROR(
      quant_from_json(with("blocks.0.attn.softmax", {{"twin_shift", 3}, {"zero_point", 2}}), 2,
                      true),
      format, "zero point 2");
  EXPECT_VQM_ERROR(quant_from_json(with("blocks.0.attn.softmax", {{"twin_shift", 1.5}}), 2, true),
                   format, "non-integer twin_shift");
  EXPECT_VQM_ERROR(
      quant_from_json(with("blocks.0.attn.softmax", {{"twin_shift", -100000000000LL}}), 2, true),
      format, "twin_shift -100000000000");
  // 8 bits: the coarse top 2^(8-1+1) = 256 is no byte.
  EXPECT_VQM_ERROR(
      quant_from_json(with("blocks.0.attn.softmax", {{"bits", 8}, {"twin_shift", 1}}), 2, true),
      format, "8-bit");
}

}  // namespace
}  // namespace vqm::test
