// The two-range grid of kernels.h (TwinCodes) and the chosen-level grid (CodeMap). Plain C++ that
// the compiler vectorizes, no intrinsics: the integer rule is the whole definition (no float step
// besides the uniform rule's multiply), so one portable loop serves the engine and the quantizer's
// candidate scans.
#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"

namespace vqm::kernels {

namespace {

// Codes from t.fine up to the nearest multiple of 2^shift (half to even), capped at t.qmax.
// Branch-free (adding half - 1 plus the quotient's low bit rounds a tie up exactly when the
// quotient is odd), so that coarsen_codes vectorizes: the quantizer's softmax-grid search calls
// it once per candidate over every attention probability.
inline int32_t twin_code(int32_t c, const TwinCodes &t) {
  const int32_t s = t.shift;
  const int32_t up = ((c + (1 << (s - 1)) - 1 + ((c >> s) & 1)) >> s) << s;
  return c < t.fine ? c : std::min(up, t.qmax);
}

}  // namespace

void coarsen_codes(uint8_t *codes, int64_t n, const TwinCodes &t) {
  const TwinCodes local = t;  // a copy: stores through codes could alias t, which blocks SIMD
  for (int64_t i = 0; i < n; ++i) codes[i] = static_cast<uint8_t>(twin_code(codes[i], local));
}

void fake_quant_twin_f32(float *x, int64_t n, float delta, const TwinCodes &t) {
  const float inv = quant_inverse(delta);
  for (int64_t i = 0; i < n; ++i) {
    // The uniform rule of fake_quant_f32 with zero point 0 and qmax 255 (max(0, q) so that a NaN
    // lands on 0, as there).
    const float q = std::min(std::max(0.f, std::nearbyint(x[i] * inv)), 255.f);
    x[i] = static_cast<float>(twin_code(static_cast<int32_t>(q), t)) * delta;
  }
}

CodeMap nearest_code_map(const uint8_t *levels, int count) {
  CodeMap m{};
  int j = 0;  // the chosen level at or below code c, or the first one
  for (int c = 0; c < 256; ++c) {
    while (j + 1 < count && levels[j + 1] <= c) ++j;
    const int below = levels[j];
    // Above `below`: the next level wins only when strictly nearer (a tie goes to the lower).
    const bool up = c > below && j + 1 < count && levels[j + 1] - c < c - below;
    m.to[c] = static_cast<uint8_t>(up ? levels[j + 1] : below);
  }
  return m;
}

void fake_quant_mapped_f32(float *x, int64_t n, float delta, int zero_point, const CodeMap &m) {
  const float inv = quant_inverse(delta);
  const float z = static_cast<float>(zero_point);
  for (int64_t i = 0; i < n; ++i) {
    // The uniform rule of fake_quant_f32 with qmax 255 (max(0, q) so that a NaN lands on 0).
    const float q = std::min(std::max(0.f, std::nearbyint(x[i] * inv) + z), 255.f);
    x[i] = static_cast<float>(m.to[static_cast<int>(q)] - zero_point) * delta;
  }
}

}  // namespace vqm::kernels
