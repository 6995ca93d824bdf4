// Scalar references for the byte permutations in kernels.h: the test oracle, and the fallback on
// CPUs without AVX512BW. The add wraps modulo 256 (the uint8 conversion).
#include <algorithm>
#include <cstdint>

#include "kernels/kernels.h"

namespace vqm::kernels {

namespace {
inline uint8_t clamp_byte(int8_t v, const ByteClamp &c) {
  return static_cast<uint8_t>(std::min(std::max(v, c.lo), c.hi) + c.add);
}
}  // namespace

void map_codes_ref(uint8_t *codes, int64_t n, const CodeMap &m) {
  for (int64_t i = 0; i < n; ++i) codes[i] = m.to[codes[i]];
}

void merge_heads_s8_ref(const int8_t *src, uint8_t *dst, int64_t b, int64_t h, int64_t t, int64_t d,
                        const ByteClamp &c) {
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ti = 0; ti < t; ++ti)
      for (int64_t hi = 0; hi < h; ++hi) {
        const int8_t *in = src + ((bi * h + hi) * t + ti) * d;
        uint8_t *out = dst + ((bi * t + ti) * h + hi) * d;
        for (int64_t di = 0; di < d; ++di) out[di] = clamp_byte(in[di], c);
      }
}

void split_heads_s8_ref(const int8_t *src, uint8_t *const *dst, const ByteClamp *clamps, int64_t b,
                        int64_t t, int64_t s, int64_t h, int64_t d, const int64_t *dst_t) {
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ti = 0; ti < t; ++ti)
      for (int64_t si = 0; si < s; ++si) {
        const int64_t bt = dst_t ? dst_t[si] : t;
        for (int64_t hi = 0; hi < h; ++hi) {
          const int8_t *in = src + (((bi * t + ti) * s + si) * h + hi) * d;
          uint8_t *out = dst[si] + ((bi * h + hi) * bt + ti) * d;
          for (int64_t di = 0; di < d; ++di) out[di] = clamp_byte(in[di], clamps[si]);
        }
      }
}

}  // namespace vqm::kernels
