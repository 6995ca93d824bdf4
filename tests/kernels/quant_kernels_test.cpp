// The quantizing kernels of the integer path (kernels.h) against their scalar references over
// awkward sizes, grids and inputs; against the unfused f32 kernel followed by quantize (the
// simulated path); and quantize against fake_quant_f32.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace vqm::kernels {
namespace {

using Bytes = std::vector<uint8_t>;

const int64_t kSizes[] = {1, 3, 15, 16, 17, 50, 192, 197, 385};

std::vector<float> random_vector(size_t n, float scale, uint32_t seed, float offset = 0.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(offset, scale);
  std::vector<float> v(n);
  for (auto &x : v) x = nd(rng);
  return v;
}

// The grids every kernel is swept over: bits 3/4/8; zero point 0, 2^(b-1) (symmetric) and an
// asymmetric one; unsigned and signed stores. Signed stores only with zero points for which
// q - zp fits s8 (the documented precondition; saturation is tested on its own).
std::vector<QuantGrid> test_grids(float range) {
  std::vector<QuantGrid> grids;
  for (int bits : {3, 4, 8}) {
    const int qmax = (1 << bits) - 1;
    // An irregular step, so level boundaries fall at arbitrary places relative to the data.
    const float delta = range / static_cast<float>(qmax) * 1.0371f;
    for (int zp : {0, 1 << (bits - 1), qmax / 3 + 1})
      for (bool store_signed : {false, true}) {
        if (store_signed && (zp > 128 || qmax - zp > 127)) continue;
        grids.push_back({delta, zp, qmax, store_signed});
      }
  }
  return grids;
}

std::string describe(const QuantGrid &g) {
  return "delta " + std::to_string(g.delta) + " zp " + std::to_string(g.zero_point) + " qmax " +
         std::to_string(g.qmax) + (g.store_signed ? " s8" : " u8");
}

// The grid level q in [0, qmax] that a stored byte stands for.
int level_of(uint8_t byte, const QuantGrid &g) {
  return g.store_signed ? static_cast<int8_t>(byte) + g.zero_point : byte;
}

// The value a stored byte dequantizes to, computed as fake_quant_f32 computes (q - zp) * delta.
float dequantize(uint8_t byte, const QuantGrid &g) {
  if (g.store_signed) return static_cast<float>(static_cast<int8_t>(byte)) * g.delta;
  return (static_cast<float>(byte) - static_cast<float>(g.zero_point)) * g.delta;
}

// Tallies fast-vs-ref level differences across a whole sweep: every element may differ by at most
// one level (a value within float rounding of a boundary), and fewer than 0.1% may differ at all.
struct LevelDiffs {
  int64_t elements = 0, differing = 0;

