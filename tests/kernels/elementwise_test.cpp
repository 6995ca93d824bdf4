// Fast kernels against their scalar reference twins over awkward sizes (1, tails of 16-lane
// vectors, rows longer than a cache line), and the vector math against libm.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/kernels.h"

namespace vqm::kernels {
namespace {

std::vector<float> random_vector(size_t n, float scale, uint32_t seed, float offset = 0.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(offset, scale);
  std::vector<float> v(n);
  for (auto &x : v) x = nd(rng);
  return v;
}

double max_rel_diff(const std::vector<float> &a, const std::vector<float> &b, double floor) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]) /
                        std::max(floor, std::fabs(static_cast<double>(b[i]))));
  return m;
}

const int64_t kCols[] = {1, 3, 15, 16, 17, 31, 50, 64, 192, 197, 385, 1000};

TEST(Kernels, DispatchPicksAvx512OnThisCpu) {
  // The machine this project targets has AVX-512; a silent fall back to the scalar path would
  // make every benchmark meaningless.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && !std::getenv("VQM_ISA")) {
    EXPECT_STREQ(active_isa(), "avx512");
  }
}

TEST(Kernels, LayerNormMatchesReference) {
  for (int64_t cols : kCols) {
    for (int64_t rows : {1, 7}) {
      // A large mean (like the residual stream) tests the two-pass variance.
      auto x = random_vector(rows * cols, 3.f, 1, 20.f);
      auto g = random_vector(cols, 1.f, 2), b = random_vector(cols, 1.f, 3);
      std::vector<float> fast(x.size()), ref(x.size());
      layernorm_f32(x.data(), fast.data(), rows, cols, g.data(), b.data(), 1e-6f);
      layernorm_f32_ref(x.data(), ref.data(), rows, cols, g.data(), b.data(), 1e-6f);
      EXPECT_LT(max_rel_diff(fast, ref, 1.0), 2e-5) << "rows " << rows << " cols " << cols;
      // In place (x aliases y) gives the same as out of place.
      layernorm_f32(x.data(), x.data(), rows, cols, g.data(), b.data(), 1e-6f);
      EXPECT_EQ(x, fast);
    }
  }
}

TEST(Kernels, SoftmaxMatchesReference) {
  for (int64_t cols : kCols) {
    for (float scale : {0.125f, 1.f}) {
      auto x = random_vector(5 * cols, 8.f, 4);
      auto fast = x, ref = x;
      softmax_f32(fast.data(), 5, cols, scale);
      softmax_f32_ref(ref.data(), 5, cols, scale);
      EXPECT_LT(max_rel_diff(fast, ref, 1e-6), 1e-5) << "cols " << cols;
      for (int64_t r = 0; r < 5; ++r) {
        double sum = 0;
        for (int64_t c = 0; c < cols; ++c) sum += fast[r * cols + c];
        EXPECT_NEAR(sum, 1.0, 1e-5);
      }
    }
  }
}

TEST(Kernels, SoftmaxSurvivesExtremeInputs) {
  std::vector<float> x = {1e30f, -1e30f, 0.f, 88.f, -88.f, 100.f, -1e4f};
  softmax_f32(x.data(), 1, static_cast<int64_t>(x.size()), 1.f);
  for (float v : x) EXPECT_TRUE(std::isfinite(v));
  EXPECT_FLOAT_EQ(x[0], 1.f);
}

