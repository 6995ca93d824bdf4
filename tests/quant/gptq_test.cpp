// GPTQ weight rounding (quantizer/gptq.h) against the textbook algorithm written out here
// (Frantar et al., Algorithm 1 without lazy batching: explicit inverse of the damped Hessian, its
// upper Cholesky factor, one column at a time), over awkward sizes; that it lowers the output
// error it targets on correlated inputs; that it is nearest rounding when the inputs are
// uncorrelated; the Hessian against a plain double loop; the fp32-target weights against their
// defining objective; bad arguments.
#include "quantizer/gptq.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <numeric>
#include <utility>

#include "quantizer/quant_math.h"
#include "test_util.h"

namespace vqm::quant {
namespace {

using test::expect_error;
using test::uniform_floats;

// Correlated inputs: x = z M with z uniform and M a random mixing matrix, plus a mean offset
// (post-LayerNorm and GELU activations are neither centred nor independent).
std::vector<float> correlated_inputs(int64_t rows, int64_t k, uint32_t seed) {
  const std::vector<float> z = uniform_floats(static_cast<size_t>(rows * k), seed);
  const std::vector<float> m = uniform_floats(static_cast<size_t>(k * k), seed + 1);
  std::vector<float> x(static_cast<size_t>(rows * k));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < k; ++j) {
      double s = 0.3;
      for (int64_t t = 0; t < k; ++t) s += double(z[r * k + t]) * m[t * k + j];
      x[r * k + j] = static_cast<float>(s);
    }
  return x;
}

std::vector<float> max_deltas(const std::vector<float> &w, int64_t n, int64_t k, int bits) {
  std::vector<float> d(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    float mx = 0;
    for (int64_t j = 0; j < k; ++j) mx = std::max(mx, std::fabs(w[r * k + j]));
    d[r] = mx > 0 ? mx / ((1 << (bits - 1)) - 0.5f) : 1.f;
  }
  return d;
}

// Lower Cholesky factor of a (k x k, double), textbook.
std::vector<double> chol(const std::vector<double> &a, int64_t k) {
  std::vector<double> l(a.size(), 0.0);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = a[i * k + j];
      for (int64_t m = 0; m < j; ++m) s -= l[i * k + m] * l[j * k + m];
      l[i * k + j] = i == j ? std::sqrt(s) : s / l[j * k + j];
    }
  return l;
}

// Inverse by Gauss-Jordan with partial pivoting.
std::vector<double> inverse(std::vector<double> a, int64_t k) {
  std::vector<double> inv(a.size(), 0.0);
  for (int64_t i = 0; i < k; ++i) inv[i * k + i] = 1;
  for (int64_t c = 0; c < k; ++c) {
    int64_t p = c;
    for (int64_t r = c + 1; r < k; ++r)
      if (std::fabs(a[r * k + c]) > std::fabs(a[p * k + c])) p = r;
    for (int64_t j = 0; j < k; ++j) {
      std::swap(a[c * k + j], a[p * k + j]);
      std::swap(inv[c * k + j], inv[p * k + j]);
    }
    const double d = a[c * k + c];
    for (int64_t j = 0; j < k; ++j) a[c * k + j] /= d, inv[c * k + j] /= d;
    for (int64_t r = 0; r < k; ++r) {
      if (r == c) continue;
      const double f = a[r * k + c];
      for (int64_t j = 0; j < k; ++j)
        a[r * k + j] -= f * a[c * k + j], inv[r * k + j] -= f * inv[c * k + j];
    }
  }
  return inv;
}

