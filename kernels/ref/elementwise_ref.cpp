// Scalar reference kernels: the oracle that fast kernels are tested against. Written for clarity
// and accuracy (double accumulation), not speed.
#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"
#include "kernels/ref/ref_util.h"

namespace vqm::kernels {

void layernorm_f32_ref(const float *x, float *y, int64_t rows, int64_t cols, const float *gamma,
                       const float *beta, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * cols;
    float *yr = y + r * cols;
    double mean, inv;
    ref::layernorm_row_stats(xr, cols, eps, &mean, &inv);
    for (int64_t c = 0; c < cols; ++c)
      yr[c] = static_cast<float>((xr[c] - mean) * inv * gamma[c] + beta[c]);
  }
}

void softmax_f32_ref(float *x, int64_t rows, int64_t cols, float scale) {
  for (int64_t r = 0; r < rows; ++r) {
    float *xr = x + r * cols;
    float mx = xr[0] * scale;
    for (int64_t c = 1; c < cols; ++c) mx = std::max(mx, xr[c] * scale);
    double sum = 0;
    for (int64_t c = 0; c < cols; ++c) {
      xr[c] = std::exp(xr[c] * scale - mx);
      sum += xr[c];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t c = 0; c < cols; ++c) xr[c] *= inv;
  }
}

void gelu_erf_f32_ref(float *x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    x[i] = static_cast<float>(0.5 * x[i] * (1.0 + std::erf(x[i] * 0.70710678118654752440)));
}

}  // namespace vqm::kernels

namespace vqm::kernels {

void fake_quant_f32_ref(float *x, int64_t n, float delta, int zero_point, int qmax) {
  const float inv = quant_inverse(delta);
  for (int64_t i = 0; i < n; ++i) {
    const float q = std::nearbyint(x[i] * inv) + static_cast<float>(zero_point);
    x[i] = (std::min(std::max(q, 0.f), static_cast<float>(qmax)) - static_cast<float>(zero_point)) *
           delta;
  }
}

}  // namespace vqm::kernels
