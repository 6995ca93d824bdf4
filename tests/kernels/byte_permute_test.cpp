// The byte permutations of the integer path (kernels.h ByteClamp), the head merge and split: the
// dispatched kernels against their scalar twins and against the element formula
// clamp(b, lo, hi) + add (mod 256) at its permuted place, over awkward sizes (odd and
// vector-straddling row lengths, single tokens and heads) and clamps (u8 levels of 4 and 8-bit
// grids, int8 operands, a single value).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "test_util.h"

namespace vqm::kernels {
namespace {

using Bytes = std::vector<uint8_t>;

// Seeded bytes over all of int8.
std::vector<int8_t> random_s8(size_t n, uint32_t seed) {
  const std::vector<float> u = test::uniform_floats(n, seed, -128.f, 128.f);
  std::vector<int8_t> v(n);
  std::transform(u.begin(), u.end(), v.begin(),
                 [](float f) { return static_cast<int8_t>(std::floor(f)); });
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

// Per-group clamps that differ in range and add, as q, k and v may.
std::vector<ByteClamp> group_clamps(int64_t s) {
  std::vector<ByteClamp> clamps;
  for (int64_t i = 0; i < s; ++i) clamps.push_back(kClamps[(i + 1) % std::size(kClamps)]);
  return clamps;
}

TEST(BytePermute, SplitHeadsS8IsTheClampedPermutation) {
  struct Shape {
    int64_t b, t, s, h, d;
  };
  std::vector<Shape> shapes;
  for (int64_t d : {1, 3, 15, 16, 17, 63, 64, 65, 129}) shapes.push_back({2, 3, 3, 2, d});
  for (int64_t t : {1, 2, 17, 197}) shapes.push_back({1, t, 3, 3, 17});
  shapes.push_back({2, 197, 5, 6, 64});
  shapes.push_back({1, 1, 1, 1, 1});
  for (const Shape &sh : shapes) {
    const int64_t block = sh.b * sh.h * sh.t * sh.d;
    const auto src = random_s8(static_cast<size_t>(block * sh.s), 32);
    const auto clamps = group_clamps(sh.s);
    std::vector<Bytes> fast(sh.s, Bytes(block, 0xAA)), ref(sh.s, Bytes(block, 0x55));
    std::vector<uint8_t *> fast_ptrs, ref_ptrs;
    for (int64_t si = 0; si < sh.s; ++si) {
      fast_ptrs.push_back(fast[si].data());
      ref_ptrs.push_back(ref[si].data());
    }
    split_heads_s8(src.data(), fast_ptrs.data(), clamps.data(), sh.b, sh.t, sh.s, sh.h, sh.d);
    split_heads_s8_ref(src.data(), ref_ptrs.data(), clamps.data(), sh.b, sh.t, sh.s, sh.h, sh.d);
    const std::string where = "b " + std::to_string(sh.b) + " t " + std::to_string(sh.t) + " s " +
                              std::to_string(sh.s) + " h " + std::to_string(sh.h) + " d " +
                              std::to_string(sh.d);
    for (int64_t si = 0; si < sh.s; ++si) ASSERT_EQ(fast[si], ref[si]) << where << " group " << si;
    // Element (b, t, s, h, d) of src, clamped with clamps[s], lands in dst[s][b, h, t, d].
    for (int64_t bi = 0; bi < sh.b; ++bi)
      for (int64_t ti = 0; ti < sh.t; ++ti)
        for (int64_t si = 0; si < sh.s; ++si)
          for (int64_t hi = 0; hi < sh.h; ++hi)
            for (int64_t di = 0; di < sh.d; ++di) {
              const int8_t v = src[(((bi * sh.t + ti) * sh.s + si) * sh.h + hi) * sh.d + di];
              ASSERT_EQ(fast[si][((bi * sh.h + hi) * sh.t + ti) * sh.d + di],
                        clamp_byte(v, clamps[si]))
                  << where << " " << describe(clamps[si]);
            }
  }
}

// With dst_t, a call writes a token range of longer head-major blocks (how the integer engine
// splits one image's tokens between threads) and leaves every other byte alone; groups may have
// different lengths (a dense q block next to full-length k and v).
TEST(BytePermute, SplitHeadsS8FillsATokenRangeOfLongerBlocks) {
  const int64_t b = 2, t = 7, s = 3, h = 3, d = 17, t0 = 5;
  const int64_t dst_t[s] = {t, 16, 29};
  const auto src = random_s8(static_cast<size_t>(b * t * s * h * d), 33);
  const auto clamps = group_clamps(s);
  for (bool use_ref : {false, true}) {
    std::vector<Bytes> out;
    std::vector<uint8_t *> ptrs;
    for (int64_t si = 0; si < s; ++si) out.emplace_back(b * h * dst_t[si] * d, 0x5A);
    for (int64_t si = 0; si < s; ++si)
      ptrs.push_back(out[si].data() + (si == 0 ? 0 : t0 * d));  // q from token 0, k, v from t0
    if (use_ref)
      split_heads_s8_ref(src.data(), ptrs.data(), clamps.data(), b, t, s, h, d, dst_t);
    else
      split_heads_s8(src.data(), ptrs.data(), clamps.data(), b, t, s, h, d, dst_t);
    for (int64_t si = 0; si < s; ++si) {
      const int64_t first = si == 0 ? 0 : t0;
      for (int64_t bi = 0; bi < b; ++bi)
        for (int64_t hi = 0; hi < h; ++hi)
          for (int64_t ti = 0; ti < dst_t[si]; ++ti)
            for (int64_t di = 0; di < d; ++di) {
              uint8_t want = 0x5A;  // outside [first, first + t): untouched
              if (ti >= first && ti < first + t)
                want = clamp_byte(src[(((bi * t + ti - first) * s + si) * h + hi) * d + di],
                                  clamps[si]);
              ASSERT_EQ(out[si][((bi * h + hi) * dst_t[si] + ti) * d + di], want)
                  << (use_ref ? "ref" : "dispatched") << " group " << si << " b " << bi << " h "
                  << hi << " t " << ti << " d " << di;
            }
    }
  }
}

}  // namespace
}  // namespace vqm::kernels
