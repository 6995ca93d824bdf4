// The two-range grid of kernels.h (TwinCodes). Scalar on purpose: it runs only for models
// quantized below 8 bits, once over the attention probabilities, and the integer rule is the
// whole definition (no float step besides the uniform rule's division).
#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"

namespace vqm::kernels {

namespace {

// Codes from t.fine up to the nearest multiple of 2^shift (half to even), capped at t.qmax.
inline int32_t twin_code(int32_t c, const TwinCodes &t) {
  if (c < t.fine) return c;
  const int32_t half = 1 << (t.shift - 1), rest = c & ((1 << t.shift) - 1);
  int32_t k = c >> t.shift;
  if (rest > half || (rest == half && (k & 1))) ++k;
  return std::min(k << t.shift, t.qmax);
}

}  // namespace

void coarsen_codes(uint8_t *codes, int64_t n, const TwinCodes &t) {
  for (int64_t i = 0; i < n; ++i) codes[i] = static_cast<uint8_t>(twin_code(codes[i], t));
}

void fake_quant_twin_f32(float *x, int64_t n, float delta, const TwinCodes &t) {
  for (int64_t i = 0; i < n; ++i) {
    // The uniform rule of fake_quant_f32 with zero point 0 and qmax 255 (max(0, q) so that a NaN
    // lands on 0, as there).
    const float q = std::min(std::max(0.f, std::nearbyint(x[i] / delta)), 255.f);
    x[i] = static_cast<float>(twin_code(static_cast<int32_t>(q), t)) * delta;
  }
}

}  // namespace vqm::kernels
