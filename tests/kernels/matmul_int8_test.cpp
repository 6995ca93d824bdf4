// u8 x s8 oneDNN matmul wrappers against an exact integer reference (int32 sums, scaled in
// double), over awkward and DeiT shapes; a check that every DeiT-S/DeiT-T GEMM gets a brgemm
// kernel; and an informative u8s8 vs fp32 timing printout (no assertion on time).
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "kernels/onednn/matmul_int8.h"
#include "test_util.h"

namespace vqm::kernels::onednn {
namespace {

std::vector<uint8_t> rnd_u8(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(0, 255);
  std::vector<uint8_t> v(n);
  for (auto &x : v) x = static_cast<uint8_t>(u(rng));
  return v;
}

// Symmetric weights never use -128.
std::vector<int8_t> rnd_s8(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(-127, 127);
  std::vector<int8_t> v(n);
  for (auto &x : v) x = static_cast<int8_t>(u(rng));
  return v;
}

std::vector<float> rnd_f32(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto &x : v) x = u(rng);
  return v;
}

bool is_brgemm(const dnnl::matmul::primitive_desc &pd) {
  return std::string(pd.impl_info_str()).rfind("brg", 0) == 0;
}

// Executes once with a scratchpad of exactly the size the pd asks for (ASan sees overruns).
void execute(const dnnl::matmul::primitive_desc &pd, std::unordered_map<int, dnnl::memory> args) {
  std::vector<uint8_t> scratch(pd.scratchpad_desc().get_size());
  args[DNNL_ARG_SCRATCHPAD] = wrap(pd.scratchpad_desc(), scratch.data());
  dnnl::stream st(cpu_engine());
  dnnl::matmul(pd).execute(st, args);
  st.wait();
}

// Exact products of one zero point: acc[i,j] = sum_k (x[i,k] - zp) * w[j,k], with element (j,k)
// of w at j * w_row_stride + k * w_k_stride. int32 is exact here:
// |(x - zp) * w| * K <= 255 * 127 * 1536 < 2^31.
std::vector<int32_t> int_products(const std::vector<uint8_t> &x, const int8_t *w, int64_t m,
                                  int64_t k, int64_t n, int32_t zp, int64_t w_row_stride,
                                  int64_t w_k_stride) {
  std::vector<int32_t> acc(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      int32_t sum = 0;
      for (int64_t kk = 0; kk < k; ++kk)
        sum += (int32_t{x[i * k + kk]} - zp) * w[j * w_row_stride + kk * w_k_stride];
      acc[i * n + j] = sum;
    }
  return acc;
}

struct Shape {
  int64_t m, k, n;
};

std::string describe(const Shape &s, int32_t zp, bool per_channel, bool bias, Epilogue ep) {
  return std::to_string(s.m) + "x" + std::to_string(s.k) + "x" + std::to_string(s.n) +
         " zp=" + std::to_string(zp) + (per_channel ? " per-channel" : " per-tensor") +
         (bias ? " bias" : " no-bias") +
         (ep == Epilogue::accumulate ? " accumulate"
          : ep == Epilogue::gelu_erf ? " gelu"
                                     : "");
}

TEST(MatmulU8S8, LinearMatchesExactIntegerReference) {
  const Shape shapes[] = {{1, 1, 1},        {1, 17, 5},       {7, 33, 65},         {50, 192, 576},
                          {197, 384, 1152}, {197, 1536, 384}, {8 * 197, 384, 1536}};
  for (const Shape &s : shapes) {
    // The batch-8 shape costs 40 s of scalar reference under ASan, and the same brgemm kernels
    // already ran on the M = 197 shapes (test::reduced_workload).
    if (test::reduced_workload() && s.m > 197) continue;
    const auto x = rnd_u8(s.m * s.k, 1);
    const auto w = rnd_s8(s.n * s.k, 2);
    const auto bias = rnd_f32(s.n, 3, -2.f, 2.f);
    const auto y0 = rnd_f32(s.m * s.n, 4, -2.f, 2.f);
    // delta_x * delta_w[n]: delta_x ~ 0.02, delta_w ~ 1/127 with per-channel spread.
    const auto per_channel = rnd_f32(s.n, 5, 0.5f * 0.02f / 127, 1.5f * 0.02f / 127);
    const std::vector<float> per_tensor = {0.02f / 127};
    for (int32_t zp : {0, 3, 128, 255}) {
      const std::vector<int32_t> ref = int_products(x, w.data(), s.m, s.k, s.n, zp, s.k, 1);
      for (bool pc : {true, false}) {
        const std::vector<float> &scales = pc ? per_channel : per_tensor;
        for (bool has_bias : {true, false}) {
          for (Epilogue ep : {Epilogue::none, Epilogue::accumulate}) {
            const std::string what = describe(s, zp, pc, has_bias, ep);
            const auto pd = linear_u8s8_pd(s.m, s.k, s.n, scales, zp, has_bias, ep);
            const dnnl::memory packed =
                pack_linear_weights_s8(w.data(), s.n, s.k, pd.weights_desc());
            const std::vector<float> bias_acc = prescale_linear_bias_u8s8(bias.data(), s.n, scales);
            std::vector<float> y = y0;
            std::unordered_map<int, dnnl::memory> args = {
                {DNNL_ARG_SRC, wrap(pd.src_desc(), x.data())},
                {DNNL_ARG_WEIGHTS, packed},
                {DNNL_ARG_DST, wrap(pd.dst_desc(), y.data())}};
            if (has_bias) args[DNNL_ARG_BIAS] = wrap(pd.bias_desc(), bias_acc.data());
            execute(pd, args);
            // The int32 sum is exact, so the only error is float rounding of its terms:
            // relative to |scale * acc| + |bias| + |y0|, a few ulps.
            double worst = 0;
            for (int64_t i = 0; i < s.m; ++i)
              for (int64_t j = 0; j < s.n; ++j) {
                const int64_t o = i * s.n + j;
                const double sc = scales.size() == 1 ? scales[0] : scales[j];
                double want = sc * ref[o];
                double mag = std::fabs(want);
                if (has_bias) want += bias[j], mag += std::fabs(bias[j]);
                if (ep == Epilogue::accumulate) want += y0[o], mag += std::fabs(y0[o]);
                const double err = std::fabs(want - y[o]);
                if (err > 0) worst = std::max(worst, err / mag);
              }
            EXPECT_LE(worst, 1e-6) << what;
          }
        }
      }
    }
  }
}

// GELU is supported for completeness (the integer engine fuses it with requantization itself,
// ONEDNN-NOTES.md); oneDNN evaluates erf with a polynomial, hence the looser bound.
TEST(MatmulU8S8, LinearGeluEpilogue) {
  for (const Shape &s : {Shape{7, 33, 65}, Shape{50, 192, 576}}) {
    const auto x = rnd_u8(s.m * s.k, 11);
    const auto w = rnd_s8(s.n * s.k, 12);
    const auto bias = rnd_f32(s.n, 13, -1.f, 1.f);
    const auto scales = rnd_f32(s.n, 14, 0.5f / 127 / 64, 1.5f / 127 / 64);
    const int32_t zp = 128;
    const auto pd = linear_u8s8_pd(s.m, s.k, s.n, scales, zp, true, Epilogue::gelu_erf);
    const dnnl::memory packed = pack_linear_weights_s8(w.data(), s.n, s.k, pd.weights_desc());
    const auto bias_acc = prescale_linear_bias_u8s8(bias.data(), s.n, scales);
    std::vector<float> y(s.m * s.n);
    execute(pd, {{DNNL_ARG_SRC, wrap(pd.src_desc(), x.data())},
                 {DNNL_ARG_WEIGHTS, packed},
                 {DNNL_ARG_BIAS, wrap(pd.bias_desc(), bias_acc.data())},
                 {DNNL_ARG_DST, wrap(pd.dst_desc(), y.data())}});
    const std::vector<int32_t> ref = int_products(x, w.data(), s.m, s.k, s.n, zp, s.k, 1);
    double worst = 0;
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < s.n; ++j) {
        const double v = double{scales[j]} * ref[i * s.n + j] + bias[j];
        const double want = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
        worst = std::max(worst, std::fabs(want - y[i * s.n + j]) / (1 + std::fabs(v)));
      }
    EXPECT_LE(worst, 1e-5) << s.m << "x" << s.k << "x" << s.n;
  }
}