  void add(const Bytes &fast, const Bytes &ref, const QuantGrid &g, const std::string &where) {
    ASSERT_EQ(fast.size(), ref.size());
    for (size_t i = 0; i < fast.size(); ++i) {
      const int diff = std::abs(level_of(fast[i], g) - level_of(ref[i], g));
      ASSERT_LE(diff, 1) << where << " " << describe(g) << " at " << i;
      differing += diff != 0;
    }
    elements += static_cast<int64_t>(fast.size());
  }
  void expect_rare() const {
    EXPECT_GT(elements, 0);
    EXPECT_LT(static_cast<double>(differing), 1e-3 * static_cast<double>(elements))
        << differing << " of " << elements << " elements one level apart";
    std::printf("    %lld of %lld elements one level from the reference\n",
                static_cast<long long>(differing), static_cast<long long>(elements));
  }
};

// Inputs for the plain quantizer: normal data spanning the grid and beyond, exact ties (multiples
// of delta / 2 are representable only for a power-of-two delta, so ties use delta = 0.5 below),
// and extremes: huge, infinite, denormal, signed zeros.
std::vector<float> quantize_inputs(size_t n, uint32_t seed, float spread) {
  auto x = random_vector(n, spread, seed);
  const float extremes[] = {0.f,
                            -0.f,
                            1e30f,
                            -1e30f,
                            std::numeric_limits<float>::max(),
                            -std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::denorm_min(),
                            -1e-40f,
                            1e-30f,
                            0.25f,
                            0.75f,
                            -1.25f};
  for (size_t i = 0; i < n; i += 7) x[i] = extremes[(i / 7) % std::size(extremes)];
  return x;
}

TEST(QuantKernels, QuantizeMatchesReferenceBitForBit) {
  for (int64_t n : kSizes) {
    for (float spread : {1.f, 30.f}) {
      const auto x = quantize_inputs(static_cast<size_t>(n) * 3, 11, spread);
      auto grids = test_grids(4.f);
      for (int bits : {3, 4, 8}) grids.push_back({0.5f, 1 << (bits - 1), (1 << bits) - 1, true});
      for (const QuantGrid &g : grids) {
        Bytes fast(x.size(), 0xAA), ref(x.size(), 0x55);
        quantize(x.data(), fast.data(), static_cast<int64_t>(x.size()), g);
        quantize_ref(x.data(), ref.data(), static_cast<int64_t>(x.size()), g);
        ASSERT_EQ(fast, ref) << "n " << x.size() << " " << describe(g);
      }
    }
  }
}

TEST(QuantKernels, QuantizeAgreesWithFakeQuantBitForBit) {
  // The integer engine's activations must dequantize to exactly what the simulated forward
  // computes, on both dispatch paths.
  for (int64_t n : kSizes) {
    const auto x = quantize_inputs(static_cast<size_t>(n) * 5, 12, 3.f);
    auto grids = test_grids(4.f);
    grids.push_back({0.5f, 8, 15, true});  // power-of-two step: exact ties round half to even
    for (const QuantGrid &g : grids) {
      Bytes q(x.size());
      quantize(x.data(), q.data(), static_cast<int64_t>(x.size()), g);
      auto simulated = x, simulated_ref = x;
      fake_quant_f32(simulated.data(), static_cast<int64_t>(x.size()), g.delta, g.zero_point,
                     g.qmax);
      fake_quant_f32_ref(simulated_ref.data(), static_cast<int64_t>(x.size()), g.delta,
                         g.zero_point, g.qmax);
      for (size_t i = 0; i < x.size(); ++i) {
        const float v = dequantize(q[i], g);
        ASSERT_EQ(std::memcmp(&v, &simulated[i], sizeof v), 0)
            << describe(g) << " x " << x[i] << ": " << v << " vs " << simulated[i];
        ASSERT_EQ(v, simulated_ref[i]) << describe(g) << " x " << x[i];
      }
    }
  }
}

TEST(QuantKernels, QuantizeNearTiesBitForBit) {
  // Values within a few ulps of every tie (k + 1/2) * delta, over many steps: the fast path must
  // land each where the rule of kernels.h (x * quant_inverse(delta)) puts it. The sweep contains
  // cases where a true division, x / delta, rounds to the other level, so this catches a kernel
  // (or a reference) that divides, or that approximates the reciprocal (vrcp14ps).
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> log_delta(-14.f, 8.f);
  int64_t division_would_differ = 0;
  for (int trial = 0; trial < 40; ++trial) {
    const float delta = std::exp2(log_delta(rng));
    const float inv = quant_inverse(delta);
    std::vector<float> x;
    for (int k = -300; k <= 300; ++k) {
      float v = (static_cast<float>(k) + 0.5f) * delta;
      for (int step = 0; step < 6; ++step) v = std::nextafter(v, -INFINITY);
      for (int step = 0; step < 13; ++step, v = std::nextafter(v, INFINITY)) {
        x.push_back(v);
        if (std::nearbyint(v * inv) != std::nearbyint(v / delta)) ++division_would_differ;
      }
    }
    for (const QuantGrid &g : {QuantGrid{delta, 128, 255, false}, QuantGrid{delta, 0, 255, false},
                               QuantGrid{delta, 128, 255, true}, QuantGrid{delta, 8, 15, true}}) {
      Bytes fast(x.size()), ref(x.size());
      quantize(x.data(), fast.data(), static_cast<int64_t>(x.size()), g);
      quantize_ref(x.data(), ref.data(), static_cast<int64_t>(x.size()), g);
      ASSERT_EQ(fast, ref) << describe(g);
      if (g.store_signed) continue;
      for (size_t i = 0; i < x.size(); ++i) {  // the rule itself, written out independently
        const float q = std::nearbyint(x[i] * (1.0f / delta)) + static_cast<float>(g.zero_point);
        ASSERT_EQ(ref[i], static_cast<uint8_t>(std::clamp(q, 0.f, static_cast<float>(g.qmax))))
            << describe(g) << " x " << x[i];
      }
    }
  }
  EXPECT_GT(division_would_differ, 0);
}

TEST(QuantKernels, QuantizeExtremesTiesAndSaturation) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {0.25f,  0.75f, -0.25f, -0.75f, 1e30f, -1e30f, inf,  -inf,
                                1e-40f, -0.f,  100.f,  -100.f, 3.5f,  -4.f,   1.25f};
  // 4-bit symmetric grid, delta 0.5: levels -8..7 around zp 8. Ties go to the even integer.
  const std::vector<int8_t> want_s8 = {0, 2, 0, -2, 7, -8, 7, -8, 0, 0, 7, -8, 7, -8, 2};
  for (auto fn : {quantize, quantize_ref}) {
    Bytes y(x.size());
    fn(x.data(), y.data(), static_cast<int64_t>(x.size()), {0.5f, 8, 15, true});
    for (size_t i = 0; i < x.size(); ++i)
      EXPECT_EQ(static_cast<int8_t>(y[i]), want_s8[i]) << "x " << x[i];
    // Unsigned 8-bit, zp 3: the same values clamp to [0, 255].
    fn(x.data(), y.data(), static_cast<int64_t>(x.size()), {0.5f, 3, 255, false});
    const Bytes want_u8 = {3, 5, 3, 1, 255, 0, 255, 0, 3, 3, 203, 0, 10, 0, 5};
    EXPECT_EQ(y, want_u8);
    // A signed store on an 8-bit grid with zp 0 breaks the s8 precondition: it saturates at 127
    // (both paths alike) instead of wrapping to negative values.
    fn(x.data(), y.data(), static_cast<int64_t>(x.size()), {0.5f, 0, 255, true});
    EXPECT_EQ(static_cast<int8_t>(y[4]), 127);
    EXPECT_EQ(static_cast<int8_t>(y[10]), 127);
    EXPECT_EQ(static_cast<int8_t>(y[1]), 2);
    // NaN is outside the contract but must not be undefined: it lands on level 0 on both paths.
    const float nan = std::numeric_limits<float>::quiet_NaN();
    uint8_t b = 0xAA;
    fn(&nan, &b, 1, {0.5f, 3, 255, false});
    EXPECT_EQ(b, 0);
  }
  // Huge and tiny steps.
  for (float delta : {1e-30f, 1e30f}) {
    Bytes fast(x.size()), ref(x.size());
    quantize(x.data(), fast.data(), static_cast<int64_t>(x.size()), {delta, 128, 255, true});
    quantize_ref(x.data(), ref.data(), static_cast<int64_t>(x.size()), {delta, 128, 255, true});
    EXPECT_EQ(fast, ref) << "delta " << delta;
  }
}

