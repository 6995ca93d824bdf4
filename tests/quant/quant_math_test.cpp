// Known answers for the quantizer arithmetic: grids, correlation, ranking loss, nuclear norm, bias
// statistics, the Pareto bit allocation (against brute force) and q4/q6 packing.
#include "quantizer/quant_math.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "runtime/io/tensor.h"
#include "test_util.h"

namespace vqm::quant {
namespace {

std::vector<float> normal(size_t n, uint32_t seed, float sd = 1.f) {
  return test::normal_floats(n, seed, sd);
}

// --- fake quantization -------------------------------------------------------------------------

TEST(FakeQuantAct, RoundsHalfToEven) {
  const ActGrid g = ActGrid{8, 128, 0.5f};
  EXPECT_EQ(fake_quant_act(0.25f, g), 0.f);    // 0.5 -> 0
  EXPECT_EQ(fake_quant_act(0.75f, g), 1.f);    // 1.5 -> 2
  EXPECT_EQ(fake_quant_act(1.25f, g), 1.f);    // 2.5 -> 2
  EXPECT_EQ(fake_quant_act(-0.25f, g), 0.f);   // -0.5 -> 0
  EXPECT_EQ(fake_quant_act(-0.75f, g), -1.f);  // -1.5 -> -2
  EXPECT_EQ(fake_quant_act(0.3f, g), 0.5f);
}

TEST(FakeQuantAct, ClampsToTheGrid) {
  const ActGrid s = ActGrid{8, 128, 0.5f};  // levels -128..127
  EXPECT_EQ(fake_quant_act(1000.f, s), 63.5f);
  EXPECT_EQ(fake_quant_act(-1000.f, s), -64.f);
  const ActGrid u = ActGrid{8, 0, 1.f / 255};  // softmax: [0, 1]
  EXPECT_EQ(fake_quant_act(-0.1f, u), 0.f);
  EXPECT_FLOAT_EQ(fake_quant_act(2.f, u), 1.f);
  const ActGrid custom = ActGrid{4, 3, 1.f};  // levels -3..12
  EXPECT_EQ(fake_quant_act(-5.f, custom), -3.f);
  EXPECT_EQ(fake_quant_act(13.f, custom), 12.f);
  EXPECT_EQ(fake_quant_act(5.4f, custom), 5.f);
  const ActGrid top = ActGrid{4, 15, 1.f};  // only non-positive levels
  EXPECT_EQ(fake_quant_act(3.f, top), 0.f);
  EXPECT_EQ(fake_quant_act(-20.f, top), -15.f);
}

TEST(FakeQuantAct, VectorMatchesNearbyintReferenceAndWorksInPlace) {
  const ActGrid g = ActGrid{6, 20, 0.037f};
  auto x = normal(100003, 1, 1.f);  // above the parallel threshold, odd length
  x[0] = 0.037f * 2.5f;
  std::vector<float> y(x.size());
  fake_quant_act(x.data(), y.data(), static_cast<int64_t>(x.size()), g);
  for (size_t i = 0; i < x.size(); ++i) {
    // The rule of kernels.h: x times the float reciprocal of delta, rounded half to even.
    const float q = std::clamp(std::nearbyint(x[i] * (1.0f / g.delta)) + 20.f, 0.f, 63.f);
    ASSERT_EQ(y[i], (q - 20.f) * g.delta) << i;
    ASSERT_EQ(y[i], fake_quant_act(x[i], g)) << i;
  }
  fake_quant_act(x.data(), x.data(), static_cast<int64_t>(x.size()), g);
  EXPECT_EQ(x, y);
}

TEST(FakeQuantAct, RejectsBadGrids) {
  EXPECT_VQM_ERROR(fake_quant_act(1.f, ActGrid{8, 128, 0.f}), invalid_argument, "delta");
  EXPECT_VQM_ERROR(fake_quant_act(1.f, ActGrid{8, 256, 1.f}), invalid_argument, "zero point");
  EXPECT_VQM_ERROR(fake_quant_act(1.f, ActGrid{0, 0, 1.f}), invalid_argument, "bits");
  EXPECT_VQM_ERROR(fake_quant_act(1.f, ActGrid{8, 0, NAN}), invalid_argument, "delta");
}

TEST(FakeQuantWeights, PerRowDeltasClampAndRoundHalfEven) {
  const float w[] = {2.5f, -8.6f, 7.4f, 100.f, 0.25f, -0.25f, 0.75f, -100.f};
  const float delta[] = {1.f, 0.5f};
  int8_t q[8];
  quantize_weights(w, 2, 4, delta, 4, q);
  const int8_t want[] = {2, -8, 7, 7, 0, 0, 2, -8};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(q[i], want[i]) << i;
  float wh[8];
  fake_quant_weights(w, 2, 4, delta, 4, wh);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(wh[i], want[i] * delta[i / 4]) << i;
  // 8 bits reaches -128..127.
  const float w8[] = {-300.f, 300.f};
  const float d8[] = {1.f};
  quantize_weights(w8, 1, 2, d8, 8, q);
  EXPECT_EQ(q[0], -128);
  EXPECT_EQ(q[1], 127);
}

TEST(FakeQuantWeights, RejectsBadArguments) {
  const float w[] = {1.f, 2.f};
  const float zero[] = {0.f};
  const float one[] = {1.f};
  int8_t q[2];
  EXPECT_VQM_ERROR(quantize_weights(w, 1, 2, zero, 4, q), invalid_argument, "row 0");
  EXPECT_VQM_ERROR(quantize_weights(w, 1, 2, one, 9, q), invalid_argument, "bits");
  EXPECT_VQM_ERROR(quantize_weights(w, 1, 2, one, 1, q), invalid_argument, "bits");
}

// --- Pearson ---------------------------------------------------------------------------------

TEST(Pearson, HandComputedValues) {
  const float a[] = {1, 2, 3, 4}, up[] = {2, 4, 6, 8}, down[] = {8, 6, 4, 2};
  EXPECT_NEAR(pearson(a, up, 4), 1.0, 1e-15);
  EXPECT_NEAR(pearson(a, down, 4), -1.0, 1e-15);
  const float x[] = {1, 2, 3}, y[] = {1, 3, 2};
  EXPECT_NEAR(pearson(x, y, 3), 0.5, 1e-15);
  const float u[] = {1, 2, 3, 4, 5}, v[] = {2, 1, 4, 3, 5};
  EXPECT_NEAR(pearson(u, v, 5), 0.8, 1e-15);
}

TEST(Pearson, ConstantInputs) {
  const float c[] = {3, 3, 3}, d[] = {4, 4, 4}, v[] = {1, 2, 3};
  EXPECT_EQ(pearson(c, c, 3), 1.0);
  EXPECT_EQ(pearson(c, d, 3), 0.0);
  EXPECT_EQ(pearson(c, v, 3), 0.0);
  EXPECT_EQ(pearson(v, c, 3), 0.0);
  EXPECT_EQ(pearson(c, c, 0), 1.0);
}

TEST(Pearson, LargeOffsetKeepsPrecision) {
  // A two-pass mean removal keeps 1 - r exact even far from zero (a one-pass formula loses it).
  const int n = 10000;
  std::vector<float> a(n), b(n);
  double sab = 0, saa = 0, sbb = 0;
  for (int i = 0; i < n; ++i) {
    const double s = std::sin(i * 0.01), c = std::cos(i * 0.013);
    a[i] = static_cast<float>(1000.0 + s);
    b[i] = static_cast<float>(1000.0 + s + 0.01 * c);
  }
  double ma = 0, mb = 0;
  for (int i = 0; i < n; ++i) ma += a[i], mb += b[i];
  ma /= n, mb /= n;
  for (int i = 0; i < n; ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  EXPECT_NEAR(pearson(a.data(), b.data(), n), sab / std::sqrt(saa * sbb), 1e-12);
}

TEST(MeanPearson, AveragesPerSample) {
  // Sample 0 perfectly correlated, sample 1 at 0.5, sample 2 anti-correlated.
  const float o[] = {1, 2, 3, 1, 2, 3, 1, 2, 3};
  const float oh[] = {2, 4, 6, 1, 3, 2, 3, 2, 1};
  EXPECT_NEAR(mean_pearson(o, oh, 3, 3), (1.0 + 0.5 - 1.0) / 3, 1e-15);
  EXPECT_NEAR(mean_pearson(o, oh, 1, 9), pearson(o, oh, 9), 1e-15);
  EXPECT_VQM_ERROR(mean_pearson(o, oh, 0, 9), invalid_argument, "samples");
}

TEST(PearsonReference, AgreesWithMeanPearsonIncludingDegenerateSamples) {
  const int64_t samples = 5, per = 40000;  // several chunks per sample
  auto o = normal(samples * per, 20);
  auto oh = o;
  const auto noise = normal(oh.size(), 21, 0.1f);
  for (size_t i = 0; i < oh.size(); ++i) oh[i] += noise[i] + 500.f * (i >= size_t(2 * per));
  for (int64_t i = 0; i < per; ++i) oh[3 * per + i] = 7.f;  // constant o_hat
  for (int64_t i = 0; i < per; ++i) o[4 * per + i] = 2.f;   // constant reference
  const PearsonReference ref(o.data(), samples, per);
  EXPECT_NEAR(ref.mean(oh.data()), mean_pearson(o.data(), oh.data(), samples, per), 1e-8);
  EXPECT_NEAR(ref.mean(o.data()), 1.0, 1e-12);
  const float c[] = {1, 1, 1, 1}, d[] = {1, 1, 1, 1}, e[] = {1, 2, 3, 4};
  EXPECT_EQ(PearsonReference(c, 1, 4).mean(d), 1.0);
  EXPECT_EQ(PearsonReference(c, 1, 4).mean(e), 0.0);
  EXPECT_EQ(PearsonReference(e, 1, 4).mean(c), 0.0);
  EXPECT_NEAR(PearsonReference(e, 1, 4).mean(e), 1.0, 1e-15);
}

// --- ranking loss ------------------------------------------------------------------------------

TEST(RankingLoss, HandExampleAllPairs) {
  // Pairs (0,1): +1 * (1-2) -> 1; (0,2): +1 * (1-3) -> 2; (1,2): -1 * (2-3) = 1 -> 0. Mean 3/3.
  const float a[] = {3, 1, 2}, ah[] = {1, 2, 3};
  EXPECT_NEAR(ranking_loss(a, ah, 1, 3, 0.f, 0, 0), 1.0, 1e-15);
  // theta 0.5: 1.5 + 2.5 + max(0.5 - 1, 0) = 4 over 3 pairs.
  EXPECT_NEAR(ranking_loss(a, ah, 1, 3, 0.5f, 0, 0), 4.0 / 3, 1e-15);
  // Ties are skipped: (0,1) tie; (0,2): -1 * (0-1) = 1 -> 0; (1,2): -1 * (5-1) = -4 -> 4. 4/2.
  const float t[] = {1, 1, 2}, th[] = {0, 5, 1};
  EXPECT_NEAR(ranking_loss(t, th, 1, 3, 0.f, 0, 0), 2.0, 1e-15);
  // Two rows: (3 + 4) over 5 pairs.
  const float a2[] = {3, 1, 2, 1, 1, 2}, ah2[] = {1, 2, 3, 0, 5, 1};
  EXPECT_NEAR(ranking_loss(a2, ah2, 2, 3, 0.f, 0, 0), 7.0 / 5, 1e-15);
  // Order preserved: no loss; one column or all ties: no pairs, 0.
  EXPECT_EQ(ranking_loss(a, a, 1, 3, 0.f, 0, 0), 0.0);
  EXPECT_EQ(ranking_loss(a, ah, 3, 1, 0.f, 0, 0), 0.0);
  const float same[] = {2, 2, 2};
  EXPECT_EQ(ranking_loss(same, ah, 1, 3, 0.f, 0, 0), 0.0);
}

TEST(RankingLoss, SampledModeApproachesAllPairsAndIsReproducible) {
  const int64_t rows = 40, cols = 30;
  const auto a = normal(rows * cols, 2);
  auto ah = a;
  const auto noise = normal(ah.size(), 3, 0.5f);
  for (size_t i = 0; i < ah.size(); ++i) ah[i] += noise[i];
  const double full = ranking_loss(a.data(), ah.data(), rows, cols, 0.1f, 0, 0);
  const double sampled = ranking_loss(a.data(), ah.data(), rows, cols, 0.1f, 4000, 7);
  EXPECT_GT(full, 0.05);
  EXPECT_NEAR(sampled, full, 0.02 * full);
  EXPECT_EQ(sampled, ranking_loss(a.data(), ah.data(), rows, cols, 0.1f, 4000, 7));
  const auto pairs = sample_ranking_pairs(a.data(), rows, cols, 64, 9);
  EXPECT_EQ(pairs.size(), size_t(rows * 64));  // continuous data: no ties
  for (const auto &pr : pairs) {
    ASSERT_GT(a[pr.first], a[pr.second]);
    ASSERT_EQ(pr.first / cols, pr.second / cols);  // same row
  }
  EXPECT_EQ(ranking_loss_on_pairs(pairs, ah.data(), 0.1f),
            ranking_loss(a.data(), ah.data(), rows, cols, 0.1f, 64, 9));
}

// --- nuclear norm ------------------------------------------------------------------------------

TEST(NuclearNorm, DiagonalAndRankOne) {
  const float d[] = {3, 0, 0, 0, -2, 0, 0, 0, 1};
  EXPECT_NEAR(nuclear_norm(d, 3, 3), 6.0, 1e-12);
  const float wide[] = {0, 5, 0, 0, 0, 0, 0, -4};  // 2 x 4
  EXPECT_NEAR(nuclear_norm(wide, 2, 4), 9.0, 1e-12);
  // The same bytes read as 4 x 2 have one non-zero column (5, 0, 0, -4): rank 1, sqrt(41).
  EXPECT_NEAR(nuclear_norm(wide, 4, 2), std::sqrt(41.0), 1e-12);
  const auto u = normal(17, 4), v = normal(9, 5);
  std::vector<float> outer(17 * 9);
  double nu = 0, nv = 0;
  for (int i = 0; i < 17; ++i) nu += double(u[i]) * u[i];
  for (int j = 0; j < 9; ++j) nv += double(v[j]) * v[j];
  for (int i = 0; i < 17; ++i)
    for (int j = 0; j < 9; ++j) outer[i * 9 + j] = u[i] * v[j];
  EXPECT_NEAR(nuclear_norm(outer.data(), 17, 9), std::sqrt(nu * nv), 1e-6 * std::sqrt(nu * nv));
  EXPECT_EQ(nuclear_norm(d, 0, 3), 0.0);
}

// Random orthonormal columns (m x r) by modified Gram-Schmidt in double.
std::vector<double> orthonormal(int m, int r, uint32_t seed) {
  const auto g = normal(size_t(m) * r, seed);
  std::vector<double> q(g.begin(), g.end());
  for (int j = 0; j < r; ++j) {
    for (int i = 0; i < j; ++i) {
      double dot = 0;
      for (int k = 0; k < m; ++k) dot += q[k * r + i] * q[k * r + j];
      for (int k = 0; k < m; ++k) q[k * r + j] -= dot * q[k * r + i];
    }
    double nrm = 0;
    for (int k = 0; k < m; ++k) nrm += q[k * r + j] * q[k * r + j];
    for (int k = 0; k < m; ++k) q[k * r + j] /= std::sqrt(nrm);
  }
  return q;
}

TEST(NuclearNorm, KnownSingularValuesOfARandomMatrix) {
  // A = U diag(s) V^T with orthonormal U, V: singular values exactly s.
  const int m = 30, n = 50, r = 12;
  const auto U = orthonormal(m, r, 6), V = orthonormal(n, r, 7);
  std::vector<float> a(m * n);
  double want = 0, frob2 = 0;
  for (int t = 0; t < r; ++t) want += 0.5 + t;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int t = 0; t < r; ++t) s += U[i * r + t] * (0.5 + t) * V[j * r + t];
      a[i * n + j] = static_cast<float>(s);
      frob2 += s * s;
    }
  EXPECT_NEAR(nuclear_norm(a.data(), m, n), want, 1e-4 * want);
  std::vector<float> at(n * m);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) at[j * m + i] = a[i * n + j];
  EXPECT_NEAR(nuclear_norm(at.data(), n, m), want, 1e-4 * want);
  // Frobenius bounds: |A|_F <= |A|_* <= sqrt(rank) |A|_F.
  const double nuc = nuclear_norm(a.data(), m, n);
  EXPECT_GE(nuc, std::sqrt(frob2) * (1 - 1e-6));
  EXPECT_LE(nuc, std::sqrt(double(r) * frob2) * (1 + 1e-6));
}

