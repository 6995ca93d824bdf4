#include "quantizer/gptq.h"

#include <algorithm>
#include <cmath>
#include <dnnl.hpp>
#include <numeric>
#include <string>

#include "quantizer/multiversion.h"
#include "quantizer/quant_math.h"

namespace vqm::quant {

namespace {

// Rows of W handled together: one row of a k x k factor is read once for this many weight rows
// (a 3072-wide double row is 24 KB: 16 rows of work per read keep it in L1/L2).
constexpr int64_t kRowBlock = 16;

// Cloned per ISA (multiversion.h): the Cholesky factors and GPTQ's feedback are dot products of
// rows up to k = 3072 long, which the SSE2 baseline ran two doubles at a time.
VQM_MULTIVERSION double dot(const double *a, const double *b, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// In place: the lower Cholesky factor of the symmetric positive definite a [k, k] (row-major;
// the upper triangle is ignored, then zeroed). Row-oriented (each entry one contiguous dot
// product of two rows), rows in parallel for each column. False if a pivot is not positive.
bool cholesky_lower(std::vector<double> &a, int64_t k) {
  for (int64_t j = 0; j < k; ++j) {
    double *rj = a.data() + j * k;
    const double pivot = rj[j] - dot(rj, rj, j);
    if (!(pivot > 0) || !std::isfinite(pivot)) return false;
    const double ljj = std::sqrt(pivot);
    rj[j] = ljj;
    // A team per column pays a barrier per column: only where a column has real work (k of a
    // few thousand), serial below (k = 1536: ~0.3 s in all).
#pragma omp parallel for schedule(static) if ((k - j) * j >= (int64_t{1} << 20))
    for (int64_t i = j + 1; i < k; ++i) {
      double *ri = a.data() + i * k;
      ri[j] = (ri[j] - dot(ri, rj, j)) / ljj;
    }
  }
  for (int64_t i = 0; i < k; ++i)
    std::fill(a.begin() + i * k + i + 1, a.begin() + (i + 1) * k, 0.0);
  return true;
}

void check_args(const char *fn, const float *w, int64_t n, int64_t k, const float *delta, int bits,
                const std::vector<double> &h) {
  if (!w || !delta) bad_argument(std::string(fn) + ": null pointer");
  if (n <= 0 || k <= 0) bad_argument(std::string(fn) + ": n and k must be > 0");
  if (bits < 2 || bits > 8) bad_argument(std::string(fn) + ": bits must be in [2, 8]");
  if (static_cast<int64_t>(h.size()) != k * k)
    bad_argument(std::string(fn) + ": the Hessian is not k x k");
  for (double v : h)
    if (!std::isfinite(v)) bad_argument(std::string(fn) + ": non-finite Hessian (inputs?)");
  for (int64_t r = 0; r < n; ++r)
    if (!(std::isfinite(delta[r]) && delta[r] > 0.f))
      bad_argument(std::string(fn) + ": delta of row " + std::to_string(r) + " is not > 0");
}

// Columns in processing order: decreasing H diagonal (the columns that matter most are rounded
// first, while the most columns are left to absorb their error), or as they are.
std::vector<int64_t> column_order(const std::vector<double> &h, int64_t k, bool act_order) {
  std::vector<int64_t> perm(static_cast<size_t>(k));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (act_order)
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return h[a * k + a] > h[b * k + b]; });
  return perm;
}

// GPTQ's damping of a Hessian h [k, k]: damp times the mean of its diagonal added to the
// diagonal. All-zero inputs have nothing to weigh errors by, so they get the identity; a dead
// input column (zero diagonal) gets 1 (no coupling, any weight).
struct Damping {
  double add;
  Damping(const std::vector<double> &h, int64_t k, double damp) {
    double mean_diag = 0;
    for (int64_t i = 0; i < k; ++i) mean_diag += h[i * k + i];
    mean_diag /= static_cast<double>(k);
    add = mean_diag > 0 ? damp * mean_diag : 1.0;
  }
  double diagonal(double g) const { return (g > 0 ? g : 1.0) + add; }
};

// Feedback coefficients in processing order: c[i * k + j], j < i, such that column i is rounded
// from w_i + sum_j (w_j - w_hat_j) c[i][j]. With the damped, permuted Hessian G = V V^T (V
// upper triangular; GPTQ's U, the upper Cholesky factor of G^-1, is V^-1), c[i][j] = V_ji / V_ii:
// GPTQ's sequential update w_i -= (w_j - w_hat_j) U_ji / U_jj, unrolled. V is the lower Cholesky
// factor of G with rows and columns reversed.
std::vector<double> feedback(const std::vector<double> &h, int64_t k,
                             const std::vector<int64_t> &perm, double damp) {
  const Damping dm(h, k, damp);
  std::vector<double> r(static_cast<size_t>(k * k));
  for (int64_t a = 0; a < k; ++a)
    for (int64_t b = 0; b <= a; ++b) {
      const double g = h[perm[k - 1 - a] * k + perm[k - 1 - b]];
      r[a * k + b] = a == b ? dm.diagonal(g) : g;
    }
  if (!cholesky_lower(r, k)) bad_argument("gptq: the input Hessian is not positive definite");
  // V_ji = L[k-1-j][k-1-i] for j <= i.
  std::vector<double> c(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) {
    const double vii = r[(k - 1 - i) * k + (k - 1 - i)];
    for (int64_t j = 0; j < i; ++j) c[i * k + j] = r[(k - 1 - j) * k + (k - 1 - i)] / vii;
  }
  return c;
}

void sgemm_or_throw(char ta, char tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                    int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (dnnl::sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) != dnnl::status::success)
    bad_argument("gptq: sgemm failed");
}