TEST(QuantKernels, LayerNormQuantWithinOneLevelOfReference) {
  LevelDiffs diffs;
  for (int64_t cols : kSizes) {
    for (int64_t rows : {1, 7}) {
      // Residual streams have a large mean. Not much larger than 1e3 here: at mean / std ~ 1e4
      // the float row mean (layernorm_f32's, shared with the simulated path on purpose) itself
      // moves more than 0.1% of levels; FusedKernelsEqualF32KernelThenQuantize covers that range.
      for (float offset : {20.f, 1e3f}) {
        const auto x = random_vector(rows * cols, 3.f, 1, offset);
        const auto gamma = random_vector(cols, 1.f, 2), beta = random_vector(cols, 1.f, 3);
        for (const QuantGrid &g : test_grids(6.f)) {
          Bytes fast(x.size()), ref(x.size());
          layernorm_quant(x.data(), fast.data(), rows, cols, gamma.data(), beta.data(), 1e-6f, g);
          layernorm_quant_ref(x.data(), ref.data(), rows, cols, gamma.data(), beta.data(), 1e-6f,
                              g);
          diffs.add(fast, ref, g, "rows " + std::to_string(rows) + " cols " + std::to_string(cols));
        }
      }
    }
  }
  // Extremes: huge and tiny spreads (the tiny one normalises to eps-dominated near-zeros).
  for (float spread : {1e12f, 1e-20f}) {
    const int64_t rows = 3, cols = 197;
    const auto x = random_vector(rows * cols, spread, 4);
    const auto gamma = random_vector(cols, 1.f, 5), beta = random_vector(cols, 1.f, 6);
    for (const QuantGrid &g : test_grids(6.f)) {
      Bytes fast(x.size()), ref(x.size());
      layernorm_quant(x.data(), fast.data(), rows, cols, gamma.data(), beta.data(), 1e-6f, g);
      layernorm_quant_ref(x.data(), ref.data(), rows, cols, gamma.data(), beta.data(), 1e-6f, g);
      diffs.add(fast, ref, g, "spread " + std::to_string(spread));
    }
  }
  diffs.expect_rare();
}