TEST(NuclearNorm, FullRankWithRepeatedSingularValues) {
  // Full rank at a size near a DeiT attention map, singular values repeated (1..7, each ~14
  // times): the tridiagonal QL must deflate clusters of equal eigenvalues correctly.
  const int m = 100, n = 130;
  const auto U = orthonormal(m, m, 10), V = orthonormal(n, m, 11);
  std::vector<double> a(size_t(m) * n, 0.0);
  double want = 0;
  for (int t = 0; t < m; ++t) {
    const double s = 1 + t % 7;
    want += s;
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) a[i * n + j] += U[i * m + t] * s * V[j * m + t];
  }
  const std::vector<float> af(a.begin(), a.end());
  // float storage of A perturbs each singular value by ~1e-7 relative.
  EXPECT_NEAR(nuclear_norm(af.data(), m, n), want, 1e-5 * want);
}

TEST(NuclearNorm, MatchesClosedFormEigenvaluesOfSmallGrams) {
  // 2 x n: Gram eigenvalues by the quadratic formula.
  const int n = 7;
  const auto a = normal(2 * n, 8);
  double g00 = 0, g01 = 0, g11 = 0;
  for (int k = 0; k < n; ++k) {
    g00 += double(a[k]) * a[k];
    g01 += double(a[k]) * a[n + k];
    g11 += double(a[n + k]) * a[n + k];
  }
  const double tr = g00 + g11, det = g00 * g11 - g01 * g01;
  const double disc = std::sqrt(tr * tr / 4 - det);
  const double want2 = std::sqrt(tr / 2 + disc) + std::sqrt(tr / 2 - disc);
  EXPECT_NEAR(nuclear_norm(a.data(), 2, n), want2, 1e-6 * want2);
  // 3 x n: eigenvalues of the symmetric 3x3 Gram by the trigonometric cubic solution.
  const auto b = normal(3 * n, 9);
  double G[3][3] = {};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < n; ++k) G[i][j] += double(b[i * n + k]) * b[j * n + k];
  const double q = (G[0][0] + G[1][1] + G[2][2]) / 3;
  const double p1 = G[0][1] * G[0][1] + G[0][2] * G[0][2] + G[1][2] * G[1][2];
  const double p2 = (G[0][0] - q) * (G[0][0] - q) + (G[1][1] - q) * (G[1][1] - q) +
                    (G[2][2] - q) * (G[2][2] - q) + 2 * p1;
  const double p = std::sqrt(p2 / 6);
  double B[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) B[i][j] = (G[i][j] - (i == j ? q : 0)) / p;
  const double detB = B[0][0] * (B[1][1] * B[2][2] - B[1][2] * B[2][1]) -
                      B[0][1] * (B[1][0] * B[2][2] - B[1][2] * B[2][0]) +
                      B[0][2] * (B[1][0] * B[2][1] - B[1][1] * B[2][0]);
  const double phi = std::acos(std::clamp(detB / 2, -1.0, 1.0)) / 3;
  const double l1 = q + 2 * p * std::cos(phi), l3 = q + 2 * p * std::cos(phi + 2 * M_PI / 3);
  const double l2 = 3 * q - l1 - l3;
  const double want3 = std::sqrt(l1) + std::sqrt(l2) + std::sqrt(l3);
  EXPECT_NEAR(nuclear_norm(b.data(), 3, n), want3, 1e-6 * want3);
}

