// AVX-512 exp and erf for float lanes. Include only from files compiled with -mavx512f
// (see CMakeLists.txt: *_avx512.cpp get per-file flags). Accuracy is tested against std::exp /
// std::erf in tests/kernels/.
#pragma once
#include <immintrin.h>

#include <cmath>
#include <cstdint>

namespace vqm::kernels::avx512 {

// exp(x) to ~1 ulp: x = n ln2 + r with |r| <= ln2/2, Cephes degree-6 polynomial for e^r, then
// scale by 2^n with vscalefps (which also handles the underflow end without integer tricks).
inline __m512 exp_ps(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.7f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

// erf(x) as an odd/even rational approximation on [-4, 4] (erf saturates to +-1 in float beyond
// that); the same coefficients as Eigen's and XLA's float erf, max error a few ulp. (A division-
// free quotient, vrcp14ps and a Newton step, measured no faster in gelu_quant on AMD EPYC family
// 25: the ~25 other vector operations per 16 values are the cost.)
inline __m512 erf_ps(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-4.0f)), _mm512_set1_ps(4.0f));
  const __m512 x2 = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(-2.72614225801306e-10f);
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(2.77068142495902e-08f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-2.10102402082508e-06f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-5.69250639462346e-05f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-7.34990630326855e-04f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-2.95459980854025e-03f));
  p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-1.60960333262415e-02f));
  p = _mm512_mul_ps(p, x);
  __m512 q = _mm512_set1_ps(-1.45660718464996e-05f);
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-2.13374055278905e-04f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-1.68282697438203e-03f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-7.37332916720468e-03f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-1.42647390514189e-02f));
  return _mm512_div_ps(p, q);
}

// GELU, 0.5 x (1 + erf(x / sqrt 2)): gelu_erf_f32's and gelu_quant's one definition.
inline __m512 gelu_erf_ps(__m512 v) {
  const __m512 e = erf_ps(_mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752440f)));
  return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v),
                       _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

// Mask with the low `n` lanes set (n in [0, 16]) for row tails.
inline __mmask16 tail_mask(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1u);
}

// Sum over a row of f(16 floats at c, mask), four accumulators over consecutive vectors (a single
// one made each pass a chain of dependent adds, ~4 cycles per 16 values), combined in a fixed
// order: every kernel that uses it sums identically.
template <class F>
inline float row_sum(int64_t cols, F &&f) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t c = 0;
  for (; c + 64 <= cols; c += 64) {
    a0 = _mm512_add_ps(a0, f(c, static_cast<__mmask16>(0xffff)));
    a1 = _mm512_add_ps(a1, f(c + 16, static_cast<__mmask16>(0xffff)));
    a2 = _mm512_add_ps(a2, f(c + 32, static_cast<__mmask16>(0xffff)));
    a3 = _mm512_add_ps(a3, f(c + 48, static_cast<__mmask16>(0xffff)));
  }
  for (; c < cols; c += 16) a0 = _mm512_add_ps(a0, f(c, tail_mask(cols - c)));  // f zeroes tails
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

// LayerNorm statistics of one row: broadcast mean and 1/sqrt(var + eps). Two passes (mean, then
// centred squares) rather than E[x^2]-E[x]^2, which loses digits when the residual stream has a
// large mean. layernorm_f32 and layernorm_quant both use this, so the fused kernel reproduces the
// unfused one bit for bit.
inline void layernorm_row_stats(const float *xr, int64_t cols, float eps, __m512 *vmean,
                                __m512 *vinv) {
  const float sum =
      row_sum(cols, [&](int64_t c, __mmask16 m) { return _mm512_maskz_loadu_ps(m, xr + c); });
  const __m512 mean = _mm512_set1_ps(sum / static_cast<float>(cols));
  const float sq = row_sum(cols, [&](int64_t c, __mmask16 m) {
    const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, xr + c), mean);
    return _mm512_mul_ps(d, d);
  });
  *vmean = mean;
  *vinv = _mm512_set1_ps(1.0f / std::sqrt(sq / static_cast<float>(cols) + eps));
}

// The largest value of a row: exact in any order, so two accumulators.
inline float row_max(const float *xr, int64_t cols) {
  __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
  int64_t c = 0;
  for (; c + 32 <= cols; c += 32) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(xr + c));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(xr + c + 16));
  }
  for (; c < cols; c += 16)
    m0 = _mm512_mask_max_ps(m0, tail_mask(cols - c), m0,
                            _mm512_maskz_loadu_ps(tail_mask(cols - c), xr + c));
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

// Softmax's exponentials of one row, e_c = exp(x_c * scale - shift) with shift = scale * max x
// (attention's scale is >= 0, so that is the max of the scaled row), written to out (may be xr)
// when out is set; returns their sum. Shared by softmax_f32 and softmax_quant so that both
// compute identical exponentials and sums.
inline float softmax_row_exps(const float *xr, int64_t cols, __m512 vscale, __m512 shift,
                              float *out) {
  return row_sum(cols, [&](int64_t c, __mmask16 m) {
    const __m512 e = exp_ps(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(m, xr + c), vscale, shift));
    if (out) _mm512_mask_storeu_ps(out + c, m, e);
    return _mm512_maskz_mov_ps(m, e);
  });
}

}  // namespace vqm::kernels::avx512