TEST(QuantKernels, GeluQuantWithinOneLevelOfReference) {
  LevelDiffs diffs;
  for (int64_t n : kSizes) {
    auto x = random_vector(static_cast<size_t>(n) * 5, 3.f, 7);
    for (size_t i = 0; i < x.size(); i += 11) x[i] = (i / 11) % 2 ? 1e30f : -1e30f;
    for (const QuantGrid &g : test_grids(6.f)) {
      Bytes fast(x.size()), ref(x.size());
      gelu_quant(x.data(), fast.data(), static_cast<int64_t>(x.size()), g);
      gelu_quant_ref(x.data(), ref.data(), static_cast<int64_t>(x.size()), g);
      diffs.add(fast, ref, g, "n " + std::to_string(x.size()));
    }
  }
  diffs.expect_rare();
}

// QuickGELU in double by other routes than quick_gelu_quant_ref's x / (1 + exp(-1.702 x)): the
// tanh form of the logistic for x >= 0, x e^z / (1 + e^z) (z = 1.702 x) for x < 0.
double quick_gelu_exact(double x) {
  if (std::isinf(x)) return x > 0 ? x : -0.0;  // the limits
  if (x >= 0) return x * 0.5 * (1.0 + std::tanh(0.851 * x));
  const double e = std::exp(1.702 * x);
  return x * e / (1.0 + e);
}

using QuantFn = void (*)(const float *, void *, int64_t, const QuantGrid &);

// Inputs for QuickGELU: normal data plus, every 11th element, extremes (huge, around the fast
// path's exp limits, signed zeros, denormals, infinities).
std::vector<float> quick_gelu_inputs(size_t n, float spread, uint32_t seed) {
  auto x = random_vector(n, spread, seed);
  const float inf = std::numeric_limits<float>::infinity();
  const float extremes[] = {1e4f,
                            -1e4f,
                            88.f,
                            -88.f,
                            100.f,
                            -100.f,
                            0.f,
                            -0.f,
                            1e-40f,
                            -1e-40f,
                            std::numeric_limits<float>::denorm_min(),
                            1e30f,
                            -1e30f,
                            -51.9f,
                            -52.f,
                            -52.1f,
                            -60.f,
                            10.f,
                            -10.f,
                            inf,
                            -inf};
  for (size_t i = 0; i < n; i += 11) x[i] = extremes[(i / 11) % std::size(extremes)];
  return x;
}