// --- bias correction statistics ----------------------------------------------------------------

TEST(MeanOutputError, ConstantOffsetPerColumn) {
  const int64_t rows = 10, cols = 70;  // > one 64-column block
  const auto o = normal(rows * cols, 10);
  auto oh = o;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      oh[r * cols + c] += 0.01f * c + (r % 2 ? 0.5f : -0.5f);  // zero-mean wobble over rows
  const auto e = mean_output_error(o.data(), oh.data(), rows, cols);
  ASSERT_EQ(e.size(), size_t(cols));
  for (int64_t c = 0; c < cols; ++c) EXPECT_NEAR(e[c], 0.01f * c, 1e-5) << c;
}

TEST(MeanOutputError, LayerWithAKnownInputQuantizationError) {
  // Every input is 0.3 and the unsigned grid with delta 1 maps it to 0: eps_X = -0.3 everywhere,
  // so the expected output error of column c is -0.3 * sum_k W[c, k] (weights kept exact).
  const int64_t rows = 6, k = 5, n = 3;
  const auto w = normal(n * k, 11);
  std::vector<float> x(rows * k, 0.3f), xh(x.size());
  fake_quant_act(x.data(), xh.data(), rows * k, ActGrid{8, 0, 1.f});
  std::vector<float> o(rows * n), oh(rows * n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < n; ++c)
      for (int64_t j = 0; j < k; ++j) {
        o[r * n + c] += x[r * k + j] * w[c * k + j];
        oh[r * n + c] += xh[r * k + j] * w[c * k + j];
      }
  const auto e = mean_output_error(o.data(), oh.data(), rows, n);
  for (int64_t c = 0; c < n; ++c) {
    double s = 0;
    for (int64_t j = 0; j < k; ++j) s += w[c * k + j];
    EXPECT_NEAR(e[c], -0.3 * s, 1e-5) << c;
  }
}

