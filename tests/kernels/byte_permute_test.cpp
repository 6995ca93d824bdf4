// The byte permutations of the integer path (kernels.h ByteClamp): the dispatched kernels against
// their scalar twins and against the element formula clamp(b, lo, hi) + add (mod 256) at its
// permuted place, over awkward sizes (odd and vector-straddling row lengths, single tokens and
// heads) and clamps (u8 levels of 4 and 8-bit grids, int8 operands, a single value).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace vqm::kernels {
namespace {

using Bytes = std::vector<uint8_t>;

std::vector<int8_t> random_s8(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(-128, 127);
  std::vector<int8_t> v(n);
  for (auto &x : v) x = static_cast<int8_t>(u(rng));
  return v;
}

// The element formula, written out independently of the twins.
uint8_t clamp_byte(int8_t b, const ByteClamp &c) {
  const int clamped = b < c.lo ? c.lo : b > c.hi ? c.hi : b;
  return static_cast<uint8_t>((clamped + c.add) % 256);
}

// u8 levels of a 4-bit grid with zero point 3 and of an 8-bit one with 134 (written shifted by
// 6); int8 operands of a 6-bit grid and of the whole byte; one value only (lo == hi).
const ByteClamp kClamps[] = {
    {-3, 12, 3}, {-128, 127, 128}, {-31, 32, 0}, {-128, 127, 0}, {7, 7, 0}};

std::string describe(const ByteClamp &c) {
  return "clamp [" + std::to_string(c.lo) + ", " + std::to_string(c.hi) + "] + " +
         std::to_string(c.add);
}

TEST(BytePermute, MergeHeadsS8IsTheClampedPermutation) {
  struct Shape {
    int64_t b, h, t, d;
  };
  std::vector<Shape> shapes;
  for (int64_t d : {1, 3, 15, 16, 17, 63, 64, 65, 100, 129}) shapes.push_back({2, 3, 5, d});
  for (int64_t t : {1, 2, 17, 197}) shapes.push_back({1, 6, t, 17});
  shapes.push_back({1, 1, 1, 1});
  shapes.push_back({1, 1, 7, 64});
  shapes.push_back({2, 6, 197, 64});
  for (const Shape &sh : shapes) {
    const int64_t n = sh.b * sh.h * sh.t * sh.d;
    const auto src = random_s8(static_cast<size_t>(n), 31);
    for (const ByteClamp &c : kClamps) {
      const std::string where = "b " + std::to_string(sh.b) + " h " + std::to_string(sh.h) + " t " +
                                std::to_string(sh.t) + " d " + std::to_string(sh.d) + " " +
                                describe(c);
      // Guard bytes after the output catch a tail store past the end.
      Bytes fast(n + 64, 0xAA), ref(n + 64, 0xAA);
      merge_heads_s8(src.data(), fast.data(), sh.b, sh.h, sh.t, sh.d, c);
      merge_heads_s8_ref(src.data(), ref.data(), sh.b, sh.h, sh.t, sh.d, c);
      ASSERT_EQ(fast, ref) << where;
      for (int64_t bi = 0; bi < sh.b; ++bi)
        for (int64_t hi = 0; hi < sh.h; ++hi)
          for (int64_t ti = 0; ti < sh.t; ++ti)
            for (int64_t di = 0; di < sh.d; ++di) {
              const int8_t v = src[((bi * sh.h + hi) * sh.t + ti) * sh.d + di];
              ASSERT_EQ(fast[((bi * sh.t + ti) * sh.h + hi) * sh.d + di], clamp_byte(v, c))
                  << where;
            }
      for (int64_t i = n; i < n + 64; ++i) ASSERT_EQ(fast[i], 0xAA) << where << " guard " << i;
    }
  }
}

}  // namespace
}  // namespace vqm::kernels