TEST(QuantKernels, QuickGeluQuantWithinOneLevelOfReference) {
  // As GeluQuantWithinOneLevelOfReference, plus: every element that differs sits within float
  // rounding of a level boundary (checked against an independent double value), and no byte past
  // n is written.
  LevelDiffs diffs;
  for (int64_t n : {0, 1, 15, 16, 17, 33, 1000, 1007}) {
    for (float spread : {3.f, 0.7f}) {
      const auto x = quick_gelu_inputs(static_cast<size_t>(n), spread, 19);
      auto grids = test_grids(6.f);
      for (const QuantGrid &g : test_grids(0.4f)) grids.push_back(g);
      for (const QuantGrid &g : grids) {
        const std::string where = "n " + std::to_string(n) + " spread " + std::to_string(spread);
        Bytes fast(n + 16, 0xAA), ref(n + 16, 0x55);
        quick_gelu_quant(x.data(), fast.data(), n, g);
        quick_gelu_quant_ref(x.data(), ref.data(), n, g);
        for (int64_t i = n; i < n + 16; ++i) {
          ASSERT_EQ(fast[i], 0xAA) << where << " wrote past n at " << i;
          ASSERT_EQ(ref[i], 0x55) << where << " (ref) wrote past n at " << i;
        }
        fast.resize(n);
        ref.resize(n);
        diffs.add(fast, ref, g, where);
        if (HasFatalFailure()) return;
        for (int64_t i = 0; i < n; ++i) {
          if (fast[i] == ref[i]) continue;
          const double s = quick_gelu_exact(x[i]) / g.delta;  // in levels
          EXPECT_LE(std::abs(s - std::floor(s) - 0.5), 1e-6 * std::abs(s))
              << where << " " << describe(g) << " x " << x[i] << ": levels differ away from a "
              << "boundary";
        }
      }
    }
  }
  diffs.expect_rare();
}

TEST(QuantKernels, QuickGeluQuantExtremes) {
  // Both twins (the reference is what VQM_ISA=ref dispatches to). Large negative x give -0, the
  // zero point; large positive x give x itself, so exact ties of x / delta round half to even.
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {-1e4f, -100.f, -88.f, -60.f,  -52.1f,  -52.f, -1e30f,
                                -inf,  0.f,    -0.f,  1e-40f, -1e-40f, 88.f,  88.5f,
                                99.5f, 100.f,  1e4f,  1e30f,  inf,     12.25f};
  const std::vector<int8_t> want_s8 = {0, 0, 0,  0,  0,   0,   0,   0,   0,   0,
                                       0, 0, 88, 88, 100, 100, 127, 127, 127, 12};
  const Bytes want_u8 = {3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 179, 180, 202, 203, 255, 255, 255, 27};
  for (QuantFn fn : {quick_gelu_quant, quick_gelu_quant_ref}) {
    const char *name = fn == quick_gelu_quant ? "fast" : "ref";
    Bytes y(x.size());
    fn(x.data(), y.data(), static_cast<int64_t>(x.size()), {1.f, 128, 255, true});
    for (size_t i = 0; i < x.size(); ++i)
      EXPECT_EQ(static_cast<int8_t>(y[i]), want_s8[i]) << name << " x " << x[i];
    fn(x.data(), y.data(), static_cast<int64_t>(x.size()), {0.5f, 3, 255, false});
    for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(y[i], want_u8[i]) << name << " x " << x[i];
  }
  // Tiny and huge steps.
  for (float delta : {1e-30f, 1e30f}) {
    const QuantGrid g = {delta, 128, 255, false};
    Bytes fast(x.size()), ref(x.size());
    quick_gelu_quant(x.data(), fast.data(), static_cast<int64_t>(x.size()), g);
    quick_gelu_quant_ref(x.data(), ref.data(), static_cast<int64_t>(x.size()), g);
    EXPECT_EQ(fast, ref) << "delta " << delta;
  }
}

// The float value a quantizing kernel computes for input x, before quantizing, read back through
// its bytes: the level step round(|v| / delta) passes K - 1/2 as delta grows past |v| / (K - 1/2),
// so bisecting delta for that step pins |v| down to a couple of float ulps. `guess` only brackets
// the search (v must be within 4% of it). x is repeated over 33 lanes (full vectors and a tail),
// which must all agree.
double measured_value(QuantFn fn, float x, double guess) {
  constexpr int K = 200;
  const int zp = guess > 0 ? 0 : 255;  // room for K levels on v's side of zero
  const std::vector<float> xs(33, x);
  auto steps = [&](float delta) {
    Bytes y(xs.size());
    fn(xs.data(), y.data(), static_cast<int64_t>(xs.size()), {delta, zp, 255, false});
    for (uint8_t b : y) EXPECT_EQ(b, y[0]) << "lanes disagree for x " << x;
    return std::abs(static_cast<int>(y[0]) - zp);
  };
  float lo = static_cast<float>(std::abs(guess) / (K - 0.5) / 1.04);
  float hi = static_cast<float>(std::abs(guess) / (K - 0.5) * 1.04);
  if (steps(lo) < K || steps(hi) >= K) {
    ADD_FAILURE() << "x " << x << ": value not within 4% of " << guess;
    return 0;
  }
  for (;;) {
    const float mid = lo + (hi - lo) / 2;
    if (mid <= lo || mid >= hi) break;
    (steps(mid) >= K ? lo : hi) = mid;
  }
  return std::copysign((K - 0.5) * static_cast<double>(hi), guess);
}

