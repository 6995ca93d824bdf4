// The int8 candidate path of the interval searches (quantizer/search_gemm.h) against the fp32 path
// it replaces, over awkward sizes (k = 1, odd n, one token, sizes off every vector width): integer
// codes that dequantize to fake quantization bit for bit, exact int32 products, the int forms of
// Pearson, ranking loss and column errors equal to the float forms on the materialised output,
// and whole searches that pick the same or an equally good candidate.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "quantizer/quant_math.h"
#include "quantizer/search.h"
#include "quantizer/search_gemm.h"
#include "test_util.h"

namespace vqm::quant {
namespace {

std::vector<float> normal(size_t n, uint32_t seed, float sd = 1.f) {
  return test::normal_floats(n, seed, sd);
}

template <class T>
std::vector<T> uniform_ints(size_t n, int lo, int hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<T> v(n);
  for (auto &x : v) x = static_cast<T>(d(rng));
  return v;
}

#define SKIP_WITHOUT_EXACT_INT8(k) \
  if (!int8_candidates_exact(k)) GTEST_SKIP() << "no exact int8 products on this CPU"

TEST(IntCodes, DequantizeToFakeQuantizationBitForBit) {
  for (int bits = 2; bits <= 8; ++bits) {
    const int qmax = (1 << bits) - 1;
    for (int zp : {0, 1, 1 << (bits - 1), qmax}) {
      for (int64_t n : {0, 1, 7, 33, 2 * 16384 + 5}) {
        const auto x = normal(static_cast<size_t>(n) + 1, static_cast<uint32_t>(bits * 100 + zp));
        const ActGrid g = ActGrid{bits, zp, 3.f / qmax};
        std::vector<float> fq(x.size());
        fake_quant_act(x.data(), fq.data(), n, g);
        std::vector<uint8_t> codes(x.size());
        quantize_act_codes(x.data(), codes.data(), n, g);
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ((codes[i] - zp) * g.delta, fq[i]) << bits << " " << zp << " " << i;
        if (zp > 128 || qmax - zp > 127) {
          EXPECT_VQM_ERROR(quantize_act_levels(x.data(), nullptr, n, g), invalid_argument, "int8");
          continue;
        }
        std::vector<int8_t> levels(x.size());
        quantize_act_levels(x.data(), levels.data(), n, g);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(levels[i] * g.delta, fq[i]) << bits << " " << i;
      }
    }
  }
}

TEST(SearchGemm, Int8LinearProductsAreExact) {
  for (int64_t m : {1, 7, 33})
    for (int64_t k : {1, 3, 64, 67})
      for (int64_t n : {1, 5, 70}) {
        SKIP_WITHOUT_EXACT_INT8(k);
        const auto x = uniform_ints<uint8_t>(m * k, 0, 255, 1);
        const auto w = uniform_ints<int8_t>(n * k, -128, 127, 2);
        std::vector<int32_t> acc(m * n);
        Int8LinearGemm(m, k, n).run(x.data(), w.data(), acc.data());
        for (int64_t i = 0; i < m; ++i)
          for (int64_t c = 0; c < n; ++c) {
            int64_t s = 0;
            for (int64_t j = 0; j < k; ++j) s += int64_t{x[i * k + j]} * w[c * k + j];
            ASSERT_EQ(acc[i * n + c], s) << m << "x" << k << "x" << n;
          }
      }
}

TEST(SearchGemm, Int8BatchedProductsAreExact) {
  const int64_t batch = 3;
  for (bool nk : {false, true})
    for (int zp : {0, 7, 255})
      for (int64_t m : {1, 9})
        for (int64_t k : {1, 5, 64})
          for (int64_t n : {1, 13}) {
            SKIP_WITHOUT_EXACT_INT8(k);
            const auto a = uniform_ints<uint8_t>(batch * m * k, 0, 255, 3);
            const auto b = uniform_ints<int8_t>(batch * k * n, -128, 127, 4);
            std::vector<int32_t> acc(batch * m * n);
            Int8BatchedGemm(batch, m, k, n, nk, zp).run(a.data(), b.data(), acc.data());
            for (int64_t t = 0; t < batch; ++t)
              for (int64_t i = 0; i < m; ++i)
                for (int64_t c = 0; c < n; ++c) {
                  int64_t s = 0;
                  for (int64_t j = 0; j < k; ++j) {
                    const int8_t bv = nk ? b[(t * n + c) * k + j] : b[(t * k + j) * n + c];
                    s += (int64_t{a[(t * m + i) * k + j]} - zp) * bv;
                  }
                  ASSERT_EQ(acc[(t * m + i) * n + c], s) << nk << " " << zp;
                }
          }
}

// o_hat = acc * scale[c] + bias[c] in float, as the fp32 path would hold it.
std::vector<float> materialise(const std::vector<int32_t> &acc, const std::vector<double> &scale,
                               const std::vector<double> &bias) {
  const size_t cols = scale.size();
  std::vector<float> out(acc.size());
  for (size_t i = 0; i < acc.size(); ++i)
    out[i] = static_cast<float>(acc[i] * scale[i % cols] + bias[i % cols]);
  return out;
}

TEST(IntForms, PearsonRankingAndColumnErrorsMatchTheFloatForms) {
  const int64_t samples = 3;
  for (int64_t rows : {1, 5})
    for (int64_t cols : {1, 3, 17, 130}) {
      const int64_t per = rows * cols, total = samples * per;
      auto acc = uniform_ints<int32_t>(total, -1000000, 1000000, 5);
      std::vector<double> scale(cols), bias(cols);
      for (int64_t c = 0; c < cols; ++c) scale[c] = 1e-6 * (1 + c % 4), bias[c] = 0.1 * (c % 3);
      // The reference: the float output plus noise; sample 1's candidate is constant (the exact
      // two-pass fallback of the int form).
      std::vector<float> o = materialise(acc, scale, bias);
      const auto noise = normal(o.size(), 6, 0.05f);
      for (size_t i = 0; i < o.size(); ++i) o[i] += noise[i];
      for (int64_t i = per; i < 2 * per; ++i) acc[i] = 0;
      const std::vector<float> hat = materialise(acc, scale, bias);
      const PearsonReference ref(o.data(), samples, per);
      EXPECT_NEAR(ref.mean(acc.data(), cols, scale.data(), bias.data()), ref.mean(hat.data()), 1e-6)
          << rows << "x" << cols;
      if (cols > 1) {
        const auto pairs = sample_ranking_pairs(o.data(), samples * rows, cols, 16, 1);
        const std::vector<double> s1(cols, scale[0]), zero(cols, 0.0);
        const std::vector<float> hat1 = materialise(acc, s1, zero);
        EXPECT_NEAR(ranking_loss_on_pairs(pairs, acc.data(), scale[0], 0.01f),
                    ranking_loss_on_pairs(pairs, hat1.data(), 0.01f), 1e-6);
      }
      std::vector<double> sse_int(cols), sse_float(cols);
      column_sse(o.data(), acc.data(), scale.data(), bias.data(), samples * rows, cols,
                 sse_int.data());
      column_sse(o.data(), hat.data(), samples * rows, cols, sse_float.data());
      // The float form holds o_hat rounded to float (2^-24 of values ~1 against errors ~0.05):
      // ~1e-6 of the sum, so 1e-5 relative.
      for (int64_t c = 0; c < cols; ++c) EXPECT_NEAR(sse_int[c], sse_float[c], 1e-5 * sse_float[c]);
    }
}

// The paper's objective of a linear result, recomputed in double from its deltas on all rows.
double linear_objective(const LinearProblem &p, const LinearResult &r) {
  const int64_t rows = p.samples * p.tokens;
  std::vector<float> xh(rows * p.k), wh(p.n * p.k);
  fake_quant_act(p.x, xh.data(), rows * p.k, r.x_grid);
  std::vector<float> d(p.n, r.w_delta[0]);
  if (r.w_delta.size() == size_t(p.n)) d = r.w_delta;
  fake_quant_weights(p.w, p.n, p.k, d.data(), p.w_bits, wh.data());
  std::vector<float> o(rows * p.n), oh(rows * p.n);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t c = 0; c < p.n; ++c) {
      double s = p.bias[c], sh = p.bias[c];
      for (int64_t j = 0; j < p.k; ++j) {
        s += double(p.x[i * p.k + j]) * p.w[c * p.k + j];
        sh += double(xh[i * p.k + j]) * wh[c * p.k + j];
      }
      o[i * p.n + c] = float(s);
      oh[i * p.n + c] = float(sh);
    }
  return mean_pearson(o.data(), oh.data(), p.samples, p.tokens * p.n);
}

TEST(SearchInt8, LinearSearchPicksAnEquallyGoodCandidate) {
  struct Case {
    int64_t samples, tokens, k, n;
    int bits, zp;
  };
  for (const Case &c : {Case{3, 1, 1, 1, 4, 8}, Case{2, 7, 3, 5, 2, 1}, Case{4, 5, 67, 70, 8, 128},
                        Case{3, 9, 33, 17, 6, 20}, Case{2, 16, 130, 3, 4, 0}}) {
    SKIP_WITHOUT_EXACT_INT8(c.k);
    auto x = normal(c.samples * c.tokens * c.k, 11);
    x[0] = 9.f;  // an outlier worth clipping
    const auto w = normal(c.n * c.k, 12, 0.2f), b = normal(c.n, 13, 0.1f);
    const LinearProblem p{x.data(), c.samples, c.tokens, c.k,    w.data(),
                          b.data(), c.n,       c.bits,   c.bits, c.zp};
    SearchOptions opt;
    opt.candidates = 40;
    opt.int8_candidates = false;
    const LinearResult fp = search_linear(p, opt);
    opt.int8_candidates = true;
    const LinearResult in = search_linear(p, opt);
    const std::string what = std::to_string(c.k) + "x" + std::to_string(c.n);
    EXPECT_NEAR(linear_objective(p, in), linear_objective(p, fp), 1e-6) << what;
    EXPECT_NEAR(in.similarity, fp.similarity, 1e-6) << what;
    EXPECT_NEAR(in.similarity_corrected, fp.similarity_corrected, 1e-6) << what;
    if (in.w_delta == fp.w_delta && in.x_grid.delta == fp.x_grid.delta) {
      for (int64_t j = 0; j < c.n; ++j)
        EXPECT_NEAR(in.bias_correction[j], fp.bias_correction[j], 1e-5) << what;
    }
  }
}

// The objective of a matmul result (mean Pearson - gamma * sampled ranking loss, as the search
// scores it), recomputed in double from its grids.
double matmul_objective(const MatmulProblem &p, const MatmulResult &r, bool ranking, float gamma) {
  std::vector<float> ah(p.batch * p.m * p.k), bh(p.batch * p.k * p.n);
  fake_quant_act(p.a, ah.data(), int64_t(ah.size()), r.a_grid);
  fake_quant_act(p.b, bh.data(), int64_t(bh.size()), r.b_grid);
  std::vector<float> o(p.batch * p.m * p.n), oh(o.size());
  for (int64_t t = 0; t < p.batch; ++t)
    for (int64_t i = 0; i < p.m; ++i)
      for (int64_t c = 0; c < p.n; ++c) {
        double s = 0, sh = 0;
        for (int64_t j = 0; j < p.k; ++j) {
          const int64_t bi = p.b_is_nk ? (t * p.n + c) * p.k + j : (t * p.k + j) * p.n + c;
          s += double(p.a[(t * p.m + i) * p.k + j]) * p.b[bi];
          sh += double(ah[(t * p.m + i) * p.k + j]) * bh[bi];
        }
        o[(t * p.m + i) * p.n + c] = float(s * p.out_scale);
        oh[(t * p.m + i) * p.n + c] = float(sh * p.out_scale);
      }
  const double sim = mean_pearson(o.data(), oh.data(), p.samples, p.batch / p.samples * p.m * p.n);
  if (!ranking) return sim;
  return sim - gamma * ranking_loss(o.data(), oh.data(), p.batch * p.m, p.n, 0.f, 64, 0);
}

TEST(SearchInt8, MatmulSearchPicksAnEquallyGoodCandidate) {
  struct Case {
    int64_t samples, heads, t, dim;
    int bits, a_zp, b_zp;
    bool nk, ranking;
  };
  // The last case's 8-bit b grid with zero point 100 has levels outside s8: the fp32 fallback.
  for (const Case &c :
       {Case{2, 1, 1, 1, 4, 8, 8, true, true}, Case{3, 2, 7, 5, 4, 8, 3, true, true},
        Case{2, 3, 9, 17, 8, 128, 128, true, true}, Case{2, 2, 11, 6, 6, 0, 32, false, false},
        Case{2, 2, 5, 3, 8, 128, 100, true, false}}) {
    SKIP_WITHOUT_EXACT_INT8(c.dim);
    const int64_t batch = c.samples * c.heads, k = c.nk ? c.dim : c.t, n = c.nk ? c.t : c.dim;
    auto a = normal(batch * c.t * k, 21, 1.5f);
    if (c.a_zp == 0)
      for (auto &v : a) v = std::fabs(v);  // softmax-like, non-negative
    const auto b = normal(batch * k * n, 22, 1.5f);
    const MatmulProblem p{a.data(),  b.data(), batch,  c.t,    k,      n,   c.nk,
                          c.samples, c.bits,   c.bits, c.a_zp, c.b_zp, 0.5f};
    SearchOptions opt;
    opt.candidates = 30;
    opt.int8_candidates = false;
    const MatmulResult fp = search_matmul(p, opt, c.ranking);
    opt.int8_candidates = true;
    const MatmulResult in = search_matmul(p, opt, c.ranking);
    EXPECT_NEAR(matmul_objective(p, in, c.ranking, opt.gamma),
                matmul_objective(p, fp, c.ranking, opt.gamma), 1e-6)
        << c.t << "x" << c.dim;
    EXPECT_NEAR(in.similarity, fp.similarity, 1e-6) << c.t << "x" << c.dim;
    EXPECT_NEAR(in.rank_loss, fp.rank_loss, 1e-6) << c.t << "x" << c.dim;
  }
}

// The q-quantile by a full sort, as the search computed it before the one-pass tail heaps.
float sorted_quantile(std::vector<float> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const size_t i = size_t(std::floor(pos));
  const double frac = pos - double(i);
  if (frac <= 0 || i + 1 >= v.size()) return v[i];
  return float(v[i] + frac * (double(v[i + 1]) - v[i]));
}

TEST(SearchRanges, PercentileStartMatchesAFullSort) {
  for (int64_t n : {1, 2, 17, 16 * 1000 + 3, 200000}) {
    for (double pct : {0.9999, 0.99, 0.9}) {
      auto x = normal(size_t(n), uint32_t(n), 2.f);
      for (int64_t i = 0; i < n; i += 7) x[i] = std::round(x[i]);  // ties
      if (n > 5) x[3] = 80.f, x[4] = -50.f;
      const float w = 1.f;
      const LinearProblem p{x.data(), 1, n, 1, &w, nullptr, 1, 8, 8, 128};
      const float hi = sorted_quantile(x, pct), lo = sorted_quantile(x, 1.0 - pct);
      const float want = float(std::max({0.0, double(hi) / 127, -double(lo) / 128}));
      EXPECT_EQ(minmax_linear(p, pct).x_grid.delta, want > 0 ? want : 1.f) << n << " " << pct;
    }
  }
}

}  // namespace
}  // namespace vqm::quant
