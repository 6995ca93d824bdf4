// The chosen-level grid of kernels.h (CodeMap): nearest_code_map against a brute-force nearest
// level (ties to the lower one), map_codes as the map, and the simulated twin
// (fake_quant_mapped_f32) against the integer path (quantize on the fine grid, then map_codes)
// bit for bit over awkward sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <set>
#include <vector>

#include "kernels/kernels.h"

namespace vqm::kernels {
namespace {

std::vector<uint8_t> random_levels(int count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::set<int> s;
  while (static_cast<int>(s.size()) < count) s.insert(static_cast<int>(rng() % 256));
  return std::vector<uint8_t>(s.begin(), s.end());
}

TEST(CodeMap, EveryCodeTakesTheNearestLevelATieTheLowerOne) {
  for (int count : {1, 2, 3, 8, 16, 100, 256})
    for (uint32_t seed = 0; seed < 20; ++seed) {
      const std::vector<uint8_t> lv = random_levels(count, seed);
      const CodeMap m = nearest_code_map(lv.data(), count);
      for (int c = 0; c < 256; ++c) {
        int best = lv[0];
        for (int l : lv)  // increasing: a later level replaces only when strictly nearer
          if (std::abs(l - c) < std::abs(best - c)) best = l;
        ASSERT_EQ(m.to[c], best) << "count " << count << " seed " << seed << " code " << c;
      }
    }
  const uint8_t two[] = {10, 20};
  const CodeMap m = nearest_code_map(two, 2);
  EXPECT_EQ(m.to[15], 10);  // the tie
  EXPECT_EQ(m.to[16], 20);
  EXPECT_EQ(m.to[0], 10);
  EXPECT_EQ(m.to[255], 20);
}

// The dispatched lookup (64 bytes at a time where the CPU has AVX512_VBMI) against its scalar
// twin over awkward sizes, every code and random maps, with guard bytes after the end.
TEST(CodeMap, LookupEqualsItsScalarTwin) {
  std::mt19937 rng(5);
  for (int count : {1, 8, 16, 200}) {
    const std::vector<uint8_t> lv = random_levels(count, 40 + count);
    const CodeMap m = nearest_code_map(lv.data(), count);
    for (int64_t n : {1, 15, 63, 64, 65, 127, 128, 129, 256, 1000, 4099}) {
      std::vector<uint8_t> a(static_cast<size_t>(n) + 64);
      for (auto &v : a) v = static_cast<uint8_t>(rng());
      for (int64_t i = 0; i < std::min<int64_t>(n, 256); ++i) a[i] = static_cast<uint8_t>(i);
      std::vector<uint8_t> b = a;
      map_codes(a.data(), n, m);
      map_codes_ref(b.data(), n, m);
      ASSERT_EQ(a, b) << "count " << count << " n " << n;  // guard bytes untouched too
      for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(std::binary_search(lv.begin(), lv.end(), a[i]));
    }
  }
}

TEST(CodeMap, SimulatedTwinEqualsTheIntegerPathBitForBit) {
  const float delta = 0.013f;
  const int zp = 77;
  const std::vector<uint8_t> lv = {5, 40, 60, 70, 77, 84, 95, 130};
  const CodeMap m = nearest_code_map(lv.data(), static_cast<int>(lv.size()));
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.f, 0.6f);
  for (int64_t n : {1, 15, 16, 17, 63, 64, 65, 1000, 4099}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (auto &v : x) v = d(rng);
    if (n > 3) x[0] = 1e6f, x[1] = -1e6f, x[2] = 0.f;  // clamped both ways, the zero point
    std::vector<uint8_t> codes(x.size());
    quantize(x.data(), codes.data(), n, QuantGrid{delta, zp, 255, false});
    map_codes(codes.data(), n, m);
    std::vector<float> hat = x;
    fake_quant_mapped_f32(hat.data(), n, delta, zp, m);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_TRUE(std::binary_search(lv.begin(), lv.end(), codes[i])) << i;
      ASSERT_EQ(hat[i], static_cast<float>(codes[i] - zp) * delta) << "n " << n << " i " << i;
    }
  }
}

}  // namespace
}  // namespace vqm::kernels
