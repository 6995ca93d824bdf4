// resample_grid_f32 (PIL's float-mode resampling, used for position embeddings) against a
// brute-force evaluation of PIL's formula written out here on its own: every output is the
// double sum over all source points of w_y * w_x * value, each weight the filter at the source
// point's distance from the output's centre (i + 0.5) * in / out, the filter stretched by the
// downscale factor, over PIL's tap window, normalised to sum 1. The resampler instead runs two
// passes with a float image between them, as PIL and torch do.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/io/error.h"
#include "runtime/io/image.h"
#include "test_util.h"

namespace vqm {
namespace {

double cubic(double x) {  // Keys' cubic convolution, a = -0.5
  const double a = -0.5, t = std::fabs(x);
  if (t < 1) return (a + 2) * t * t * t - (a + 3) * t * t + 1;
  if (t < 2) return a * t * t * t - 5 * a * t * t + 8 * a * t - 4 * a;
  return 0;
}

double triangle(double x) {
  const double t = std::fabs(x);
  return t < 1 ? 1 - t : 0;
}

// weights[o][i]: the weight of source index i in output index o along one axis.
std::vector<std::vector<double>> axis_weights(int in, int out, Interpolation interp) {
  const bool bicubic = interp == Interpolation::bicubic;
  const double scale = static_cast<double>(in) / out, stretch = std::max(scale, 1.0);
  const double support = (bicubic ? 2.0 : 1.0) * stretch;
  std::vector<std::vector<double>> w(out, std::vector<double>(in, 0.0));
  for (int o = 0; o < out; ++o) {
    const double centre = (o + 0.5) * scale;
    // PIL's window: C casts (truncation toward zero) of centre -/+ support + 0.5, clamped.
    const int first = std::max(0, static_cast<int>(centre - support + 0.5));
    const int end = std::min(in, static_cast<int>(centre + support + 0.5));
    double sum = 0;
    for (int i = first; i < end; ++i) {
      const double d = (i + 0.5 - centre) / stretch;
      w[o][i] = bicubic ? cubic(d) : triangle(d);
      sum += w[o][i];
    }
    for (int i = first; i < end; ++i) w[o][i] /= sum;
  }
  return w;
}

std::vector<double> brute_force(const std::vector<float> &in, int ch, int ih, int iw, int oh,
                                int ow, Interpolation interp) {
  const auto wy = axis_weights(ih, oh, interp), wx = axis_weights(iw, ow, interp);
  std::vector<double> out(static_cast<size_t>(oh) * ow * ch, 0.0);
  for (int oy = 0; oy < oh; ++oy)
    for (int ox = 0; ox < ow; ++ox)
      for (int y = 0; y < ih; ++y)
        for (int x = 0; x < iw; ++x)
          for (int c = 0; c < ch; ++c)
            out[(static_cast<size_t>(oy) * ow + ox) * ch + c] +=
                wy[oy][y] * wx[ox][x] * in[(static_cast<size_t>(y) * iw + x) * ch + c];
  return out;
}

std::vector<float> noise(size_t n, unsigned seed) {
  return test::uniform_floats(n, seed);
}

struct Sizes {
  int ih, iw, oh, ow;
};

TEST(ResampleGrid, MatchesPilFormulaByBruteForce) {
  // Awkward sizes: down and up by ratios with no common factor, a single row or column, both
  // axes in opposite directions, DINOv2's 37 -> 16.
  const Sizes sizes[] = {{7, 7, 3, 3},  {3, 3, 7, 7},   {37, 37, 16, 16}, {1, 1, 5, 5},
                         {1, 6, 4, 2},  {5, 2, 13, 9},  {12, 12, 7, 7},   {14, 14, 16, 16},
                         {9, 4, 9, 11}, {16, 3, 16, 3}, {2, 17, 1, 1}};
  const int ch = 3;
  double worst = 0;
  for (Interpolation interp : {Interpolation::bicubic, Interpolation::bilinear}) {
    for (const Sizes &s : sizes) {
      SCOPED_TRACE(std::string(interpolation_name(interp)) + " " + std::to_string(s.ih) + "x" +
                   std::to_string(s.iw) + " -> " + std::to_string(s.oh) + "x" +
                   std::to_string(s.ow));
      const auto in = noise(static_cast<size_t>(s.ih) * s.iw * ch, s.ih * 100 + s.ow);
      const auto got = resample_grid_f32(in, ch, s.ih, s.iw, s.oh, s.ow, interp);
      const auto want = brute_force(in, ch, s.ih, s.iw, s.oh, s.ow, interp);
      ASSERT_EQ(got.size(), want.size());
      double max_abs = 0;
      for (size_t i = 0; i < got.size(); ++i)
        max_abs = std::max(max_abs, std::fabs(got[i] - want[i]));
      // Values in [-1, 1], weights summing to 1 (bicubic's lobes make |w| sum to at most ~1.3):
      // the float image between the passes and the float result give a few 1e-8.
      EXPECT_LE(max_abs, 1e-6);
      worst = std::max(worst, max_abs);
    }
  }
  std::printf("[ measured ] max abs diff vs the brute-force formula %.3g\n", worst);
}

TEST(ResampleGrid, ConstantsStayConstantAndSameSizeIsIdentity) {
  const std::vector<float> flat(5 * 4 * 2, 0.25f);
  for (const Sizes &s : {Sizes{5, 4, 2, 9}, Sizes{5, 4, 11, 3}})
    for (float v : resample_grid_f32(flat, 2, 5, 4, s.oh, s.ow, Interpolation::bicubic))
      EXPECT_NEAR(v, 0.25f, 1e-7f);
  const auto in = noise(6 * 7 * 3, 1);
  for (Interpolation interp :
       {Interpolation::bicubic, Interpolation::bilinear, Interpolation::nearest})
    EXPECT_EQ(resample_grid_f32(in, 3, 6, 7, 6, 7, interp), in);
  // One axis unchanged: that pass is skipped, its values are the other pass's alone.
  const auto rows = resample_grid_f32(in, 3, 6, 7, 6, 3, Interpolation::bicubic);
  const auto want = brute_force(in, 3, 6, 7, 6, 3, Interpolation::bicubic);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_NEAR(rows[i], want[i], 1e-6);
}

TEST(ResampleGrid, NearestTakesPilsSourceIndices) {
  // 4 -> 2: centres 1 and 3 (PIL: truncated (i + 0.5) * 2); 2 -> 4: 0, 0, 1, 1.
  const std::vector<float> row = {10, 11, 12, 13};
  EXPECT_EQ(resample_grid_f32(row, 1, 1, 4, 1, 2, Interpolation::nearest),
            (std::vector<float>{11, 13}));
  const std::vector<float> col = {1, 2, 3, 4};  // 2 rows of 2 channels
  EXPECT_EQ(resample_grid_f32(col, 2, 2, 1, 4, 1, Interpolation::nearest),
            (std::vector<float>{1, 2, 1, 2, 3, 4, 3, 4}));
}

TEST(ResampleGrid, BadArgumentsAreErrors) {
  const std::vector<float> in(12, 1.f);
  auto code = [&](int ch, int ih, int iw, int oh, int ow) {
    try {
      resample_grid_f32(in, ch, ih, iw, oh, ow, Interpolation::bicubic);
    } catch (const Error &e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
      return e.code();
    }
    return ErrorCode::internal;  // no error: never what these cases expect
  };
  EXPECT_EQ(code(3, 2, 3, 4, 4), ErrorCode::invalid_argument);  // 18 values expected
  EXPECT_EQ(code(0, 2, 3, 4, 4), ErrorCode::invalid_argument);
  EXPECT_EQ(code(2, 2, 3, 0, 4), ErrorCode::invalid_argument);
  EXPECT_EQ(code(2, 2, 3, 4, -1), ErrorCode::invalid_argument);
  EXPECT_EQ(code(2, 2, 3, 100000, 4), ErrorCode::limit);
}

}  // namespace
}  // namespace vqm