TEST(MatmulU8S8, BatchedMatchesExactIntegerReference) {
  struct Case {
    int64_t batch, m, k, n;
    bool b_is_nk;
  } cases[] = {{6, 197, 64, 197, true}, {6, 197, 197, 64, false}};
  for (const Case &c : cases) {
    const auto a = rnd_u8(c.batch * c.m * c.k, 21);
    const auto b = rnd_s8(c.batch * c.k * c.n, 22);
    const float scale = 0.01f / 127 * 0.37f;
    for (int32_t zp : {0, 100}) {
      const auto pd = batched_u8s8_pd(c.batch, c.m, c.k, c.n, c.b_is_nk, scale, zp);
      std::vector<float> out(c.batch * c.m * c.n);
      execute(pd, {{DNNL_ARG_SRC, wrap(pd.src_desc(), a.data())},
                   {DNNL_ARG_WEIGHTS, wrap(pd.weights_desc(), b.data())},
                   {DNNL_ARG_DST, wrap(pd.dst_desc(), out.data())}});
      double worst = 0;
      for (int64_t bi = 0; bi < c.batch; ++bi) {
        const std::vector<uint8_t> a_b(a.begin() + bi * c.m * c.k,
                                       a.begin() + (bi + 1) * c.m * c.k);
        // Element (k, n) of B[bi] sits at n*K + k when stored [N,K], else at k*N + n.
        const int8_t *b_b = b.data() + bi * c.k * c.n;
        const std::vector<int32_t> ref = c.b_is_nk
                                             ? int_products(a_b, b_b, c.m, c.k, c.n, zp, c.k, 1)
                                             : int_products(a_b, b_b, c.m, c.k, c.n, zp, 1, c.n);
        for (int64_t o = 0; o < c.m * c.n; ++o) {
          const double err = std::fabs(double{scale} * ref[o] - out[bi * c.m * c.n + o]);
          if (err > 0) worst = std::max(worst, err / std::fabs(double{scale} * ref[o]));
        }
      }
      EXPECT_LE(worst, 1e-6) << c.batch << "x" << c.m << "x" << c.k << "x" << c.n
                             << (c.b_is_nk ? " B[n,k]" : " B[k,n]") << " zp=" << zp;
      EXPECT_TRUE(is_brgemm(pd)) << pd.impl_info_str();
    }
  }
}