TEST(QuantKernels, QuickGeluReferenceMatchesIndependentValues) {
  // x / (1 + exp(-1.702 x)) to 40 digits (Python decimal), against the reference's bytes on a few
  // grids (it rounds the double result to float, so it must quantize exactly like the rounded
  // true value) and its float value read back through the bytes.
  const struct {
    float x;
    double y;
  } table[] = {{-40.f, -1.084655101815430368338912564416732165392e-28},
               {-10.f, -4.057961294855309990271857783095687424484e-7},
               {-3.f, -0.01807130970778596651264126699587395119984},
               {-1.f, -0.1542042340671787042928931734746026622378},
               {-0.5f, -0.1496115633936198768301379713781542132720},
               {0.25f, 0.1511996499001941805421630345656240245034},
               {1.f, 0.8457957659328212957071068265253973377618},
               {2.f, 1.935658623144208149807249111403451628176},
               {5.f, 4.998992983732647631060294586220534813864}};
  for (const auto &row : table) {
    EXPECT_NEAR(quick_gelu_exact(row.x), row.y, 1e-14 * std::abs(row.y)) << "x " << row.x;
    const float yf = static_cast<float>(row.y);
    for (const QuantGrid &g : {QuantGrid{0.01f, 128, 255, true}, QuantGrid{0.0371f, 20, 255, false},
                               QuantGrid{0.3f, 8, 15, true}, QuantGrid{1e-9f, 128, 255, false}}) {
      uint8_t got, want;
      quick_gelu_quant_ref(&row.x, &got, 1, g);
      quantize_ref(&yf, &want, 1, g);
      EXPECT_EQ(got, want) << "x " << row.x << " " << describe(g);
    }
    EXPECT_NEAR(measured_value(quick_gelu_quant_ref, row.x, row.y), row.y, 1e-6 * std::abs(row.y))
        << "x " << row.x;
  }
}

TEST(QuantKernels, QuickGeluFloatValueWithin1e6OfExact) {
  // The value each twin quantizes, read back through its bytes, against x sigmoid(1.702 x) in
  // double, over the range where that is a normal float and not x itself. Below x = -52 the fast
  // path returns -0 (QuickGeluQuantExtremes); from x = 10 up, both return x.
  std::vector<float> xs;
  for (float x = -50.f; x <= 12.f; x += 0.37f) xs.push_back(x);
  for (float x : random_vector(60, 2.f, 20)) xs.push_back(x);
  for (float x : {-1e-3f, 1e-3f, -1e-20f, 1e-20f, -0.75f, -0.752f}) xs.push_back(x);
  for (QuantFn fn : {quick_gelu_quant, quick_gelu_quant_ref}) {
    double worst = 0;
    for (float x : xs) {
      const double want = quick_gelu_exact(x);
      const double got = measured_value(fn, x, want);
      const double rel = std::abs(got - want) / std::abs(want);
      ASSERT_LE(rel, 1e-6) << (fn == quick_gelu_quant ? "fast" : "ref") << " x " << x << ": " << got
                           << " vs " << want;
      worst = std::max(worst, rel);
    }
    std::printf("    %s: worst relative error %.2g over %zu inputs (incl. read-back)\n",
                fn == quick_gelu_quant ? "quick_gelu_quant" : "quick_gelu_quant_ref", worst,
                xs.size());
  }
}

