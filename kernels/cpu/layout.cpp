// Layout permutations. Memory-bound copies of contiguous rows; OpenMP over the outer dims.
#include <cstring>

#include "kernels/kernels.h"

namespace vqm::kernels {

void split_heads_f32(const float *src, float *dst, int64_t b, int64_t t, int64_t s, int64_t h,
                     int64_t d) {
  const size_t row = static_cast<size_t>(d) * sizeof(float);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ti = 0; ti < t; ++ti)
      for (int64_t si = 0; si < s; ++si)
        for (int64_t hi = 0; hi < h; ++hi)
          std::memcpy(dst + (((si * b + bi) * h + hi) * t + ti) * d,
                      src + (((bi * t + ti) * s + si) * h + hi) * d, row);
}

void merge_heads_f32(const float *src, float *dst, int64_t b, int64_t h, int64_t t, int64_t d) {
  const size_t row = static_cast<size_t>(d) * sizeof(float);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ti = 0; ti < t; ++ti)
      for (int64_t hi = 0; hi < h; ++hi)
        std::memcpy(dst + ((bi * t + ti) * h + hi) * d, src + ((bi * h + hi) * t + ti) * d, row);
}

void patchify_f32(const float *src, float *dst, int64_t n, int64_t c, int64_t height, int64_t width,
                  int64_t p) {
  const int64_t gh = height / p, gw = width / p;
  const size_t row = static_cast<size_t>(p) * sizeof(float);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t ni = 0; ni < n; ++ni)
    for (int64_t py = 0; py < gh; ++py)
      for (int64_t px = 0; px < gw; ++px) {
        float *out = dst + ((ni * gh + py) * gw + px) * c * p * p;
        for (int64_t ci = 0; ci < c; ++ci)
          for (int64_t y = 0; y < p; ++y)
            std::memcpy(out + (ci * p + y) * p,
                        src + ((ni * c + ci) * height + py * p + y) * width + px * p, row);
      }
}

}  // namespace vqm::kernels
