// AVX-512 versions of the quantizing kernels in kernels.h. Compiled with AVX-512 flags (per-file,
// see CMakeLists.txt) and only called after the dispatcher has checked the CPU for AVX512F, so only
// AVX512F instructions are used on purpose: byte stores go through masked vpmovdb / vpmovsdb
// rather than AVX512BW byte masks.
//
// Each fused kernel repeats the float math of its f32 twin in elementwise_avx512.cpp operation for
// operation (same reductions, same FMAs, same scalar steps) and then quantizes, so that on this
// path layernorm_quant(x) == quantize(layernorm_f32(x)) bit for bit: the integer engine then sees
// exactly the levels the simulated (fake-quant) forward computes with the same kernels.
// tests/kernels/quant_kernels_test.cpp holds the two files to that; change them together.
#include <cmath>
#include <cstdint>

#include "kernels/cpu/elementwise_impl.h"
#include "kernels/cpu/vec_math_avx512.h"
#include "kernels/kernels.h"

namespace vqm::kernels::avx512 {

namespace {

// A grid broadcast into registers once per call.
struct VecGrid {
  __m512 inv_delta, zero_point, qmax;
  __m512i zero_point_i32;
  bool store_signed;

  explicit VecGrid(const QuantGrid &g)
      : inv_delta(_mm512_set1_ps(quant_inverse(g.delta))),
        zero_point(_mm512_set1_ps(static_cast<float>(g.zero_point))),
        qmax(_mm512_set1_ps(static_cast<float>(g.qmax))),
        zero_point_i32(_mm512_set1_epi32(g.zero_point)),
        store_signed(g.store_signed) {}
};

// Quantizes the lanes of v selected by m and stores them as bytes at dst (lane i to dst[i]).
// The float steps are fake_quant_f32's: the rule of kernels.h (quant_inverse).
inline void quantize_store(__m512 v, const VecGrid &g, __mmask16 m, uint8_t *dst) {
  __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(v, g.inv_delta),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // Clamp in float, before converting: out-of-range floats would convert to INT_MIN. vmaxps
  // returns its second operand when one is NaN, so a NaN becomes level 0 as in the reference.
  q = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(q, g.zero_point), _mm512_setzero_ps()), g.qmax);
  const __m512i level = _mm512_cvttps_epi32(q);  // exact: q is an integer in [0, qmax]
  if (g.store_signed) {
    // Saturating narrow: s8 grids are symmetric so this never clips in valid use, and a grid that
    // breaks the precondition clips instead of wrapping around.
    _mm512_mask_cvtsepi32_storeu_epi8(dst, m, _mm512_sub_epi32(level, g.zero_point_i32));
  } else {
    _mm512_mask_cvtepi32_storeu_epi8(dst, m, level);
  }
}

// Rows up to this length keep their exponentials in a stack buffer between softmax passes (16 KiB
// per thread; attention rows are T = 197..577 long). Longer rows compute them again instead, which
// gives identical values since exp_ps is deterministic.
constexpr int64_t kSoftmaxBufferCols = 4096;

}  // namespace

void quantize(const float *x, void *y, int64_t n, const QuantGrid &g) {
  const VecGrid vg(g);
  uint8_t *out = static_cast<uint8_t *>(y);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    quantize_store(_mm512_maskz_loadu_ps(m, x + i), vg, m, out + i);
  }
}

void layernorm_quant(const float *x, void *y, int64_t rows, int64_t cols, const float *gamma,
                     const float *beta, float eps, const QuantGrid &g) {
  const VecGrid vg(g);
  uint8_t *out = static_cast<uint8_t *>(y);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * cols;
    uint8_t *yr = out + r * cols;
    __m512 vmean, vinv;
    layernorm_row_stats(xr, cols, eps, &vmean, &vinv);
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 m = tail_mask(cols - c);
      const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + c), vmean), vinv);
      const __m512 v = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(m, gamma + c),
                                       _mm512_maskz_loadu_ps(m, beta + c));
      quantize_store(v, vg, m, yr + c);
    }
  }
}

