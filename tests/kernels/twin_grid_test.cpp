// The two-range ("twin uniform") grid of kernels.h: coarsen_codes against the rule computed
// independently in double, the level set it produces, monotonicity, and the simulated twin
// (fake_quant_twin_f32) against the integer path (quantize or softmax_quant on the fine grid,
// then coarsen_codes) bit for bit over awkward sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "kernels/kernels.h"

namespace vqm::kernels {
namespace {

// Every valid (bits, shift) of the grid: 1 <= shift <= bits - 1 and 2^(bits-1+shift) <= 255.
std::vector<std::pair<int, int>> twin_configs() {
  std::vector<std::pair<int, int>> out;
  for (int bits = 2; bits <= 8; ++bits)
    for (int shift = 1; shift <= bits - 1; ++shift)
      if ((1 << (bits - 1 + shift)) <= 255) out.emplace_back(bits, shift);
  return out;
}

TwinCodes twin(int bits, int shift) {
  return TwinCodes{1 << (bits - 1), shift, 1 << (bits - 1 + shift)};
}

std::vector<float> probabilities(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::exponential_distribution<float> d(30.f);  // mass near 0, a tail up to ~0.5
  std::vector<float> v(static_cast<size_t>(n));
  for (auto &x : v) x = std::min(d(rng), 1.f);
  return v;
}

TEST(TwinGrid, CodesFollowTheRuleComputedIndependently) {
  for (auto [bits, shift] : twin_configs()) {
    const TwinCodes t = twin(bits, shift);
    std::vector<uint8_t> codes(256);
    for (int c = 0; c < 256; ++c) codes[c] = static_cast<uint8_t>(c);
    coarsen_codes(codes.data(), 256, t);
    for (int c = 0; c < 256; ++c) {
      const double step = std::ldexp(1.0, shift);
      const int want =
          c < t.fine ? c : std::min(static_cast<int>(std::nearbyint(c / step) * step), t.qmax);
      ASSERT_EQ(codes[c], want) << "bits " << bits << " shift " << shift << " code " << c;
    }
    // The levels: the fine codes, then multiples of 2^shift up to qmax; at most 2^bits of them,
    // and non-decreasing in the input.
    std::set<int> levels(codes.begin(), codes.end());
    EXPECT_LE(static_cast<int>(levels.size()), 1 << bits);
    for (int l : levels) EXPECT_TRUE(l < t.fine || l % (1 << shift) == 0) << l;
    EXPECT_EQ(*levels.rbegin(), t.qmax);
    EXPECT_TRUE(std::is_sorted(codes.begin(), codes.end()));
    // coarsen_codes is vectorized: lengths that leave SIMD tails, codes in scrambled order.
    for (int64_t n : {1, 31, 33, 255, 1000}) {
      std::vector<uint8_t> mixed(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) mixed[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
      coarsen_codes(mixed.data(), n, t);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(mixed[i], codes[(i * 37 + 11) % 256]) << "n " << n << " i " << i;
    }
  }
}

TEST(TwinGrid, SimulatedEqualsIntegerPathBitForBit) {
  for (int64_t n : {1, 15, 16, 17, 197, 385}) {
    for (auto [bits, shift] : twin_configs()) {
      const TwinCodes t = twin(bits, shift);
      const float delta = 1.f / static_cast<float>(t.qmax) * 0.7f;  // clips the top: awkward
      std::vector<float> x = probabilities(n, static_cast<uint32_t>(n * 31 + bits));
      x[0] = NAN;  // lands on code 0 on both paths
      std::vector<uint8_t> codes(static_cast<size_t>(n));
      quantize(x.data(), codes.data(), n, QuantGrid{delta, 0, 255, false});
      coarsen_codes(codes.data(), n, t);
      std::vector<float> sim = x;
      fake_quant_twin_f32(sim.data(), n, delta, t);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(sim[i], static_cast<float>(codes[i]) * delta) << n << " " << i;
    }
  }
}

TEST(TwinGrid, SoftmaxQuantThenCoarsenEqualsSoftmaxThenSimulatedTwin) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 3.f);
  for (int64_t cols : {1, 16, 17, 50, 197}) {
    const int64_t rows = 3;
    std::vector<float> scores(static_cast<size_t>(rows * cols));
    for (auto &v : scores) v = nd(rng);
    const TwinCodes t = twin(4, 3);
    const float delta = 1.f / 64;
    std::vector<uint8_t> codes(scores.size());
    softmax_quant(scores.data(), codes.data(), rows, cols, 0.125f, QuantGrid{delta, 0, 255, false});
    coarsen_codes(codes.data(), rows * cols, t);
    std::vector<float> sim = scores;
    softmax_f32(sim.data(), rows, cols, 0.125f);
    fake_quant_twin_f32(sim.data(), rows * cols, delta, t);
    for (size_t i = 0; i < sim.size(); ++i)
      ASSERT_EQ(sim[i], static_cast<float>(codes[i]) * delta) << cols << " " << i;
  }
}

}  // namespace
}  // namespace vqm::kernels
