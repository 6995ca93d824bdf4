// nuclear_norm of quant_math.h: the Gram matrix of the smaller side, its eigenvalues by
// Householder tridiagonalisation and implicit QL, and the sum of their square roots.
#include <algorithm>
#include <cmath>
#include <vector>

#include "quantizer/quant_math.h"
#include "runtime/io/error.h"

namespace vqm::quant {

namespace {

// Householder reduction of the symmetric p x p matrix g (row-major, lower triangle used and
// destroyed) to tridiagonal form: diagonal d, sub-diagonal e[1..p-1] (e[0] = 0). Numerical
// Recipes' tred2 without the eigenvectors: 4/3 p^3 flops, against the ~10 sweeps of 4 p^3 that
// cyclic Jacobi took, which made the nuclear norms the largest serial part of mixed precision.
void tridiagonalize(std::vector<double> &g, int64_t p, std::vector<double> &d,
                    std::vector<double> &e) {
  auto z = [&](int64_t i, int64_t j) -> double & { return g[i * p + j]; };
  for (int64_t i = p - 1; i > 0; --i) {
    const int64_t l = i - 1;
    double h = 0, scale = 0;
    for (int64_t k = 0; k < i; ++k) scale += std::fabs(z(i, k));
    if (l == 0 || scale == 0) {
      e[i] = z(i, l);  // nothing to annihilate left of the sub-diagonal
      continue;
    }
    for (int64_t k = 0; k < i; ++k) {
      z(i, k) /= scale;
      h += z(i, k) * z(i, k);
    }
    double f = z(i, l);
    double gg = f >= 0 ? -std::sqrt(h) : std::sqrt(h);
    e[i] = scale * gg;
    h -= f * gg;
    z(i, l) = f - gg;
    f = 0;
    for (int64_t j = 0; j < i; ++j) {  // e = A u / h, f = u^T A u / h
      gg = 0;
      for (int64_t k = 0; k <= j; ++k) gg += z(j, k) * z(i, k);
      for (int64_t k = j + 1; k < i; ++k) gg += z(k, j) * z(i, k);
      e[j] = gg / h;
      f += e[j] * z(i, j);
    }
    const double hh = f / (h + h);
    for (int64_t j = 0; j < i; ++j) {  // A -= u q^T + q u^T, q = e - hh u
      f = z(i, j);
      e[j] = gg = e[j] - hh * f;
      for (int64_t k = 0; k <= j; ++k) z(j, k) -= f * e[k] + gg * z(i, k);
    }
  }
  e[0] = 0;
  for (int64_t i = 0; i < p; ++i) d[i] = z(i, i);
}

// Eigenvalues of the symmetric p x p matrix g (row-major, destroyed): tridiagonal reduction,
// then QL with implicit Wilkinson shifts (Numerical Recipes' tqli without the eigenvectors).
std::vector<double> symmetric_eigenvalues(std::vector<double> &g, int64_t p) {
  std::vector<double> d(static_cast<size_t>(p)), e(static_cast<size_t>(p));
  tridiagonalize(g, p, d, e);
  for (int64_t i = 1; i < p; ++i) e[i - 1] = e[i];
  e[p - 1] = 0;
  const double eps = std::numeric_limits<double>::epsilon();
  for (int64_t l = 0; l < p; ++l) {
    for (int iter = 0;; ++iter) {
      int64_t m = l;
      for (; m < p - 1; ++m)  // a negligible e[m] splits the matrix there
        if (std::fabs(e[m]) <= eps * (std::fabs(d[m]) + std::fabs(d[m + 1]))) break;
      if (m == l) break;
      if (iter == 60) fail(ErrorCode::internal, "nuclear_norm: eigenvalues did not converge");
      double gg = (d[l + 1] - d[l]) / (2.0 * e[l]);
      double r = std::hypot(gg, 1.0);
      gg = d[m] - d[l] + e[l] / (gg + (gg >= 0 ? r : -r));
      double s = 1, c = 1, pp = 0;
      int64_t i = m - 1;
      for (; i >= l; --i) {
        const double f = s * e[i], b = c * e[i];
        e[i + 1] = r = std::hypot(f, gg);
        if (r == 0) {  // underflow: deflate and restart this l
          d[i + 1] -= pp;
          e[m] = 0;
          break;
        }
        s = f / r;
        c = gg / r;
        gg = d[i + 1] - pp;
        r = (d[i] - gg) * s + 2.0 * c * b;
        d[i + 1] = gg + (pp = s * r);
        gg = c * r - b;
      }
      if (r == 0 && i >= l) continue;
      d[l] -= pp;
      e[l] = gg;
      e[m] = 0;
    }
  }
  return d;
}

}  // namespace

double nuclear_norm(const float *a, int64_t m, int64_t n) {
  check_sizes("nuclear_norm", m, n);
  if (m == 0 || n == 0) return 0.0;
  if (!a) bad_argument("nuclear_norm: null pointer");
  const int64_t p = std::min(m, n);
  std::vector<double> g(static_cast<size_t>(p * p));
  if (m <= n) {  // A A^T: dot products of rows
#pragma omp parallel for schedule(dynamic, 4) if (m * m * n >= kParallelMin)
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = i; j < m; ++j) {
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t k = 0; k < n; ++k) s += static_cast<double>(a[i * n + k]) * a[j * n + k];
        g[i * p + j] = g[j * p + i] = s;
      }
    }
  } else {  // A^T A: each thread owns rows i of G, accumulating over the rows of A
#pragma omp parallel for schedule(dynamic, 4) if (m * n * n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      double *gi = &g[i * p];
      for (int64_t r = 0; r < m; ++r) {
        const double ari = a[r * n + i];
        const float *ar = a + r * n;
        for (int64_t j = i; j < n; ++j) gi[j] += ari * ar[j];
      }
    }
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < i; ++j) g[i * p + j] = g[j * p + i];
  }
  const std::vector<double> ev = symmetric_eigenvalues(g, p);
  double s = 0;
  for (double v : ev) s += v > 0 ? std::sqrt(v) : 0.0;
  return s;
}

}  // namespace vqm::quant
