// Scalar references for the quantizing kernels in kernels.h: the test oracle, and the fallback on
// CPUs without AVX-512. Each computes its float value exactly as the matching f32 reference in
// elementwise_ref.cpp does (same expressions, double accumulation), so layernorm_quant_ref(x) ==
// quantize_ref(layernorm_f32_ref(x)) bit for bit; none allocates.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/kernels.h"
#include "kernels/ref/ref_util.h"

namespace vqm::kernels {

namespace {

// One value onto the grid, as the byte the kernels store. The float expression is
// fake_quant_f32_ref's term for term: the rule of kernels.h (quant_inverse) and nearbyint (round
// half to even, as vroundps in the vector kernels).
inline uint8_t quantize_one(float v, const QuantGrid &g) {
  const float q = std::nearbyint(v * quant_inverse(g.delta)) + static_cast<float>(g.zero_point);
  // max(0, q) rather than max(q, 0): a NaN then lands on 0 (as vmaxps does in the AVX-512
  // kernels) instead of reaching the float-to-int conversion, where it would be undefined.
  const float clamped = std::min(std::max(0.f, q), static_cast<float>(g.qmax));
  const int32_t level = static_cast<int32_t>(clamped);  // exact: an integer in [0, qmax]
  if (!g.store_signed) return static_cast<uint8_t>(level);
  // Saturate like vpmovsdb; only reachable when the grid breaks the s8 precondition.
  const int32_t centred = std::min(std::max(level - g.zero_point, -128), 127);
  return static_cast<uint8_t>(static_cast<int8_t>(centred));
}

}  // namespace

void quantize_ref(const float *x, void *y, int64_t n, const QuantGrid &g) {
  uint8_t *out = static_cast<uint8_t *>(y);
  for (int64_t i = 0; i < n; ++i) out[i] = quantize_one(x[i], g);
}

void layernorm_quant_ref(const float *x, void *y, int64_t rows, int64_t cols, const float *gamma,
                         const float *beta, float eps, const QuantGrid &g) {
  uint8_t *out = static_cast<uint8_t *>(y);
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * cols;
    uint8_t *yr = out + r * cols;
    double mean, inv;
    ref::layernorm_row_stats(xr, cols, eps, &mean, &inv);
    // Rounded to float before quantizing, as the simulated path quantizes layernorm_f32's output.
    for (int64_t c = 0; c < cols; ++c)
      yr[c] = quantize_one(static_cast<float>((xr[c] - mean) * inv * gamma[c] + beta[c]), g);
  }
}

void gelu_quant_ref(const float *x, void *y, int64_t n, const QuantGrid &g) {
  uint8_t *out = static_cast<uint8_t *>(y);
  for (int64_t i = 0; i < n; ++i) {
    const float v =
        static_cast<float>(0.5 * x[i] * (1.0 + std::erf(x[i] * 0.70710678118654752440)));
    out[i] = quantize_one(v, g);
  }
}

void quick_gelu_quant_ref(const float *x, void *y, int64_t n, const QuantGrid &g) {
  uint8_t *out = static_cast<uint8_t *>(y);
  for (int64_t i = 0; i < n; ++i) {
    // For x below about -417 exp overflows to inf and x / inf is -0, the limit; -inf itself would
    // give inf / inf = NaN, so it takes the limit explicitly.
    const double xi = x[i];
    const double v = xi == -INFINITY ? -0.0 : xi / (1.0 + std::exp(-1.702 * xi));
    out[i] = quantize_one(static_cast<float>(v), g);
  }
}

void softmax_quant_ref(const float *x, void *y, int64_t rows, int64_t cols, float scale,
                       const QuantGrid &g) {
  if (cols <= 0) return;
  uint8_t *out = static_cast<uint8_t *>(y);
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * cols;
    uint8_t *yr = out + r * cols;
    float mx = xr[0] * scale;
    for (int64_t c = 1; c < cols; ++c) mx = std::max(mx, xr[c] * scale);
    double sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += std::exp(xr[c] * scale - mx);
    const float inv = static_cast<float>(1.0 / sum);
    // x is const and the reference must not allocate, so the exponentials are computed again:
    // std::exp is deterministic, so each equals the one summed (and softmax_f32_ref's).
    for (int64_t c = 0; c < cols; ++c) yr[c] = quantize_one(std::exp(xr[c] * scale - mx) * inv, g);
  }
}

}  // namespace vqm::kernels