// z [n, k] (row-major) := z (L L^T)^-1 for the lower triangular l [k, k]: each row solves
// L y = z_r, then L^T u = y. Column panels of kPanel: the coupling to the panels already solved
// is one sgemm, the triangle inside a panel a short loop.
void solve_cholesky_rows(const std::vector<float> &l, int64_t k, float *z, int64_t n) {
  constexpr int64_t kPanel = 64;
  for (int64_t p0 = 0; p0 < k; p0 += kPanel) {  // forward: y_i = (z_i - sum_j<i L_ij y_j) / L_ii
    const int64_t pb = std::min(kPanel, k - p0);
    if (p0 > 0)
      sgemm_or_throw('N', 'T', n, pb, p0, -1.0f, z, k, l.data() + p0 * k, k, 1.0f, z + p0, k);
#pragma omp parallel for schedule(static) if (n >= 64)
    for (int64_t r = 0; r < n; ++r) {
      float *zr = z + r * k;
      for (int64_t i = p0; i < p0 + pb; ++i) {
        float s = zr[i];
        for (int64_t j = p0; j < i; ++j) s -= l[i * k + j] * zr[j];
        zr[i] = s / l[i * k + i];
      }
    }
  }
  for (int64_t p1 = k; p1 > 0; p1 -= kPanel) {  // backward: u_i = (y_i - sum_j>i L_ji u_j) / L_ii
    const int64_t p0 = std::max<int64_t>(0, p1 - kPanel), pb = p1 - p0;
    if (p1 < k)
      sgemm_or_throw('N', 'N', n, pb, k - p1, -1.0f, z + p1, k, l.data() + p1 * k + p0, k, 1.0f,
                     z + p0, k);
#pragma omp parallel for schedule(static) if (n >= 64)
    for (int64_t r = 0; r < n; ++r) {
      float *zr = z + r * k;
      for (int64_t i = p1 - 1; i >= p0; --i) {
        float s = zr[i];
        for (int64_t j = i + 1; j < p1; ++j) s -= l[j * k + i] * zr[j];
        zr[i] = s / l[i * k + i];
      }
    }
  }
}

}  // namespace

std::vector<double> cross_hessian(const float *x, const float *x_hat, int64_t rows, int64_t k) {
  if (!x || !x_hat || rows <= 0 || k <= 0) bad_argument("cross_hessian: empty input");
  std::vector<float> hf(static_cast<size_t>(k * k));
  sgemm_or_throw('T', 'N', k, k, rows, 1.0f / static_cast<float>(rows), x, k, x_hat, k, 0.0f,
                 hf.data(), k);
  return std::vector<double>(hf.begin(), hf.end());
}

std::vector<double> input_hessian(const float *x, int64_t rows, int64_t k) {
  return cross_hessian(x, x, rows, k);
}

