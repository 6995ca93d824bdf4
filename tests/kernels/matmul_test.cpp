// oneDNN matmul wrappers against a double-precision scalar product, over awkward shapes, and a
// check that the fast brgemm kernels are the ones picked on this CPU.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/onednn/matmul.h"
#include "test_util.h"

namespace vqm::kernels::onednn {
namespace {

std::vector<float> rnd(size_t n, uint32_t seed) {
  return test::uniform_floats(n, seed);
}

double gelu(double x) {
  return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
}

TEST(Matmul, LinearWithEpiloguesMatchesScalarReference) {
  struct Shape {
    int64_t m, k, n;
  } shapes[] = {{1, 1, 1}, {1, 17, 5}, {7, 33, 65}, {50, 192, 576}, {197, 384, 1000}};
  for (const auto &s : shapes) {
    for (Epilogue ep : {Epilogue::none, Epilogue::gelu_erf, Epilogue::accumulate}) {
      const auto x = rnd(s.m * s.k, 1), w = rnd(s.n * s.k, 2), b = rnd(s.n, 3),
                 y0 = rnd(s.m * s.n, 4);
      const auto pd = linear_f32_pd(s.m, s.k, s.n, true, ep);
      const dnnl::memory packed = pack_linear_weights_f32(w.data(), s.n, s.k, pd.weights_desc());
      std::vector<float> y = y0, scratch(pd.scratchpad_desc().get_size() / 4 + 1);
      dnnl::stream st(cpu_engine());
      dnnl::matmul(pd).execute(st,
                               {{DNNL_ARG_SRC, wrap(pd.src_desc(), x.data())},
                                {DNNL_ARG_WEIGHTS, packed},
                                {DNNL_ARG_BIAS, wrap(pd.bias_desc(), b.data())},
                                {DNNL_ARG_DST, wrap(pd.dst_desc(), y.data())},
                                {DNNL_ARG_SCRATCHPAD, wrap(pd.scratchpad_desc(), scratch.data())}});
      st.wait();
      double worst = 0;
      for (int64_t i = 0; i < s.m; ++i)
        for (int64_t j = 0; j < s.n; ++j) {
          double acc = b[j];
          for (int64_t k = 0; k < s.k; ++k)
            acc += static_cast<double>(x[i * s.k + k]) * w[j * s.k + k];
          if (ep == Epilogue::gelu_erf) acc = gelu(acc);
          if (ep == Epilogue::accumulate) acc += y0[i * s.n + j];
          worst = std::max(worst, std::fabs(acc - y[i * s.n + j]));
        }
      // fp32 accumulation of K products of magnitude <= 1: error grows ~ sqrt(K) * 6e-8 * K.
      EXPECT_LT(worst, 1e-5 * std::max<int64_t>(1, s.k)) << s.m << "x" << s.k << "x" << s.n;
    }
  }
}

TEST(Matmul, BatchedWithTransposedOperand) {
  const int64_t batch = 6, m = 197, k = 64, n = 197;
  const auto a = rnd(batch * m * k, 5), bnk = rnd(batch * n * k, 6);
  const auto pd = batched_f32_pd(batch, m, k, n, /*b_is_nk=*/true);
  std::vector<float> c(batch * m * n), scratch(pd.scratchpad_desc().get_size() / 4 + 1);
  dnnl::stream st(cpu_engine());
  dnnl::matmul(pd).execute(st, {{DNNL_ARG_SRC, wrap(pd.src_desc(), a.data())},
                                {DNNL_ARG_WEIGHTS, wrap(pd.weights_desc(), bnk.data())},
                                {DNNL_ARG_DST, wrap(pd.dst_desc(), c.data())},
                                {DNNL_ARG_SCRATCHPAD, wrap(pd.scratchpad_desc(), scratch.data())}});
  st.wait();
  double worst = 0;
  for (int64_t bi = 0; bi < batch; bi += 5)
    for (int64_t i = 0; i < m; i += 7)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t kk = 0; kk < k; ++kk)
          acc += static_cast<double>(a[(bi * m + i) * k + kk]) * bnk[(bi * n + j) * k + kk];
        worst = std::max(worst, std::fabs(acc - c[(bi * m + i) * n + j]));
      }
  EXPECT_LT(worst, 1e-4);
  // The transposed operand is read in place by the fast kernel (ONEDNN-NOTES.md).
  EXPECT_EQ(std::string(pd.impl_info_str()).rfind("brg", 0), 0u) << pd.impl_info_str();
}

TEST(Matmul, LinearLayersUseBrgemmKernels) {
  for (int64_t m : {197, 8 * 197}) {
    const auto pd = linear_f32_pd(m, 384, 1152, true, Epilogue::none);
    EXPECT_EQ(std::string(pd.impl_info_str()).rfind("brg", 0), 0u) << pd.impl_info_str();
  }
}

}  // namespace
}  // namespace vqm::kernels::onednn
