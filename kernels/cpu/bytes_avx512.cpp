// AVX-512 versions of the byte permutations in kernels.h. Unlike the float kernels (AVX512F only,
// see quant_avx512.cpp) these need AVX512BW for byte masks, min and max: the dispatcher checks for
// it separately (dispatch.cpp).
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/elementwise_impl.h"
#include "kernels/kernels.h"

namespace vqm::kernels::avx512 {

namespace {

// A clamp broadcast into registers once per call.
struct VecClamp {
  __m512i lo, hi, add;
  explicit VecClamp(const ByteClamp &c)
      : lo(_mm512_set1_epi8(c.lo)),
        hi(_mm512_set1_epi8(c.hi)),
        add(_mm512_set1_epi8(static_cast<char>(c.add))) {}
};

// Copies one contiguous run of n bytes (a head row), clamped and shifted, 64 at a time. Whole
// vectors go through plain loads and stores: masked byte stores cost more on AMD's Zen 4 and 5.
inline void clamp_run(const int8_t *src, uint8_t *dst, int64_t n, const VecClamp &c) {
  auto clamp = [&](__m512i v) {
    return _mm512_add_epi8(_mm512_min_epi8(_mm512_max_epi8(v, c.lo), c.hi), c.add);
  };
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) _mm512_storeu_si512(dst + i, clamp(_mm512_loadu_si512(src + i)));
  if (i < n) {
    const __mmask64 m = (__mmask64{1} << (n - i)) - 1;
    _mm512_mask_storeu_epi8(dst + i, m, clamp(_mm512_maskz_loadu_epi8(m, src + i)));
  }
}

}  // namespace

// The 256-byte table as four 64-byte registers; each byte's low 7 bits pick among 128 entries of
// a pair (vpermi2b), its top bit picks the pair.
struct VecTable {
  __m512i t0, t1, t2, t3;
};
__attribute__((target("avx512vbmi"))) inline __m512i lookup(__m512i c, const VecTable &t) {
  const __m512i lo = _mm512_permutex2var_epi8(t.t0, c, t.t1);     // entries 0..127
  const __m512i hi = _mm512_permutex2var_epi8(t.t2, c, t.t3);     // entries 128..255
  return _mm512_mask_blend_epi8(_mm512_movepi8_mask(c), lo, hi);  // top bit: codes >= 128
}

// Whole vectors, then the masked tail, as clamp_run.
__attribute__((target("avx512vbmi"))) void map_codes(uint8_t *codes, int64_t n, const CodeMap &m) {
  const VecTable t{_mm512_loadu_si512(m.to), _mm512_loadu_si512(m.to + 64),
                   _mm512_loadu_si512(m.to + 128), _mm512_loadu_si512(m.to + 192)};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    _mm512_storeu_si512(codes + i, lookup(_mm512_loadu_si512(codes + i), t));
  if (i < n) {
    const __mmask64 k = (__mmask64{1} << (n - i)) - 1;
    _mm512_mask_storeu_epi8(codes + i, k, lookup(_mm512_maskz_loadu_epi8(k, codes + i), t));
  }
}

// Both split the rows (image, token) between the threads (parallel_share: locals in the body).
void merge_heads_s8(const int8_t *src, uint8_t *dst, int64_t b, int64_t h, int64_t t, int64_t d,
                    const ByteClamp &c) {
  parallel_share(b * t, [&, src, dst, h, t, d](int64_t r0, int64_t r1) {
    const VecClamp vc(c);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t bi = r / t, ti = r % t;
      for (int64_t hi = 0; hi < h; ++hi)
        clamp_run(src + ((bi * h + hi) * t + ti) * d, dst + (r * h + hi) * d, d, vc);
    }
  });
}

void split_heads_s8(const int8_t *src, uint8_t *const *dst, const ByteClamp *clamps, int64_t b,
                    int64_t t, int64_t s, int64_t h, int64_t d, const int64_t *dst_t) {
  parallel_share(b * t, [&, src, t, s, h, d](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t bi = r / t, ti = r % t;
      for (int64_t si = 0; si < s; ++si) {
        const VecClamp vc(clamps[si]);  // three broadcasts, against h * d bytes
        uint8_t *const out = dst[si];
        const int64_t bt = dst_t ? dst_t[si] : t;
        for (int64_t hi = 0; hi < h; ++hi)
          clamp_run(src + ((r * s + si) * h + hi) * d, out + ((bi * h + hi) * bt + ti) * d, d, vc);
      }
    }
  });
}

}  // namespace vqm::kernels::avx512