// An s8 destination: every level is the nearest integer to the exact scale * acc + zero point,
// saturated to [-128, 127], except where that value lies within float rounding of a tie (oneDNN
// rounds scale * acc to float, then adds the zero point in float).
struct LevelCheck {
  int64_t near_ties = 0;
  void expect(double exact, int8_t got, const std::string &what) {
    const double want = std::min(std::max(std::nearbyint(exact), -128.0), 127.0);
    if (got == want) return;
    const double from_tie = std::fabs(exact - std::floor(exact) - 0.5);
    ASSERT_TRUE(from_tie < 1e-4 && std::fabs(got - want) == 1)
        << what << ": exact " << exact << " stored " << int{got};
    ++near_ties;
  }
};

TEST(MatmulU8S8, BatchedS8DestinationRoundsOntoTheGrid) {
  struct Case {
    int64_t batch, m, k, n;
    bool b_is_nk;
  } cases[] = {{6, 197, 197, 64, false}, {3, 1, 17, 9, false}, {2, 5, 64, 33, true}};
  for (const Case &c : cases) {
    const auto a = rnd_u8(c.batch * c.m * c.k, 23);
    const auto b = rnd_s8(c.batch * c.k * c.n, 24);
    // The products' standard deviation is about 150 * 73 * sqrt(k): levels spread over about
    // +-70, so that the tails saturate at both ends for some zero points.
    const float scale = 100.f / (128.f * 127.f * std::sqrt(static_cast<float>(c.k)));
    for (int32_t a_zp : {0, 100})
      for (int32_t dst_zp : {0, 3, -28, 127}) {
        const auto pd =
            batched_u8s8_pd(c.batch, c.m, c.k, c.n, c.b_is_nk, scale, a_zp, S8Dst{true, dst_zp});
        std::vector<int8_t> out(c.batch * c.m * c.n);
        execute(pd, {{DNNL_ARG_SRC, wrap(pd.src_desc(), a.data())},
                     {DNNL_ARG_WEIGHTS, wrap(pd.weights_desc(), b.data())},
                     {DNNL_ARG_DST, wrap(pd.dst_desc(), out.data())}});
        const std::string what = std::to_string(c.batch) + "x" + std::to_string(c.m) + "x" +
                                 std::to_string(c.k) + "x" + std::to_string(c.n) +
                                 " a_zp=" + std::to_string(a_zp) +
                                 " dst_zp=" + std::to_string(dst_zp) + " " + pd.impl_info_str();
        LevelCheck check;
        for (int64_t bi = 0; bi < c.batch; ++bi) {
          const std::vector<uint8_t> a_b(a.begin() + bi * c.m * c.k,
                                         a.begin() + (bi + 1) * c.m * c.k);
          const int8_t *b_b = b.data() + bi * c.k * c.n;
          const std::vector<int32_t> ref =
              c.b_is_nk ? int_products(a_b, b_b, c.m, c.k, c.n, a_zp, c.k, 1)
                        : int_products(a_b, b_b, c.m, c.k, c.n, a_zp, 1, c.n);
          for (int64_t o = 0; o < c.m * c.n; ++o)
            check.expect(double{scale} * ref[o] + dst_zp, out[bi * c.m * c.n + o], what);
        }
        EXPECT_LE(check.near_ties, c.batch * c.m * c.n / 1000) << what;
        EXPECT_TRUE(is_brgemm(pd)) << what;
      }
  }
}

