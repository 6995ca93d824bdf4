// Chosen-level activation grids (ours; kernels.h CodeMap): below 8 bits a uniform grid spends
// its few levels evenly over a range whose middle holds most of the data (LayerNorm and GELU
// outputs). The same 2^b levels placed by Lloyd-Max iterations (each level at the mean of the
// values that take it) cut the rounding error where the data is, and stay codes of a fine 8-bit
// grid, so the integer engine still multiplies u8 codes with one scale and zero point.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "quantizer/quant_math.h"

namespace vqm::quant {

// The chosen-level grid equal to the uniform grid u (bits <= 7, no twin shift): a fine step of
// u.delta / 2^(7 - bits), so that the fine grid spans twice u's range centred on it (Lloyd can
// move the outer levels beyond u's clipping points), and u's levels as its codes.
ActGrid codebook_from_uniform(const ActGrid &u);

// Count and sum of the values that take each code of g's fine grid (g's levels ignored).
struct CodeHistogram {
  std::array<double, 256> count{}, sum{};
};
CodeHistogram code_histogram(const float *x, int64_t n, const ActGrid &g);

// One Lloyd-Max iteration: every level of g moves to the code nearest the mean of the values that
// take it (a level nobody takes stays), kept strictly increasing. Returns the new levels.
std::vector<uint8_t> lloyd_step(const CodeHistogram &h, const ActGrid &g);

}  // namespace vqm::quant