// --- mixed precision -----------------------------------------------------------------------------

TEST(Pareto, MatchesBruteForceOnRandomInstances) {
  std::mt19937 rng(12);
  const int bits[] = {3, 4, 8};
  for (int trial = 0; trial < 30; ++trial) {
    std::vector<std::vector<BitOption>> mods(6);
    for (auto &m : mods) {
      const double params = 1 + rng() % 5;
      double sens = 1.0 + (rng() % 1000) / 100.0;
      for (int b : bits) {
        m.push_back({b, params * b, sens});
        sens *= 0.2 + (rng() % 70) / 100.0;  // more bits, less sensitive
      }
    }
    // Brute force over 3^6 configurations: min sensitivity per budget.
    double min_cost = 0, max_cost = 0;
    for (const auto &m : mods) min_cost += m[0].cost, max_cost += m[2].cost;
    for (int b = 0; b < 5; ++b) {
      const double budget = min_cost + (max_cost - min_cost) * b / 4.0 + (b == 2 ? 0.5 : 0);
      double best = INFINITY;
      for (int cfg = 0; cfg < 729; ++cfg) {
        double c = 0, s = 0;
        for (int m = 0, v = cfg; m < 6; ++m, v /= 3)
          c += mods[m][v % 3].cost, s += mods[m][v % 3].sensitivity;
        if (c <= budget) best = std::min(best, s);
      }
      const auto choice = pareto_choose(mods, budget);
      ASSERT_EQ(choice.size(), mods.size());
      double c = 0, s = 0;
      for (size_t m = 0; m < mods.size(); ++m)
        c += mods[m][choice[m]].cost, s += mods[m][choice[m]].sensitivity;
      EXPECT_LE(c, budget);
      EXPECT_NEAR(s, best, 1e-12 * best) << "trial " << trial << " budget " << budget;
    }
    const auto front = pareto_frontier(mods);
    ASSERT_FALSE(front.empty());
    EXPECT_DOUBLE_EQ(front.front().first, min_cost);
    for (size_t i = 1; i < front.size(); ++i) {
      EXPECT_GT(front[i].first, front[i - 1].first);
      EXPECT_LT(front[i].second, front[i - 1].second);
    }
  }
}