// An s8 linear destination with per-channel scales and a bias carrying per-channel shifts (how a
// layer writes sections on grids of their own while oneDNN takes one common destination zero
// point): levels as for the batched product, the bias in output units.
TEST(MatmulU8S8, LinearS8DestinationRoundsOntoTheGrid) {
  for (const Shape &s : {Shape{1, 17, 5}, Shape{7, 33, 65}, Shape{197, 384, 1152}}) {
    const auto x = rnd_u8(s.m * s.k, 41);
    const auto w = rnd_s8(s.n * s.k, 42);
    const float base = 100.f / (128.f * 127.f * std::sqrt(static_cast<float>(s.k)));
    const auto scales = rnd_f32(s.n, 43, 0.5f * base, 1.5f * base);
    auto bias = rnd_f32(s.n, 44, -20.f, 20.f);
    for (int64_t j = 0; j < s.n; ++j) bias[j] += static_cast<float>(j % 3 * 5 - 5);  // shifts
    const auto bias_acc = prescale_linear_bias_u8s8(bias.data(), s.n, scales);
    for (int32_t x_zp : {0, 128})
      for (int32_t dst_zp : {0, -6}) {
        const auto pd =
            linear_u8s8_pd(s.m, s.k, s.n, scales, x_zp, true, Epilogue::none, S8Dst{true, dst_zp});
        const dnnl::memory packed = pack_linear_weights_s8(w.data(), s.n, s.k, pd.weights_desc());
        std::vector<int8_t> y(s.m * s.n);
        execute(pd, {{DNNL_ARG_SRC, wrap(pd.src_desc(), x.data())},
                     {DNNL_ARG_WEIGHTS, packed},
                     {DNNL_ARG_BIAS, wrap(pd.bias_desc(), bias_acc.data())},
                     {DNNL_ARG_DST, wrap(pd.dst_desc(), y.data())}});
        const std::string what = describe(s, x_zp, true, true, Epilogue::none) +
                                 " dst_zp=" + std::to_string(dst_zp) + " " + pd.impl_info_str();
        const std::vector<int32_t> ref = int_products(x, w.data(), s.m, s.k, s.n, x_zp, s.k, 1);
        LevelCheck check;
        for (int64_t i = 0; i < s.m; ++i)
          for (int64_t j = 0; j < s.n; ++j)
            check.expect(double{scales[j]} * ref[i * s.n + j] + bias[j] + dst_zp, y[i * s.n + j],
                         what);
        EXPECT_LE(check.near_ties, s.m * s.n / 1000) << what;
        EXPECT_TRUE(is_brgemm(pd)) << what;
      }
  }
}