// GPTQ as published: G = H[perm, perm] + damp * mean(diag) * I (dead columns' diagonal 1),
// U = chol(G^-1)^T, then per column: round, error / U_ii, subtract error * U_i,j>i from the rest.
std::vector<int8_t> textbook_gptq(const std::vector<float> &w, int64_t n, int64_t k,
                                  const std::vector<float> &delta, int bits,
                                  const std::vector<double> &h, const GptqOptions &opt) {
  std::vector<int64_t> perm(static_cast<size_t>(k));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (opt.act_order)
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return h[a * k + a] > h[b * k + b]; });
  double mean = 0;
  for (int64_t i = 0; i < k; ++i) mean += h[i * k + i] / double(k);
  std::vector<double> g(static_cast<size_t>(k * k));
  for (int64_t a = 0; a < k; ++a)
    for (int64_t b = 0; b < k; ++b) g[a * k + b] = h[perm[a] * k + perm[b]];
  for (int64_t a = 0; a < k; ++a) {
    double &d = g[a * k + a];
    d = (d > 0 ? d : 1.0) + (mean > 0 ? opt.damp * mean : 1.0);
  }
  const std::vector<double> l = chol(inverse(g, k), k);  // U[i][j] = l[j][i]
  std::vector<int8_t> q(static_cast<size_t>(n * k));
  for (int64_t r = 0; r < n; ++r) {
    std::vector<double> wv(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) wv[i] = w[r * k + perm[i]];
    for (int64_t i = 0; i < k; ++i) {
      const float target = static_cast<float>(wv[i]);
      int8_t level = 0;
      quantize_weights(&target, 1, 1, &delta[r], bits, &level);
      q[r * k + perm[i]] = level;
      const double e = (wv[i] - double(level) * delta[r]) / l[i * k + i];
      for (int64_t j = i + 1; j < k; ++j) wv[j] -= e * l[j * k + i];
    }
  }
  return q;
}

TEST(Gptq, MatchesTheTextbookAlgorithmOverAwkwardSizes) {
  struct Case {
    int64_t rows, k, n;
    int bits;
    bool act_order;
  };
  for (const Case &cs :
       {Case{9, 1, 3, 4, true}, Case{40, 7, 5, 2, true}, Case{64, 33, 17, 3, false},
        Case{100, 70, 9, 4, true}, Case{30, 50, 4, 8, true}}) {
    SCOPED_TRACE("k=" + std::to_string(cs.k) + " n=" + std::to_string(cs.n) +
                 " bits=" + std::to_string(cs.bits) + " rows=" + std::to_string(cs.rows));
    const std::vector<float> x = correlated_inputs(cs.rows, cs.k, 11);
    const std::vector<float> w = uniform_floats(static_cast<size_t>(cs.n * cs.k), 12);
    const std::vector<float> d = max_deltas(w, cs.n, cs.k, cs.bits);
    const std::vector<double> h = input_hessian(x.data(), cs.rows, cs.k);
    GptqOptions opt;
    opt.act_order = cs.act_order;
    std::vector<int8_t> q(w.size());
    gptq_round(w.data(), cs.n, cs.k, d.data(), cs.bits, h, opt, q.data());
    const std::vector<int8_t> ref = textbook_gptq(w, cs.n, cs.k, d, cs.bits, h, opt);
    // Both compute the same targets by different float paths (one Cholesky factor against an
    // inverse and a second factor): a target within an ulp of a rounding midpoint could round
    // apart, which these seeds do not hit. Any difference means the algorithms differ.
    EXPECT_EQ(q, ref);
    // And the feedback does something: not nearest rounding (k = 1 has nothing to feed back to).
    std::vector<int8_t> nearest(w.size());
    quantize_weights(w.data(), cs.n, cs.k, d.data(), cs.bits, nearest.data());
    if (cs.k > 1) {
      EXPECT_NE(q, nearest);
    }
  }
}

TEST(Gptq, LowersTheOutputErrorOnCorrelatedInputs) {
  const int64_t rows = 256, k = 48, n = 24;
  const std::vector<float> x = correlated_inputs(rows, k, 21);
  const std::vector<float> w = uniform_floats(static_cast<size_t>(n * k), 22);
  const std::vector<double> h = input_hessian(x.data(), rows, k);
  for (int bits : {3, 4}) {
    const std::vector<float> d = max_deltas(w, n, k, bits);
    std::vector<int8_t> nearest(w.size()), q(w.size());
    quantize_weights(w.data(), n, k, d.data(), bits, nearest.data());
    gptq_round(w.data(), n, k, d.data(), bits, h, GptqOptions{}, q.data());
    const double e_near = weight_output_error(w.data(), nearest.data(), n, k, d.data(), h);
    const double e_gptq = weight_output_error(w.data(), q.data(), n, k, d.data(), h);
    // Mixed inputs leave much of nearest rounding's output error to compensate: measured 0.49x
    // at 3 and 4 bits with these seeds. Nearest rounding is 1x by definition; 0.7 leaves room for
    // other seeds and still needs the feedback to work.
    EXPECT_LT(e_gptq, 0.7 * e_near) << bits << " bits";
    std::printf("%d bits: output error %.4g nearest, %.4g gptq\n", bits, e_near, e_gptq);
  }
}