TEST(Pareto, ViTSizedInstanceAndErrors) {
  // 24 modules x 5 bit widths, DeiT-Tiny-like parameter counts; budget: 4 bits on average.
  std::vector<std::vector<BitOption>> mods;
  double params_total = 0;
  for (int m = 0; m < 24; ++m) {
    const double params = m % 2 ? 2 * 192.0 * 768 : 4 * 192.0 * 192;
    params_total += params;
    std::vector<BitOption> o;
    for (int b : {3, 4, 5, 6, 8}) o.push_back({b, params * b, (1 + m % 5) * std::pow(4.0, -b)});
    mods.push_back(o);
  }
  const auto choice = pareto_choose(mods, params_total * 4.0);
  double cost = 0;
  for (int m = 0; m < 24; ++m) cost += mods[m][choice[m]].cost;
  EXPECT_LE(cost, params_total * 4.0);
  EXPECT_LT(pareto_frontier(mods).size(), 100000u);
  // Uniform 3 bits (the cheapest) exactly on budget is feasible; one bit less is not.
  EXPECT_NO_THROW(pareto_choose(mods, params_total * 3.0));
  EXPECT_VQM_ERROR(pareto_choose(mods, params_total * 3.0 - 1), invalid_argument, "cheapest");
  EXPECT_VQM_ERROR(pareto_choose({{}}, 1.0), invalid_argument, "no options");
  EXPECT_VQM_ERROR(pareto_choose({{{4, NAN, 1.0}}}, 1.0), invalid_argument, "non-finite");
  EXPECT_TRUE(pareto_choose({}, 0.0).empty());
}

