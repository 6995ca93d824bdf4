// AVX-512 versions of the quantizing kernels in kernels.h. Compiled with AVX-512 flags (per-file,
// see CMakeLists.txt) and only called after the dispatcher has checked the CPU for AVX512F, so only
// AVX512F instructions are used on purpose: bytes are narrowed with vpmovdb / vpmovsdb (to a
// register and stored whole, or masked straight to memory for a row's tail) rather than with
// AVX512BW byte masks.
//
// Each fused kernel repeats the float math of its f32 twin in elementwise_avx512.cpp operation for
// operation (same reductions, same FMAs, same scalar steps) and then quantizes, so that on this
// path layernorm_quant(x) == quantize(layernorm_f32(x)) bit for bit: the integer engine then sees
// exactly the levels the simulated (fake-quant) forward computes with the same kernels.
// tests/kernels/quant_kernels_test.cpp holds the two files to that; change them together.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu/elementwise_impl.h"
#include "kernels/cpu/vec_math_avx512.h"
#include "kernels/kernels.h"

namespace vqm::kernels::avx512 {

namespace {

// A grid broadcast into registers: made by each thread inside its parallel_share body, so that
// the loop keeps it in registers (see parallel_share).
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
  __m512i level = _mm512_cvttps_epi32(q);  // exact: q is an integer in [0, qmax]
  // Saturating narrow for int8: s8 grids are symmetric so this never clips in valid use, and a
  // grid that breaks the precondition clips instead of wrapping around.
  if (g.store_signed) level = _mm512_sub_epi32(level, g.zero_point_i32);
  if (m == 0xffff) {
    // Narrowed in a register and stored whole: vpmovdb straight to memory, masked, is several
    // times slower on AMD's Zen 4 and 5 than the two instructions.
    const __m128i b = g.store_signed ? _mm512_cvtsepi32_epi8(level) : _mm512_cvtepi32_epi8(level);
    _mm_storeu_si128(reinterpret_cast<__m128i *>(dst), b);
  } else if (g.store_signed) {
    _mm512_mask_cvtsepi32_storeu_epi8(dst, m, level);
  } else {
    _mm512_mask_cvtepi32_storeu_epi8(dst, m, level);
  }
}

// Rows up to this length keep their exponentials in a stack buffer between softmax passes (16 KiB
// per thread; attention rows are T = 197..577 long). Longer rows compute them again instead, which
// gives identical values since exp_ps is deterministic.
constexpr int64_t kSoftmaxBufferCols = 4096;

// n values from x: bytes f(v) to out (the element-wise kernels' common loop). Four vectors a
// step: f is one long dependent chain (erf: two polynomials and a division), and with the four
// side by side the core overlaps them (gelu_quant 4.6-5.0 -> 3.6-4.0 ns per 16 values, one core
// pinned, AMD EPYC family 26) where one at a time filled its scheduler with waiting operations.
template <class F>
inline void quantize_span(const float *x, uint8_t *out, int64_t n, const QuantGrid &grid,
                          const F &f) {
  const VecGrid g(grid);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512 v0 = f(_mm512_loadu_ps(x + i)), v1 = f(_mm512_loadu_ps(x + i + 16));
    const __m512 v2 = f(_mm512_loadu_ps(x + i + 32)), v3 = f(_mm512_loadu_ps(x + i + 48));
    quantize_store(v0, g, 0xffff, out + i);
    quantize_store(v1, g, 0xffff, out + i + 16);
    quantize_store(v2, g, 0xffff, out + i + 32);
    quantize_store(v3, g, 0xffff, out + i + 48);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    quantize_store(f(_mm512_maskz_loadu_ps(m, x + i)), g, m, out + i);
  }
}

// Splits n values into 16-value blocks over the team; each thread runs quantize_span on its own.
template <class F>
inline void quantize_parallel(const float *x, void *y, int64_t n, const QuantGrid &grid,
                              const F &f) {
  uint8_t *const out = static_cast<uint8_t *>(y);
  parallel_share((n + 15) / 16, [&](int64_t b, int64_t e) {
    const int64_t i = b * 16;
    quantize_span(x + i, out + i, std::min(n, e * 16) - i, grid, f);
  });
}

}  // namespace

void quantize(const float *x, void *y, int64_t n, const QuantGrid &g) {
  quantize_parallel(x, y, n, g, [](__m512 v) { return v; });
}

