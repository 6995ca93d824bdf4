#include "quantizer/codebook.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/kernels.h"

namespace vqm::quant {

ActGrid codebook_from_uniform(const ActGrid &u) {
  check_grid(u);
  if (u.bits > 7 || u.twin_shift != 0 || !u.levels.empty())
    bad_argument("codebook: needs a uniform grid of at most 7 bits, got " + std::to_string(u.bits));
  const int k = 1 << (7 - u.bits);  // fine steps per uniform step
  const int offset = 64;            // half of u's span, in fine steps: 2^(b-1) * k
  ActGrid g;
  g.bits = u.bits;
  g.delta = u.delta / static_cast<float>(k);
  g.zero_point = u.zero_point * k + offset;
  for (int c = 0; c < (1 << u.bits); ++c) g.levels.push_back(static_cast<uint8_t>(c * k + offset));
  return g;
}

CodeHistogram code_histogram(const float *x, int64_t n, const ActGrid &g) {
  ActGrid fine = g;  // the fine grid alone: every byte code
  fine.bits = 8;
  fine.levels.clear();
  CodeHistogram h;
  constexpr int64_t kBlock = int64_t{1} << 16;
  std::vector<uint8_t> codes(static_cast<size_t>(std::min(n, kBlock)));
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int64_t m = std::min(kBlock, n - i0);
    quantize_act_codes(x + i0, codes.data(), m, fine);  // the one rounding rule
    for (int64_t i = 0; i < m; ++i) {
      h.count[codes[i]] += 1;
      h.sum[codes[i]] += x[i0 + i];
    }
  }
  return h;
}

std::vector<uint8_t> lloyd_step(const CodeHistogram &h, const ActGrid &g) {
  check_grid(g);
  const int count = static_cast<int>(g.levels.size());
  const kernels::CodeMap m = kernels::nearest_code_map(g.levels.data(), count);
  std::vector<double> n(static_cast<size_t>(count)), s(static_cast<size_t>(count));
  for (int c = 0; c < 256; ++c) {
    const auto j = std::lower_bound(g.levels.begin(), g.levels.end(), m.to[c]) - g.levels.begin();
    n[j] += h.count[c];
    s[j] += h.sum[c];
  }
  std::vector<int> next(static_cast<size_t>(count));
  for (int j = 0; j < count; ++j) {
    const double code =
        n[j] > 0 ? std::nearbyint(s[j] / n[j] / g.delta) + g.zero_point : g.levels[j];
    next[j] = static_cast<int>(std::clamp(code, 0.0, 255.0));
  }
  // Strictly increasing within [0, 255]: up from the bottom, then down from the top.
  for (int j = 1; j < count; ++j) next[j] = std::max(next[j], next[j - 1] + 1);
  for (int j = count - 1; j >= 0; --j) next[j] = std::min(next[j], 255 - (count - 1 - j));
  for (int j = count - 2; j >= 0; --j) next[j] = std::min(next[j], next[j + 1] - 1);
  return std::vector<uint8_t>(next.begin(), next.end());
}

}  // namespace vqm::quant