// --- packing -------------------------------------------------------------------------------------

TEST(Pack, RoundTripsAllWidthsAndAwkwardRowLengths) {
  std::mt19937 rng(13);
  for (int bits : {2, 3, 4, 5, 6, 7, 8}) {
    const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
    for (int64_t k : {1, 2, 3, 5, 8, 63, 64, 65}) {
      const int64_t rows = 3;
      std::vector<int8_t> q(rows * k);
      for (auto &v : q) v = static_cast<int8_t>(lo + static_cast<int>(rng() % (hi - lo + 1)));
      q[0] = static_cast<int8_t>(lo);
      q.back() = static_cast<int8_t>(hi);
      if (k > 1) q[1] = static_cast<int8_t>(hi), q[k] = static_cast<int8_t>(lo);
      const auto packed = pack_rows(q.data(), rows, k, bits);
      const uint64_t row_bytes = (static_cast<uint64_t>(k) * bits + 7) / 8;
      ASSERT_EQ(packed.size(), rows * row_bytes) << bits << " " << k;
      EXPECT_EQ(packed_row_size(k, bits), static_cast<int64_t>(row_bytes));
      std::vector<int8_t> back(q.size());
      unpack_rows(packed.data(), rows, k, bits, back.data());
      EXPECT_EQ(back, q) << "bits " << bits << " k " << k;
    }
  }
}