void layernorm_quant(const float *x, void *y, int64_t rows, int64_t cols, const float *gamma,
                     const float *beta, float eps, const QuantGrid &grid) {
  uint8_t *const out = static_cast<uint8_t *>(y);
  parallel_share(rows, [&](int64_t r0, int64_t r1) {
    const VecGrid g(grid);
    const float *const gm = gamma, *const bt = beta;
    const int64_t n = cols;
    const float e = eps;
    // Each row's statistics are taken one row ahead, before the previous row's last pass, which
    // does not depend on them: their two reductions and the square root then run under that
    // pass instead of the core waiting on their latency (as in softmax_quant).
    __m512 next_mean = _mm512_setzero_ps(), next_inv = next_mean;
    if (r0 < r1) layernorm_row_stats(x + r0 * n, n, e, &next_mean, &next_inv);
    for (int64_t r = r0; r < r1; ++r) {
      const float *xr = x + r * n;
      uint8_t *yr = out + r * n;
      const __m512 vmean = next_mean, vinv = next_inv;
      if (r + 1 < r1) layernorm_row_stats(xr + n, n, e, &next_mean, &next_inv);
      for (int64_t c = 0; c < n; c += 16) {
        const __mmask16 m = tail_mask(n - c);
        const __m512 d =
            _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + c), vmean), vinv);
        const __m512 v =
            _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(m, gm + c), _mm512_maskz_loadu_ps(m, bt + c));
        quantize_store(v, g, m, yr + c);
      }
    }
  });
}

void gelu_quant(const float *x, void *y, int64_t n, const QuantGrid &g) {
  quantize_parallel(x, y, n, g, [](__m512 v) { return gelu_erf_ps(v); });
}

void quick_gelu_quant(const float *x, void *y, int64_t n, const QuantGrid &g) {
  quantize_parallel(x, y, n, g, [](__m512 v) {
    // -1.702 as a sum of two floats, so that t = -1.702 x is formed as t_hi + t_lo to ~48 bits:
    // the rounding of a plain float product, |t| * 2^-24, would become a relative error of
    // exp(t) and so of the result (5e-6 at t = 88), where the split leaves exp_ps's own ~1 ulp.
    const __m512 c_hi = _mm512_set1_ps(-1.702f);
    const __m512 c_lo = _mm512_set1_ps(static_cast<float>(-1.702 - static_cast<double>(-1.702f)));
    // Below x = -52, t = -1.702 x nears exp_ps's clamp at 88.7 and the exact result is under
    // 2e-37 in magnitude: those lanes give -0. Above x = 60 exp(t) < 2^-24 (as already from
    // x = 10), so 1 + exp(t) rounds to 1 and the result is x itself; the clamp only keeps t finite.
    const __m512 x_min = _mm512_set1_ps(-52.0f), x_max = _mm512_set1_ps(60.0f);
    // vmaxps returns its second operand for a NaN lane, so xc is never NaN; v keeps the NaN and
    // the division below passes it on to quantize_store, which makes it level 0.
    const __m512 xc = _mm512_min_ps(_mm512_max_ps(v, x_min), x_max);
    const __m512 t_hi = _mm512_mul_ps(c_hi, xc);
    const __m512 t_lo = _mm512_fmadd_ps(c_lo, xc, _mm512_fmsub_ps(c_hi, xc, t_hi));
    __m512 e = exp_ps(t_hi);
    e = _mm512_fmadd_ps(e, t_lo, e);  // exp(t_hi + t_lo) = exp(t_hi) (1 + t_lo), |t_lo| < 6e-6
    const __m512 qg = _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    return _mm512_mask_mov_ps(qg, _mm512_cmp_ps_mask(v, x_min, _CMP_LT_OQ), _mm512_set1_ps(-0.0f));
  });
}

void softmax_quant(const float *x, void *y, int64_t rows, int64_t cols, float scale,
                   const QuantGrid &grid) {
  uint8_t *const out = static_cast<uint8_t *>(y);
  parallel_share(rows, [&](int64_t r0, int64_t r1) {
    const VecGrid g(grid);
    const __m512 vscale = _mm512_set1_ps(scale);
    const int64_t n = cols;
    const bool buffered = n <= kSoftmaxBufferCols;
    // softmax_f32 keeps the exponentials in x between its passes; x is const here, so they go to
    // a per-thread buffer (no allocation: this runs inside a session's forward).
    alignas(64) float exps[kSoftmaxBufferCols];
    // The next row's max is taken between this row's exponentials and its last pass: it does
    // not depend on them, so it runs while the sum's reduction and reciprocal are in flight
    // instead of the core waiting on their latency (attention rows are only 13 vectors long).
    float max = r0 < r1 ? row_max(x + r0 * n, n) : 0.f;
    for (int64_t r = r0; r < r1; ++r) {
      const float *xr = x + r * n;
      uint8_t *yr = out + r * n;
      const __m512 shift = _mm512_set1_ps(max * scale);
      const float sum = softmax_row_exps(xr, n, vscale, shift, buffered ? exps : nullptr);
      if (r + 1 < r1) max = row_max(xr + n, n);
      const __m512 vinv = _mm512_set1_ps(1.0f / sum);
      for (int64_t c = 0; c < n; c += 16) {
        const __mmask16 m = tail_mask(n - c);
        const __m512 e =
            buffered ? _mm512_maskz_loadu_ps(m, exps + c)
                     : exp_ps(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(m, xr + c), vscale, shift));
        quantize_store(_mm512_mul_ps(e, vinv), g, m, yr + c);
      }
    }
  });
}

}  // namespace vqm::kernels::avx512
