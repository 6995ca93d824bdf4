// AVX-512 versions of the row kernels in kernels.h. Compiled with -mavx512f (per-file flags) and
// only called after the dispatcher has checked the CPU. Rows are spread over OpenMP threads.
#include <cmath>

#include "kernels/cpu/elementwise_impl.h"
#include "kernels/cpu/vec_math_avx512.h"
#include "kernels/kernels.h"

namespace vqm::kernels::avx512 {

void layernorm_f32(const float *x, float *y, int64_t rows, int64_t cols, const float *gamma,
                   const float *beta, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * cols;
    float *yr = y + r * cols;
    __m512 vmean, vinv;
    layernorm_row_stats(xr, cols, eps, &vmean, &vinv);
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 m = tail_mask(cols - c);
      const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + c), vmean), vinv);
      const __m512 out = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(m, gamma + c),
                                         _mm512_maskz_loadu_ps(m, beta + c));
      _mm512_mask_storeu_ps(yr + c, m, out);
    }
  }
}

void softmax_f32(float *x, int64_t rows, int64_t cols, float scale) {
  const __m512 vscale = _mm512_set1_ps(scale);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float *xr = x + r * cols;
    const __m512 shift = _mm512_set1_ps(row_max(xr, cols) * scale);
    const __m512 vinv = _mm512_set1_ps(1.0f / softmax_row_exps(xr, cols, vscale, shift, xr));
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 m = tail_mask(cols - c);
      _mm512_mask_storeu_ps(xr + c, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + c), vinv));
    }
  }
}

void gelu_erf_f32(float *x, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(x + i, m, gelu_erf_ps(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace vqm::kernels::avx512

namespace vqm::kernels::avx512 {

void fake_quant_f32(float *x, int64_t n, float delta, int zero_point, int qmax) {
  // The rule of kernels.h (quant_inverse), as the scalar reference and the quantizer apply it.
  const __m512 vd = _mm512_set1_ps(delta), vinv = _mm512_set1_ps(quant_inverse(delta)),
               vz = _mm512_set1_ps(static_cast<float>(zero_point));
  const __m512 lo = _mm512_setzero_ps(), hi = _mm512_set1_ps(static_cast<float>(qmax));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vinv),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(q, vz), lo), hi);
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_sub_ps(q, vz), vd));
  }
}

}  // namespace vqm::kernels::avx512