std::vector<float> output_matched_weights(const float *w, int64_t n, int64_t k,
                                          const std::vector<double> &h,
                                          const std::vector<double> &m, double damp) {
  if (!w || n <= 0 || k <= 0 || static_cast<int64_t>(h.size()) != k * k ||
      static_cast<int64_t>(m.size()) != k * k)
    bad_argument("output_matched_weights: bad arguments");
  // Setting the gradient to zero: W* (H + lambda I) = W (M + lambda I), so
  // W* = W + W (M - H) (H + lambda I)^-1: one Cholesky factor L, then Z = W (M - H) solved
  // against L L^T. Products in float through oneDNN's sgemm (the quantizer's baseline target has
  // no vector double arithmetic worth the name: in double this was 10 s of a DeiT-S run); the
  // ridge keeps the system well conditioned, so float loses nothing that matters for a target.
  const Damping dm(h, k, damp);
  std::vector<double> ld(h);
  for (int64_t i = 0; i < k; ++i) ld[i * k + i] = dm.diagonal(h[i * k + i]);
  if (!cholesky_lower(ld, k)) bad_argument("output_matched_weights: H is not positive definite");
  const std::vector<float> l(ld.begin(), ld.end());
  std::vector<float> diff(static_cast<size_t>(k * k)), z(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < k * k; ++i) diff[i] = static_cast<float>(m[i] - h[i]);
  sgemm_or_throw('N', 'N', n, k, k, 1.0f, w, k, diff.data(), k, 0.0f, z.data(), k);
  solve_cholesky_rows(l, k, z.data(), n);
  for (int64_t i = 0; i < n * k; ++i) z[i] += w[i];
  return z;
}

void gptq_round(const float *w, int64_t n, int64_t k, const float *delta_per_row, int bits,
                const std::vector<double> &h, const GptqOptions &opt, int8_t *q_out) {
  check_args("gptq_round", w, n, k, delta_per_row, bits, h);
  if (!q_out) bad_argument("gptq_round: null output");
  if (!(opt.damp >= 0) || !std::isfinite(opt.damp)) bad_argument("gptq_round: bad damping");
  const std::vector<int64_t> perm = column_order(h, k, opt.act_order);
  const std::vector<double> c = feedback(h, k, perm, opt.damp);
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(dynamic)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t r0 = blk * kRowBlock, r1 = std::min(n, r0 + kRowBlock);
    // err[rr][i]: w - w_hat of the rows' i-th processed column.
    std::vector<double> err(static_cast<size_t>((r1 - r0) * k));
    for (int64_t i = 0; i < k; ++i) {
      const double *ci = c.data() + i * k;
      for (int64_t r = r0; r < r1; ++r) {
        double *e = err.data() + (r - r0) * k;
        const float wi = w[r * k + perm[i]];
        const float target = static_cast<float>(wi + dot(e, ci, i));
        const int8_t level = weight_level(target, delta_per_row[r], bits);
        q_out[r * k + perm[i]] = level;
        e[i] = double(wi) - double(level) * double(delta_per_row[r]);
      }
    }
  }
}

double weight_output_error(const float *w, const int8_t *q, int64_t n, int64_t k,
                           const float *delta_per_row, const std::vector<double> &h) {
  check_args("weight_output_error", w, n, k, delta_per_row, 8, h);
  if (!q) bad_argument("weight_output_error: null levels");
  // sum_r e_r^T H e_r as one sgemm (E H) and a row-wise dot: a report figure, where float
  // products are ample; the double loop it replaces was 9 % of a DeiT-S quantization.
  std::vector<float> e(static_cast<size_t>(n * k)), eh(e.size()), hf(h.begin(), h.end());
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = r * k; j < (r + 1) * k; ++j)
      e[j] = static_cast<float>(double(w[j]) - double(q[j]) * delta_per_row[r]);
  sgemm_or_throw('N', 'N', n, k, k, 1.0f, e.data(), k, hf.data(), k, 0.0f, eh.data(), k);
  double sum = 0;
  for (int64_t i = 0; i < n * k; ++i) sum += double(e[i]) * eh[i];
  return sum / static_cast<double>(n);
}

}  // namespace vqm::quant
