// The "quantization" section of a .vqm (models/quant_spec.h): a round trip of every point, the
// optional two-range softmax grid (twin_shift), and one-line format errors for the grids a file
// may not hold.
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
    bq.attn_bits = bq.mlp_bits = 4;
    m.blocks.push_back(bq);
  }
  return m;
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
    }
}

TEST(QuantSpec, TwoRangeGridsAFileMayNotHoldAreFormatErrors) {
  json good = json::object();
  quant_to_json(two_blocks(), good);
  auto with = [&](const std::string &point, const json &patch) {
    json q = good;
    q["activations"][point].update(patch);
    return q;
  };
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