TEST(MatmulU8S8, RejectsBadArguments) {
  EXPECT_THROW(linear_u8s8_pd(4, 8, 3, {1.f, 2.f}, 0, false, Epilogue::none),
               std::invalid_argument);
  EXPECT_THROW(linear_u8s8_pd(4, 8, 3, {0.f}, 0, false, Epilogue::none), std::invalid_argument);
  EXPECT_THROW(linear_u8s8_pd(4, 8, 3, {NAN}, 0, false, Epilogue::none), std::invalid_argument);
  EXPECT_THROW(linear_u8s8_pd(4, 8, 3, {1.f}, 256, false, Epilogue::none), std::invalid_argument);
  EXPECT_THROW(linear_u8s8_pd(4, 8, 3, {1.f}, -1, false, Epilogue::none), std::invalid_argument);
  EXPECT_THROW(linear_u8s8_pd(0, 8, 3, {1.f}, 0, false, Epilogue::none), std::invalid_argument);
  EXPECT_THROW(batched_u8s8_pd(0, 4, 8, 3, true, 1.f, 0), std::invalid_argument);
  EXPECT_THROW(batched_u8s8_pd(2, 4, 8, 3, true, 1.f, DNNL_RUNTIME_S32_VAL), std::invalid_argument);
  EXPECT_THROW(batched_u8s8_pd(2, 4, 8, 3, true, 1.f, 0, S8Dst{true, 128}), std::invalid_argument);
  EXPECT_THROW(batched_u8s8_pd(2, 4, 8, 3, true, 1.f, 0, S8Dst{false, 3}), std::invalid_argument);
  EXPECT_THROW(linear_u8s8_pd(4, 8, 3, {1.f}, 0, false, Epilogue::accumulate, S8Dst{true, 0}),
               std::invalid_argument);
  const float b[3] = {1, 2, 3};
  EXPECT_THROW(prescale_linear_bias_u8s8(b, 3, {1.f, 2.f}), std::invalid_argument);
  const auto pd = linear_u8s8_pd(4, 8, 3, {1.f}, 0, false, Epilogue::none);
  const int8_t w[24] = {};
  EXPECT_THROW(pack_linear_weights_s8(w, 4, 6, pd.weights_desc()), std::invalid_argument);
}

// Every GEMM of DeiT-S and DeiT-T at batch 1 and 8, with and without a zero point, must land on
// a brgemm kernel (gemm:jit / ref are 1.2-100x slower, ONEDNN-NOTES.md).
TEST(MatmulU8S8, DeitShapesUseBrgemmKernels) {
  struct Model {
    const char *name;
    int64_t dim, heads, mlp;
  } models[] = {{"DeiT-S", 384, 6, 1536}, {"DeiT-T", 192, 3, 768}};
  const int64_t tokens = 197, patches = 196, patch_dim = 768, classes = 1000, dh = 64;
  for (const Model &md : models)
    for (int64_t b : {1, 8})
      for (int32_t zp : {0, 128}) {
        struct Linear {
          const char *name;
          int64_t m, k, n;
          Epilogue ep;
        } linears[] = {{"patch_embed", b * patches, patch_dim, md.dim, Epilogue::none},
                       {"qkv", b * tokens, md.dim, 3 * md.dim, Epilogue::none},
                       {"proj", b * tokens, md.dim, md.dim, Epilogue::accumulate},
                       {"fc1", b * tokens, md.dim, md.mlp, Epilogue::none},
                       {"fc2", b * tokens, md.mlp, md.dim, Epilogue::accumulate},
                       {"head", b, md.dim, classes, Epilogue::none}};
        const std::string tag =
            std::string(md.name) + " batch " + std::to_string(b) + " zp " + std::to_string(zp);
        auto check_linear = [&](const Linear &l, const char *threads) {
          // QKV as the integer engine runs it: int8 levels, per-channel scales.
          const bool s8 = std::string(l.name) == "qkv";
          const auto pd = linear_u8s8_pd(l.m, l.k, l.n, rnd_f32(l.n, 7, 1e-2f, 2e-2f), zp, true,
                                         l.ep, S8Dst{s8, 0});
          std::printf("  %s %-11s %5ldx%4ldx%4ld, %s: %s\n", tag.c_str(), l.name,
                      static_cast<long>(l.m), static_cast<long>(l.k), static_cast<long>(l.n),
                      threads, pd.impl_info_str());
          EXPECT_TRUE(is_brgemm(pd)) << tag << " " << l.name << " " << l.m << " rows, " << threads
                                     << ": " << pd.impl_info_str();
        };
        auto check_attention = [&](int64_t batch, int64_t tq, const char *threads) {
          const auto qk = batched_u8s8_pd(batch, tq, dh, tokens, true, 1e-4f, zp);
          // A·V as the integer engine runs it: int8 levels of proj's input grid.
          const auto av =
              batched_u8s8_pd(batch, tq, tokens, dh, false, 1e-2f, zp, S8Dst{true, zp / 64 - 1});
          std::printf("  %s q*k^T %ldx%ldx64x197: %s, attn*v %ldx%ldx197x64 to s8: %s (%s)\n",
                      tag.c_str(), static_cast<long>(batch), static_cast<long>(tq),
                      qk.impl_info_str(), static_cast<long>(batch), static_cast<long>(tq),
                      av.impl_info_str(), threads);
          EXPECT_TRUE(is_brgemm(qk)) << tag << " q*k^T " << tq << ": " << qk.impl_info_str();
          EXPECT_TRUE(is_brgemm(av)) << tag << " attn*v " << tq << ": " << av.impl_info_str();
        };
        // The layer-at-a-time shapes on 2 threads (the fp32-style plan, and the patch embedding
        // and head of the integer engine)...
        for (const Linear &l : linears) check_linear(l, "2 threads");
        check_attention(b * md.heads, tokens, "2 threads");
        // ...and what the integer engine's blocks create on 2 threads
        // (runtime/engine/int_engine.cpp): one primitive per chunk of rows, for 1 thread. Batch 1
        // splits the image 98 + 99 rows; batch 8 gives each thread 4 whole images. Attention runs
        // per segment over the heads.
        const ScopedThreads one_thread(1);
        for (int64_t rows : b == 1 ? std::vector<int64_t>{98, 99} : std::vector<int64_t>{788}) {
          for (const Linear &l : linears)
            if (l.m == b * tokens) check_linear({l.name, rows, l.k, l.n, l.ep}, "1 thread");
          check_attention(md.heads, b == 1 ? rows : tokens, "1 thread");
        }
      }
}