TEST(Kernels, GeluMatchesReference) {
  for (int64_t n : kCols) {
    auto x = random_vector(n * 3, 3.f, 5);
    auto fast = x, ref = x;
    gelu_erf_f32(fast.data(), static_cast<int64_t>(fast.size()));
    gelu_erf_f32_ref(ref.data(), static_cast<int64_t>(ref.size()));
    // Error measured relative to max(1, |x|), not to gelu(x): for x << 0, gelu(x) = x * (1 +
    // erf(x/sqrt2)) / 2 is a cancellation that any float implementation (PyTorch's included)
    // resolves only to ~1 float ulp of x, while the reference computes it in double.
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i)
      worst = std::max(worst, std::fabs(static_cast<double>(fast[i]) - ref[i]) /
                                  std::max(1.0, std::fabs(static_cast<double>(x[i]))));
    EXPECT_LT(worst, 5e-7) << "n " << n;
  }
  // Saturation: gelu(x) -> x for large x, -> 0 for very negative x.
  std::vector<float> big = {10.f, -10.f, 40.f, -40.f};
  gelu_erf_f32(big.data(), 4);
  EXPECT_FLOAT_EQ(big[0], 10.f);
  EXPECT_NEAR(big[1], 0.f, 1e-6);
  EXPECT_FLOAT_EQ(big[2], 40.f);
  EXPECT_NEAR(big[3], 0.f, 1e-6);
}

TEST(Kernels, LayoutPermutations) {
  const int64_t B = 2, T = 5, S = 3, H = 2, D = 4;
  std::vector<float> src(B * T * S * H * D), dst(src.size());
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(i);
  split_heads_f32(src.data(), dst.data(), B, T, S, H, D);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t s = 0; s < S; ++s)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t d = 0; d < D; ++d)
            ASSERT_EQ(dst[(((s * B + b) * H + h) * T + t) * D + d],
                      src[(((b * T + t) * S + s) * H + h) * D + d]);
  std::vector<float> merged(B * T * H * D);
  merge_heads_f32(dst.data(), merged.data(), B, H, T, D);  // the q block: [B,H,T,D] -> [B,T,H,D]
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d)
          ASSERT_EQ(merged[((b * T + t) * H + h) * D + d],
                    src[(((b * T + t) * S + 0) * H + h) * D + d]);

  const int64_t N = 2, C = 3, HW = 8, P = 4;
  std::vector<float> img(N * C * HW * HW), patches(img.size());
  for (size_t i = 0; i < img.size(); ++i) img[i] = static_cast<float>(i);
  patchify_f32(img.data(), patches.data(), N, C, HW, HW, P);
  const int64_t G = HW / P;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t py = 0; py < G; ++py)
      for (int64_t px = 0; px < G; ++px)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t y = 0; y < P; ++y)
            for (int64_t x = 0; x < P; ++x)
              ASSERT_EQ(patches[((n * G + py) * G + px) * C * P * P + (c * P + y) * P + x],
                        img[((n * C + c) * HW + py * P + y) * HW + px * P + x]);
}

}  // namespace
}  // namespace vqm::kernels

namespace vqm::kernels {
namespace {

TEST(Kernels, FakeQuantEqualsReferenceBitForBit) {
  for (int64_t n : kCols) {
    for (int bits : {3, 4, 8}) {
      const int qmax = (1 << bits) - 1;
      for (int zp : {0, 1 << (bits - 1), 2}) {
        auto x = random_vector(n * 3, 2.f, 9);
        // Ties: exact multiples of delta / 2 must round to even in both.
        x[0] = 0.25f;
        if (x.size() > 1) x[1] = -0.75f;
        auto fast = x, ref = x;
        fake_quant_f32(fast.data(), static_cast<int64_t>(x.size()), 0.5f, zp, qmax);
        fake_quant_f32_ref(ref.data(), static_cast<int64_t>(x.size()), 0.5f, zp, qmax);
        ASSERT_EQ(fast, ref) << "n " << n << " bits " << bits << " zp " << zp;
        for (float v : fast) {
          EXPECT_GE(v, -zp * 0.5f);
          EXPECT_LE(v, (qmax - zp) * 0.5f);
        }
      }
    }
  }
  std::vector<float> ties = {0.25f, 0.75f, -0.25f, 100.f, -100.f};
  fake_quant_f32(ties.data(), 5, 0.5f, 8, 15);  // 4-bit signed-symmetric grid [-4, 3.5]
  EXPECT_EQ(ties, (std::vector<float>{0.f, 1.f, 0.f, 3.5f, -4.f}));
}

}  // namespace
}  // namespace vqm::kernels
