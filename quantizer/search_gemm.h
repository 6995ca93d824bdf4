// The products an interval search scores its candidates with (internal to quantizer/): one oneDNN
// primitive per problem, created once, run once per candidate.
//
// Two kinds. fp32 (LinearGemm, BatchedGemm): the fake-quantized operands as floats, the search's
// original and reference path. int8 (Int8LinearGemm, Int8BatchedGemm): the same operands as their
// integer levels (u8 codes with the grid's zero point, s8 levels), products accumulated in int32.
// The levels are the ones fake quantization rounds to, and an int32 sum of integer products is
// exact where the fp32 GEMM rounds, so the integer product times the two deltas is the candidate's
// output up to double rounding: at least as accurate as the fp32 path, and about 3x faster on a
// VNNI CPU. int8_candidates_exact() says when the int8 kind may be used.
#pragma once
#include <cstdint>
#include <dnnl.hpp>
#include <vector>

namespace vqm::quant {

// True when int8 candidate products are exact on this CPU (oneDNN's int8 matmuls accumulate in
// int32 without the int16 saturation of pre-VNNI kernels) and k, the reduction length, keeps
// |sum| = k * 255 * 128 within int32.
bool int8_candidates_exact(int64_t k);

// y = x W^T + b, x [m, k], W [n, k]; the weights are swapped per candidate by one reorder (plain
// [N,K] -> the primitive's packed layout).
class LinearGemm {
 public:
  LinearGemm(int64_t m, int64_t k, int64_t n, const float *bias);
  void set_weights(const float *w_nk);
  void run(const float *x, float *y);

 private:
  const float *bias_;
  dnnl::matmul::primitive_desc pd_;
  dnnl::matmul prim_;
  dnnl::memory packed_, plain_;
  dnnl::reorder reorder_;
  std::vector<float> scratch_;
  dnnl::stream stream_;
};

// acc[m, n] = sum_k x[m,k] * w[n,k] in int32: x u8 codes, w s8 levels [n, k] read in place (no
// packing per candidate: see linear_u8s8s32_pd). The caller accounts for x's zero point through
// the weights' row sums (zp * sum_k w[n,k], per output column).
class Int8LinearGemm {
 public:
  Int8LinearGemm(int64_t m, int64_t k, int64_t n);
  void run(const uint8_t *x, const int8_t *w_nk, int32_t *acc);

 private:
  dnnl::matmul::primitive_desc pd_;
  dnnl::matmul prim_;
  std::vector<char> scratch_;
  dnnl::stream stream_;
};

// c = scale * a . b (batched; b [batch, k, n] or, when b_is_nk, [batch, n, k]).
class BatchedGemm {
 public:
  BatchedGemm(int64_t batch, int64_t m, int64_t k, int64_t n, bool b_is_nk, float scale);
  void run(const float *a, const float *b, float *c);

 private:
  float scale_;
  int64_t size_;
  dnnl::matmul::primitive_desc pd_;
  dnnl::matmul prim_;
  std::vector<float> scratch_;
  dnnl::stream stream_;
};

// acc = (a - a_zero_point) . b in int32 (batched as BatchedGemm): a u8 codes, b s8 levels.
class Int8BatchedGemm {
 public:
  Int8BatchedGemm(int64_t batch, int64_t m, int64_t k, int64_t n, bool b_is_nk, int a_zero_point);
  void run(const uint8_t *a, const int8_t *b, int32_t *acc);

 private:
  dnnl::matmul::primitive_desc pd_;
  dnnl::matmul prim_;
  std::vector<char> scratch_;
  dnnl::stream stream_;
};

// Per-column sum over `rows` rows of (o_hat - o)^2, deterministic for any thread count. The int
// form takes o_hat[r][c] = acc[r][c] * scale[c] + bias[c] (in double).
void column_sse(const float *o, const float *o_hat, int64_t rows, int64_t cols, double *out);
void column_sse(const float *o, const int32_t *acc, const double *scale, const double *bias,
                int64_t rows, int64_t cols, double *out);

}  // namespace vqm::quant