TEST(QuantKernels, SoftmaxQuantWithinOneLevelOfReference) {
  LevelDiffs diffs;
  std::vector<int64_t> cols_list(std::begin(kSizes), std::end(kSizes));
  cols_list.push_back(5000);  // longer than the per-thread exponential buffer
  for (int64_t cols : cols_list) {
    for (float scale : {0.125f, 1.f}) {
      const int64_t rows = 5;
      auto x = random_vector(rows * cols, 8.f, 8);
      if (cols > 3) x[2] = 1e30f, x[3] = -1e30f;  // extreme scores in the first row
      std::vector<QuantGrid> grids;
      for (int bits : {3, 4, 8}) {
        const int qmax = (1 << bits) - 1;
        grids.push_back({1.f / static_cast<float>(qmax), 0, qmax, false});
        grids.push_back({0.7f / static_cast<float>(qmax), 0, qmax, false});
        grids.push_back({1.f / static_cast<float>(qmax), 1 << (bits - 1), qmax, true});
        grids.push_back({1.f / static_cast<float>(qmax), 2, qmax, false});
      }
      for (const QuantGrid &g : grids) {
        const auto x_before = x;
        Bytes fast(x.size()), ref(x.size());
        softmax_quant(x.data(), fast.data(), rows, cols, scale, g);
        softmax_quant_ref(x.data(), ref.data(), rows, cols, scale, g);
        ASSERT_EQ(x, x_before) << "softmax_quant must not modify its input";
        diffs.add(fast, ref, g, "cols " + std::to_string(cols));
      }
    }
  }
  diffs.expect_rare();
}

// On either dispatch path, each fused kernel equals its f32 kernel followed by quantize, bit for
// bit: the integer forward reproduces the simulated (fake-quant) forward's levels exactly.
TEST(QuantKernels, FusedKernelsEqualF32KernelThenQuantize) {
  for (int64_t cols : kSizes) {
    const int64_t rows = 4;
    // The offset makes LayerNorm's float mean inexact, so the mirroring is tested where it matters.
    const auto x = random_vector(rows * cols, 3.f, 9, cols % 2 ? 2.f : 1e5f);
    const auto gamma = random_vector(cols, 1.f, 10), beta = random_vector(cols, 1.f, 11);
    for (const QuantGrid &g : test_grids(6.f)) {
      const std::string where = "cols " + std::to_string(cols) + " " + describe(g);
      Bytes fused(x.size()), unfused(x.size());
      std::vector<float> v(x.size());

      layernorm_quant(x.data(), fused.data(), rows, cols, gamma.data(), beta.data(), 1e-6f, g);
      layernorm_f32(x.data(), v.data(), rows, cols, gamma.data(), beta.data(), 1e-6f);
      quantize(v.data(), unfused.data(), static_cast<int64_t>(v.size()), g);
      ASSERT_EQ(fused, unfused) << "layernorm " << where;
      layernorm_quant_ref(x.data(), fused.data(), rows, cols, gamma.data(), beta.data(), 1e-6f, g);
      layernorm_f32_ref(x.data(), v.data(), rows, cols, gamma.data(), beta.data(), 1e-6f);
      quantize_ref(v.data(), unfused.data(), static_cast<int64_t>(v.size()), g);
      ASSERT_EQ(fused, unfused) << "layernorm_ref " << where;

      gelu_quant(x.data(), fused.data(), static_cast<int64_t>(x.size()), g);
      v = x;
      gelu_erf_f32(v.data(), static_cast<int64_t>(v.size()));
      quantize(v.data(), unfused.data(), static_cast<int64_t>(v.size()), g);
      ASSERT_EQ(fused, unfused) << "gelu " << where;
      gelu_quant_ref(x.data(), fused.data(), static_cast<int64_t>(x.size()), g);
      v = x;
      gelu_erf_f32_ref(v.data(), static_cast<int64_t>(v.size()));
      quantize_ref(v.data(), unfused.data(), static_cast<int64_t>(v.size()), g);
      ASSERT_EQ(fused, unfused) << "gelu_ref " << where;

      softmax_quant(x.data(), fused.data(), rows, cols, 0.125f, g);
      v = x;
      softmax_f32(v.data(), rows, cols, 0.125f);
      quantize(v.data(), unfused.data(), static_cast<int64_t>(v.size()), g);
      ASSERT_EQ(fused, unfused) << "softmax " << where;
      softmax_quant_ref(x.data(), fused.data(), rows, cols, 0.125f, g);
      v = x;
      softmax_f32_ref(v.data(), rows, cols, 0.125f);
      quantize_ref(v.data(), unfused.data(), static_cast<int64_t>(v.size()), g);
      ASSERT_EQ(fused, unfused) << "softmax_ref " << where;
    }
  }
  // The long-row softmax path (exponentials computed twice instead of buffered) too.
  const int64_t rows = 2, cols = 5000;
  const auto x = random_vector(rows * cols, 8.f, 12);
  const QuantGrid g = {1.f / 255, 0, 255, false};
  Bytes fused(x.size()), unfused(x.size());
  auto v = x;
  softmax_quant(x.data(), fused.data(), rows, cols, 1.f, g);
  softmax_f32(v.data(), rows, cols, 1.f);
  quantize(v.data(), unfused.data(), static_cast<int64_t>(v.size()), g);
  EXPECT_EQ(fused, unfused);
}

