// Shared by the scalar reference kernels.
#pragma once
#include <cmath>
#include <cstdint>

namespace vqm::kernels::ref {

// Mean and 1/sqrt(biased variance + eps) of one row, in double (two passes).
inline void layernorm_row_stats(const float *xr, int64_t cols, float eps, double *mean,
                                double *inv) {
  double sum = 0;
  for (int64_t c = 0; c < cols; ++c) sum += xr[c];
  *mean = sum / static_cast<double>(cols);
  double sq = 0;
  for (int64_t c = 0; c < cols; ++c) sq += (xr[c] - *mean) * (xr[c] - *mean);
  *inv = 1.0 / std::sqrt(sq / static_cast<double>(cols) + eps);
}

}  // namespace vqm::kernels::ref