struct Timing {
  double median_ms, min_ms;
};

// Wall time of `runs` executions after a warm-up. The minimum is printed next to the median
// because the machine is shared: a preempted OpenMP thread stalls a whole run (~8 ms quanta).
Timing time_runs(const dnnl::primitive &prim, const std::unordered_map<int, dnnl::memory> &args,
                 int runs) {
  dnnl::stream st(cpu_engine());
  for (int i = 0; i < 5; ++i) prim.execute(st, args);
  st.wait();
  std::vector<double> t(runs);
  for (double &ms : t) {
    const auto t0 = std::chrono::steady_clock::now();
    prim.execute(st, args);
    st.wait();
    ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  std::sort(t.begin(), t.end());
  return {t[runs / 2], t[0]};
}

void print_timing(const char *what, int runs, double gop, const Timing &f32, const char *f32_impl,
                  const Timing &i8, const char *i8_impl) {
  std::printf(
      "  %s, 2 threads, %d runs: fp32 median %.3f ms (min %.3f, %.0f GFLOP/s, %s); u8s8 zp=128 "
      "median %.3f ms (min %.3f, %.0f GOP/s, %s); u8s8/fp32 speed-up %.2fx (min: %.2fx)\n",
      what, runs, f32.median_ms, f32.min_ms, gop / f32.median_ms * 1e3, f32_impl, i8.median_ms,
      i8.min_ms, gop / i8.median_ms * 1e3, i8_impl, f32.median_ms / i8.median_ms,
      f32.min_ms / i8.min_ms);
}

// Informative only: prints the u8s8 / fp32 speed ratio on 2 threads (the machine is shared, so
// no assertion on time).
TEST(MatmulU8S8, TimingVsFp32) {
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(2);  // before creating the pds: oneDNN sizes scratchpads for this count
  const int runs = 50;
  auto scratch_for = [](const dnnl::matmul::primitive_desc &pd, std::vector<uint8_t> &buf) {
    buf.resize(pd.scratchpad_desc().get_size());
    return wrap(pd.scratchpad_desc(), buf.data());
  };
  std::vector<uint8_t> s32, s8;
  {  // Linear 197x384x1152 with bias, weights prepacked.
    const int64_t m = 197, k = 384, n = 1152;
    const auto xf = rnd_f32(m * k, 31, -1.f, 1.f), wf = rnd_f32(n * k, 32, -1.f, 1.f),
               bf = rnd_f32(n, 33, -1.f, 1.f);
    std::vector<float> yf(m * n);
    const auto pd32 = linear_f32_pd(m, k, n, true, Epilogue::none);
    const dnnl::memory w32 = pack_linear_weights_f32(wf.data(), n, k, pd32.weights_desc());
    const Timing t32 = time_runs(dnnl::matmul(pd32),
                                 {{DNNL_ARG_SRC, wrap(pd32.src_desc(), xf.data())},
                                  {DNNL_ARG_WEIGHTS, w32},
                                  {DNNL_ARG_BIAS, wrap(pd32.bias_desc(), bf.data())},
                                  {DNNL_ARG_DST, wrap(pd32.dst_desc(), yf.data())},
                                  {DNNL_ARG_SCRATCHPAD, scratch_for(pd32, s32)}},
                                 runs);
    const auto xq = rnd_u8(m * k, 34);
    const auto wq = rnd_s8(n * k, 35);
    const auto scales = rnd_f32(n, 36, 1e-4f, 2e-4f);
    const auto bq = prescale_linear_bias_u8s8(bf.data(), n, scales);
    const auto pd8 = linear_u8s8_pd(m, k, n, scales, 128, true, Epilogue::none);
    const dnnl::memory w8 = pack_linear_weights_s8(wq.data(), n, k, pd8.weights_desc());
    const Timing t8 = time_runs(dnnl::matmul(pd8),
                                {{DNNL_ARG_SRC, wrap(pd8.src_desc(), xq.data())},
                                 {DNNL_ARG_WEIGHTS, w8},
                                 {DNNL_ARG_BIAS, wrap(pd8.bias_desc(), bq.data())},
                                 {DNNL_ARG_DST, wrap(pd8.dst_desc(), yf.data())},
                                 {DNNL_ARG_SCRATCHPAD, scratch_for(pd8, s8)}},
                                runs);
    const double gop = 2.0 * m * k * n * 1e-9;
    print_timing("linear 197x384x1152", runs, gop, t32, pd32.impl_info_str(), t8,
                 pd8.impl_info_str());
  }
  {  // Q·Kᵀ, 6 heads of 197x64 · (197x64)ᵀ, K read through the transposed descriptor.
    const int64_t batch = 6, m = 197, k = 64, n = 197;
    const auto af = rnd_f32(batch * m * k, 41, -1.f, 1.f),
               bf = rnd_f32(batch * n * k, 42, -1.f, 1.f);
    std::vector<float> c(batch * m * n);
    const auto pd32 = batched_f32_pd(batch, m, k, n, true);
    const Timing t32 = time_runs(dnnl::matmul(pd32),
                                 {{DNNL_ARG_SRC, wrap(pd32.src_desc(), af.data())},
                                  {DNNL_ARG_WEIGHTS, wrap(pd32.weights_desc(), bf.data())},
                                  {DNNL_ARG_DST, wrap(pd32.dst_desc(), c.data())},
                                  {DNNL_ARG_SCRATCHPAD, scratch_for(pd32, s32)}},
                                 runs);
    const auto aq = rnd_u8(batch * m * k, 43);
    const auto bq = rnd_s8(batch * n * k, 44);
    const auto pd8 = batched_u8s8_pd(batch, m, k, n, true, 1e-4f, 128);
    const Timing t8 = time_runs(dnnl::matmul(pd8),
                                {{DNNL_ARG_SRC, wrap(pd8.src_desc(), aq.data())},
                                 {DNNL_ARG_WEIGHTS, wrap(pd8.weights_desc(), bq.data())},
                                 {DNNL_ARG_DST, wrap(pd8.dst_desc(), c.data())},
                                 {DNNL_ARG_SCRATCHPAD, scratch_for(pd8, s8)}},
                                runs);
    const double gop = 2.0 * batch * m * k * n * 1e-9;
    print_timing("q*k^T 6x197x64x197", runs, gop, t32, pd32.impl_info_str(), t8,
                 pd8.impl_info_str());
  }
  omp_set_num_threads(saved_threads);
}

}  // namespace
}  // namespace vqm::kernels::onednn