// Informative only (no assertion): ns per element of the fused kernels, dispatched (all OpenMP
// threads, and one thread) against the scalar reference, plus the unfused f32 kernel + quantize.
double best_ns_per_element(const std::function<void()> &run, int64_t elements) {
  run();  // warm caches and the OpenMP pool
  double best = 1e300;
  for (int rep = 0; rep < 7; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  return best / static_cast<double>(elements);
}

TEST(QuantKernels, MicroBenchmarkPrintout) {
  const QuantGrid act = {0.05f, 128, 255, false}, probs = {1.f / 255, 0, 255, false};
  const int threads = omp_get_max_threads();
  {
    const int64_t rows = 197, cols = 384, n = rows * cols;
    const auto x = random_vector(n, 3.f, 15, 1.f);
    const auto gamma = random_vector(cols, 1.f, 16), beta = random_vector(cols, 1.f, 17);
    Bytes y(n);
    std::vector<float> tmp(n);
    const float *gp = gamma.data(), *bp = beta.data();
    auto fast = [&] { layernorm_quant(x.data(), y.data(), rows, cols, gp, bp, 1e-6f, act); };
    auto unfused = [&] {
      layernorm_f32(x.data(), tmp.data(), rows, cols, gp, bp, 1e-6f);
      quantize(tmp.data(), y.data(), n, act);
    };
    auto ref = [&] { layernorm_quant_ref(x.data(), y.data(), rows, cols, gp, bp, 1e-6f, act); };
    const double t_fast = best_ns_per_element(fast, n);
    const double t_unfused = best_ns_per_element(unfused, n);
    omp_set_num_threads(1);
    const double t_fast1 = best_ns_per_element(fast, n);
    omp_set_num_threads(threads);
    const double t_ref = best_ns_per_element(ref, n);
    std::printf(
        "    layernorm_quant 197x384 [%s]: fast %.3f ns/elem (%d threads), %.3f (1 thread), "
        "unfused f32+quantize %.3f, ref %.3f\n",
        active_isa(), t_fast, threads, t_fast1, t_unfused, t_ref);
  }
  {
    const int64_t rows = 6 * 197, cols = 197, n = rows * cols;
    const auto x = random_vector(n, 4.f, 18);
    Bytes y(n);
    std::vector<float> tmp(n);
    auto fast = [&] { softmax_quant(x.data(), y.data(), rows, cols, 0.125f, probs); };
    auto unfused = [&] {
      std::copy(x.begin(), x.end(), tmp.begin());
      softmax_f32(tmp.data(), rows, cols, 0.125f);
      quantize(tmp.data(), y.data(), n, probs);
    };
    auto ref = [&] { softmax_quant_ref(x.data(), y.data(), rows, cols, 0.125f, probs); };
    const double t_fast = best_ns_per_element(fast, n);
    const double t_unfused = best_ns_per_element(unfused, n);
    omp_set_num_threads(1);
    const double t_fast1 = best_ns_per_element(fast, n);
    omp_set_num_threads(threads);
    const double t_ref = best_ns_per_element(ref, n);
    std::printf(
        "    softmax_quant (6*197)x197 [%s]: fast %.3f ns/elem (%d threads), %.3f (1 "
        "thread), unfused copy+f32+quantize %.3f, ref %.3f\n",
        active_isa(), t_fast, threads, t_fast1, t_unfused, t_ref);
  }
}

}  // namespace
}  // namespace vqm::kernels