TEST(Pack, KnownByteLayout) {
  // q4: value 2j in the low nibble of byte j; the unused high nibble of the last byte is zero.
  const int8_t q4[] = {1, -1, 7, -8, -8};
  EXPECT_EQ(pack_rows(q4, 1, 5, 4), (std::vector<uint8_t>{0xF1, 0x87, 0x08}));
  // q6 (docs/vqm-format.md): byte0 = v0 | v1 << 6, byte1 = v1 >> 2 | v2 << 4,
  // byte2 = v2 >> 4 | v3 << 2. Patterns 0x01, 0x3F, 0x1F, 0x20 -> 0xC1, 0xFF, 0x81.
  const int8_t q6[] = {1, -1, 31, -32};
  EXPECT_EQ(pack_rows(q6, 1, 4, 6), (std::vector<uint8_t>{0xC1, 0xFF, 0x81}));
  // Two rows of 5 q6 values: 30 bits -> 4 bytes per row, each row starting on a byte.
  const int8_t q6b[] = {0, 0, 0, 0, -1, -1, 0, 0, 0, 0};
  EXPECT_EQ(pack_rows(q6b, 2, 5, 6), (std::vector<uint8_t>{0, 0, 0, 0x3F, 0x3F, 0, 0, 0}));
  // q3: patterns 0b011, 0b111, 0b100 -> bits 011 111 100 (LSB first) = 0b00'100'111'011 = 0x3B,
  // 0x01; q5: 0b01111, 0b10000 -> 0b10000'01111 = 0x0F, 0x02.
  const int8_t q3[] = {3, -1, -4};
  EXPECT_EQ(pack_rows(q3, 1, 3, 3), (std::vector<uint8_t>{0x3B, 0x01}));
  const int8_t q5[] = {15, -16};
  EXPECT_EQ(pack_rows(q5, 1, 2, 5), (std::vector<uint8_t>{0x0F, 0x02}));
}

TEST(Pack, RejectsValuesOutOfRangeAndBadWidths) {
  const int8_t q[] = {0, 8};
  EXPECT_VQM_ERROR(pack_rows(q, 1, 2, 4), invalid_argument, "column 1");
  const int8_t q6[] = {-33};
  EXPECT_VQM_ERROR(pack_rows(q6, 1, 1, 6), invalid_argument, "6 bits");
  EXPECT_VQM_ERROR(pack_rows(q, 1, 2, 9), invalid_argument, "bits");
  EXPECT_VQM_ERROR(pack_rows(q, 1, 2, 1), invalid_argument, "bits");
  int8_t out[2];
  const uint8_t bytes[] = {0};
  EXPECT_VQM_ERROR(unpack_rows(bytes, 1, 2, 9, out), invalid_argument, "bits");
}

}  // namespace
}  // namespace vqm::quant
