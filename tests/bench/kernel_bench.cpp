// kernel-bench: the integer engine's element-wise kernels alone, on one thread with hot caches,
// at the shapes one thread sees in a DeiT-S forward at batch 1 (99 token rows: fc1's 1536
// columns, 6 heads of 197 attention scores, 384-wide LayerNorm, the QKV head split and the
// attention merge). A benchmark tool, not a test: docs/performance.md quotes its figures, which
// are CPU-bound and so best read on one pinned core:
//   OMP_NUM_THREADS=1 taskset -c 0 build/bin/kernel-bench [--reps N]
// Prints, per kernel, the best time of N calls (default 200) and ns per 16 values.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/kernels.h"

namespace {

using namespace vqm::kernels;

template <class F>
double best_ns(int reps, F &&f) {
  double best = 1e300;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  return best;
}

void report(const char *name, double ns, int64_t values) {
  std::printf("%-18s %9.2f us  %6.2f ns per 16 values\n", name, ns / 1e3,
              ns / static_cast<double>(values) * 16);
}

}  // namespace

int main(int argc, char **argv) {
  int reps = 200;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc && std::atoi(argv[i + 1]) > 0) {
      reps = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: kernel-bench [--reps N]   (N > 0, default 200)\n");
      return 2;
    }
  }
  constexpr int64_t R = 99, F = 1536, D = 384, H = 6, T = 197, dh = 64;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.f, 2.f);
  auto randoms = [&](int64_t n, float scale) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float &x : v) x = normal(rng) * scale;
    return v;
  };
  const std::vector<float> fc1 = randoms(R * F, 1.f), scores = randoms(H * R * T, 3.f),
                           x = randoms(R * D, 1.f), gamma(D, 1.f), beta(D, 0.f);
  std::vector<uint8_t> out(static_cast<size_t>(H * R * T + R * F));
  const QuantGrid grid{0.05f, 10, 255, false};
  std::printf("isa %s, %d calls each, best of them\n", active_isa(), reps);

  report("quantize", best_ns(reps, [&] { quantize(fc1.data(), out.data(), R * F, grid); }), R * F);
  report("gelu_quant", best_ns(reps, [&] { gelu_quant(fc1.data(), out.data(), R * F, grid); }),
         R * F);
  report("softmax_quant",
         best_ns(reps, [&] { softmax_quant(scores.data(), out.data(), H * R, T, 0.125f, grid); }),
         H * R * T);
  report("layernorm_quant",
         best_ns(reps,
                 [&] {
                   layernorm_quant(x.data(), out.data(), R, D, gamma.data(), beta.data(), 1e-6f,
                                   grid);
                 }),
         R * D);

  std::vector<int8_t> qkv(static_cast<size_t>(R * 3 * D)), attn_out(static_cast<size_t>(R * D));
  for (size_t i = 0; i < qkv.size(); ++i) qkv[i] = static_cast<int8_t>(i * 37);
  std::vector<uint8_t> q(R * D), k(T * D), v(T * D), merged(R * D);
  uint8_t *const heads[3] = {q.data(), k.data(), v.data()};
  const int64_t dst_t[3] = {R, T, T};  // K and V hold a whole image's tokens
  const ByteClamp clamps[3] = {{-100, 100, 3}, {-128, 127, 0}, {-120, 120, 128}};
  report("split_heads_s8",
         best_ns(reps, [&] { split_heads_s8(qkv.data(), heads, clamps, 1, R, 3, H, dh, dst_t); }),
         R * 3 * D);
  report("merge_heads_s8",
         best_ns(reps,
                 [&] { merge_heads_s8(attn_out.data(), merged.data(), 1, H, R, dh, clamps[0]); }),
         R * D);
  CodeMap map;
  for (int c = 0; c < 256; ++c) map.to[c] = static_cast<uint8_t>(c / 16 * 16);
  report("map_codes", best_ns(reps, [&] { map_codes(out.data(), R * F, map); }), R * F);
  std::vector<float> y = fc1;
  report("gelu_erf_f32", best_ns(reps, [&] { gelu_erf_f32(y.data(), R * F); }), R * F);
  return 0;
}