// The error measure against its definition, mean over rows of e^T H e in double: awkward sizes,
// float products inside (a report figure), so agreement to 1e-5 relative.
TEST(Gptq, OutputErrorIsTheHessianWeightedSquaredError) {
  for (auto [n, k] : {std::pair<int64_t, int64_t>{1, 1}, {7, 33}, {24, 48}, {65, 17}}) {
    const std::vector<float> x = correlated_inputs(96, k, 31);
    const std::vector<float> w = uniform_floats(static_cast<size_t>(n * k), 32);
    const std::vector<double> h = input_hessian(x.data(), 96, k);
    const std::vector<float> d = max_deltas(w, n, k, 3);
    std::vector<int8_t> q(w.size());
    quantize_weights(w.data(), n, k, d.data(), 3, q.data());
    double ref = 0;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t a = 0; a < k; ++a)
        for (int64_t b = 0; b < k; ++b)
          ref += (double(w[r * k + a]) - double(q[r * k + a]) * d[r]) * h[a * k + b] *
                 (double(w[r * k + b]) - double(q[r * k + b]) * d[r]);
    ref /= double(n);
    EXPECT_NEAR(weight_output_error(w.data(), q.data(), n, k, d.data(), h), ref,
                1e-5 * std::abs(ref))
        << n << "x" << k;
  }
}

TEST(Gptq, IsNearestRoundingForUncorrelatedInputs) {
  const int64_t k = 19, n = 7;
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) h[i * k + i] = 1.0 + 0.1 * double(i);  // diagonal: independent
  h[3 * k + 3] = 0;                                                      // and one dead input
  const std::vector<float> w = uniform_floats(static_cast<size_t>(n * k), 31);
  const std::vector<float> d = max_deltas(w, n, k, 3);
  std::vector<int8_t> nearest(w.size()), q(w.size());
  quantize_weights(w.data(), n, k, d.data(), 3, nearest.data());
  gptq_round(w.data(), n, k, d.data(), 3, h, GptqOptions{}, q.data());
  EXPECT_EQ(q, nearest);
}

TEST(Gptq, HessianIsTheInputGram) {
  const int64_t rows = 37, k = 13;
  const std::vector<float> x = uniform_floats(static_cast<size_t>(rows * k), 41);
  const std::vector<double> h = input_hessian(x.data(), rows, k);
  for (int64_t a = 0; a < k; ++a)
    for (int64_t b = 0; b < k; ++b) {
      double s = 0;
      for (int64_t r = 0; r < rows; ++r) s += double(x[r * k + a]) * x[r * k + b];
      EXPECT_NEAR(h[a * k + b], s / rows, 1e-5) << a << "," << b;
    }
}