void gelu_quant(const float *x, void *y, int64_t n, const QuantGrid &g) {
  const VecGrid vg(g);
  uint8_t *out = static_cast<uint8_t *>(y);
  const __m512 half = _mm512_set1_ps(0.5f);
  const __m512 rsqrt2 = _mm512_set1_ps(0.70710678118654752440f);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    const __m512 e = erf_ps(_mm512_mul_ps(v, rsqrt2));
    const __m512 gelu =
        _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    quantize_store(gelu, vg, m, out + i);
  }
}

void quick_gelu_quant(const float *x, void *y, int64_t n, const QuantGrid &g) {
  const VecGrid vg(g);
  uint8_t *out = static_cast<uint8_t *>(y);
  // -1.702 as a sum of two floats, so that t = -1.702 x is formed as t_hi + t_lo to ~48 bits: the
  // rounding of a plain float product, |t| * 2^-24, would become a relative error of exp(t) and so
  // of the result (5e-6 at t = 88), where the split leaves exp_ps's own ~1 ulp.
  const __m512 c_hi = _mm512_set1_ps(-1.702f);
  const __m512 c_lo = _mm512_set1_ps(static_cast<float>(-1.702 - static_cast<double>(-1.702f)));
  // Below x = -52, t = -1.702 x nears exp_ps's clamp at 88.7 and the exact result is under 2e-37
  // in magnitude: those lanes give -0. Above x = 60 exp(t) < 2^-24 (as already from x = 10), so
  // 1 + exp(t) rounds to 1 and the result is x itself; the clamp only keeps t finite.
  const __m512 x_min = _mm512_set1_ps(-52.0f), x_max = _mm512_set1_ps(60.0f);
  const __m512 one = _mm512_set1_ps(1.0f), neg_zero = _mm512_set1_ps(-0.0f);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    // vmaxps returns its second operand for a NaN lane, so xc is never NaN; v keeps the NaN and
    // the division below passes it on to quantize_store, which makes it level 0.
    const __m512 xc = _mm512_min_ps(_mm512_max_ps(v, x_min), x_max);
    const __m512 t_hi = _mm512_mul_ps(c_hi, xc);
    const __m512 t_lo = _mm512_fmadd_ps(c_lo, xc, _mm512_fmsub_ps(c_hi, xc, t_hi));
    __m512 e = exp_ps(t_hi);
    e = _mm512_fmadd_ps(e, t_lo, e);  // exp(t_hi + t_lo) = exp(t_hi) (1 + t_lo), |t_lo| < 6e-6
    __m512 qg = _mm512_div_ps(v, _mm512_add_ps(one, e));
    qg = _mm512_mask_mov_ps(qg, _mm512_cmp_ps_mask(v, x_min, _CMP_LT_OQ), neg_zero);
    quantize_store(qg, vg, m, out + i);
  }
}

void softmax_quant(const float *x, void *y, int64_t rows, int64_t cols, float scale,
                   const QuantGrid &g) {
  const VecGrid vg(g);
  uint8_t *out = static_cast<uint8_t *>(y);
  const __m512 vscale = _mm512_set1_ps(scale);
  const bool buffered = cols <= kSoftmaxBufferCols;
#pragma omp parallel
  {
    // softmax_f32 keeps the exponentials in x between its passes; x is const here, so they go to
    // a per-thread buffer (no allocation: this runs inside a session's forward).
    alignas(64) float exps[kSoftmaxBufferCols];
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float *xr = x + r * cols;
      uint8_t *yr = out + r * cols;
      const __m512 shift = _mm512_set1_ps(row_max(xr, cols) * scale);
      const __m512 vinv = _mm512_set1_ps(
          1.0f / softmax_row_exps(xr, cols, vscale, shift, buffered ? exps : nullptr));
      for (int64_t c = 0; c < cols; c += 16) {
        const __mmask16 m = tail_mask(cols - c);
        const __m512 e =
            buffered ? _mm512_maskz_loadu_ps(m, exps + c)
                     : exp_ps(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(m, xr + c), vscale, shift));
        quantize_store(_mm512_mul_ps(e, vinv), vg, m, yr + c);
      }
    }
  }
}

}  // namespace vqm::kernels::avx512