// output_matched_weights against its definition: W* minimises J(V) = |x W^T - x_hat V^T|^2 / rows
// + lambda |V - W|^2, so J's gradient 2 (V H - W M + lambda (V - W)) vanishes at W* (checked in
// double, relative to |W M|), and W* beats W on J. Awkward sizes, x_hat a perturbed x (what an
// upstream quantization does); W itself when x_hat == x.
TEST(Gptq, OutputMatchedWeightsMinimiseTheRidgeObjective) {
  // 150 spans three of the solver's 64-column panels (the last one partial).
  for (const auto &size :
       {std::pair<int64_t, int64_t>{1, 1}, {7, 33}, {24, 48}, {65, 17}, {70, 150}, {3, 129}}) {
    const int64_t n = size.first,
                  k = size.second;  // not a structured binding: the lambda reads them
    const int64_t rows = 200;
    const std::vector<float> x = correlated_inputs(rows, k, 61);
    const std::vector<float> noise = uniform_floats(static_cast<size_t>(rows * k), 62);
    std::vector<float> x_hat(x.size());
    for (size_t i = 0; i < x.size(); ++i) x_hat[i] = x[i] * 1.05f + 0.3f * noise[i];
    const std::vector<float> w = uniform_floats(static_cast<size_t>(n * k), 63);
    const std::vector<double> h = input_hessian(x_hat.data(), rows, k);
    const std::vector<double> m = cross_hessian(x.data(), x_hat.data(), rows, k);
    const double damp = 0.5;
    const std::vector<float> ws = output_matched_weights(w.data(), n, k, h, m, damp);
    double mean_diag = 0;
    for (int64_t i = 0; i < k; ++i) mean_diag += h[i * k + i] / double(k);
    const double lambda = damp * mean_diag;
    double grad2 = 0, ref2 = 0;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < k; ++j) {
        double g = lambda * (double(ws[r * k + j]) - w[r * k + j]), wm = 0;
        for (int64_t t = 0; t < k; ++t) {
          g += double(ws[r * k + t]) * h[t * k + j];
          wm += double(w[r * k + t]) * m[t * k + j];
        }
        grad2 += (g - wm) * (g - wm);
        ref2 += wm * wm;
      }
    // W* is computed in float (sgemm and float triangular solves of a ridge-conditioned system):
    // measured gradients ~3e-8 of |W M|.
    EXPECT_LT(std::sqrt(grad2), 1e-4 * std::sqrt(ref2)) << n << "x" << k;
    std::printf("%ldx%ld: gradient %.3g of |W M|\n", long(n), long(k), std::sqrt(grad2 / ref2));
    auto objective = [&](const std::vector<float> &v) {
      double s = 0;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < n; ++o) {
          double e = 0;
          for (int64_t j = 0; j < k; ++j)
            e += double(x[r * k + j]) * w[o * k + j] - double(x_hat[r * k + j]) * v[o * k + j];
          s += e * e / double(rows);
        }
      for (size_t i = 0; i < v.size(); ++i) s += lambda * (double(v[i]) - w[i]) * (v[i] - w[i]);
      return s;
    };
    EXPECT_LT(objective(ws), objective(w)) << n << "x" << k;
    // Unperturbed inputs: nothing to compensate.
    const std::vector<double> hx = input_hessian(x.data(), rows, k);
    const std::vector<float> same = output_matched_weights(w.data(), n, k, hx, hx, damp);
    for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(same[i], w[i], 1e-6) << i;
  }
  const std::vector<double> eye = {1.0};
  const float one = 1.f;
  expect_error(
      [&] {
        output_matched_weights(&one, 1, 1, eye, {1.0, 2.0}, 0.1);
      },
      ErrorCode::invalid_argument, "bad arguments");
}

TEST(Gptq, RejectsBadArguments) {
  const int64_t k = 4, n = 2;
  const std::vector<float> w = uniform_floats(static_cast<size_t>(n * k), 51);
  const std::vector<float> d(static_cast<size_t>(n), 0.1f);
  std::vector<double> h(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) h[i * k + i] = 1;
  std::vector<int8_t> q(w.size());
  expect_error([&] { gptq_round(w.data(), n, k, d.data(), 9, h, {}, q.data()); },
               ErrorCode::invalid_argument, "bits");
  expect_error(
      [&] { gptq_round(w.data(), n, k, d.data(), 4, std::vector<double>(3, 1.0), {}, q.data()); },
      ErrorCode::invalid_argument, "k x k");
  std::vector<double> bad = h;
  bad[k + 1] = NAN;
  expect_error([&] { gptq_round(w.data(), n, k, d.data(), 4, bad, {}, q.data()); },
               ErrorCode::invalid_argument, "non-finite");
  bad = h;
  bad[1] = bad[k] = 3.0;  // |corr| > 1: no Gram matrix, not positive definite
  expect_error([&] { gptq_round(w.data(), n, k, d.data(), 4, bad, {}, q.data()); },
               ErrorCode::invalid_argument, "positive definite");
  expect_error([&] { input_hessian(nullptr, 3, k); }, ErrorCode::invalid_argument, "empty");
}

}  // namespace
}  // namespace vqm::quant
