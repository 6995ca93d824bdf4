#include "quantizer/search_gemm.h"

#include <algorithm>
#include <unordered_map>

#include "kernels/onednn/matmul.h"
#include "kernels/onednn/matmul_int8.h"
#include "quantizer/multiversion.h"
#include "quantizer/quant_math.h"

namespace vqm::quant {

namespace dn = vqm::kernels::onednn;
using dnnl::memory;

bool int8_candidates_exact(int64_t k) {
  static const bool isa = dn::exact_int8_products();
  // |level products| <= 255 * 128 (a u8 code minus its zero point times an s8 level).
  return isa && k <= (int64_t{1} << 31) / (255 * 128) - 1;
}

LinearGemm::LinearGemm(int64_t m, int64_t k, int64_t n, const float *bias)
    : bias_(bias),
      pd_(dn::linear_f32_pd(m, k, n, bias != nullptr, dn::Epilogue::none)),
      prim_(pd_),
      packed_(pd_.weights_desc(), dn::cpu_engine()),
      plain_(memory::desc({k, n}, memory::data_type::f32, memory::format_tag::ba), dn::cpu_engine(),
             DNNL_MEMORY_NONE),
      reorder_(plain_, packed_),
      scratch_(pd_.scratchpad_desc().get_size() / sizeof(float) + 1),
      stream_(dn::cpu_engine()) {}

void LinearGemm::set_weights(const float *w_nk) {
  plain_.set_data_handle(const_cast<float *>(w_nk));
  reorder_.execute(stream_, plain_, packed_);
  stream_.wait();
}

void LinearGemm::run(const float *x, float *y) {
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, dn::wrap(pd_.src_desc(), x)},
      {DNNL_ARG_WEIGHTS, packed_},
      {DNNL_ARG_DST, dn::wrap(pd_.dst_desc(), y)},
      {DNNL_ARG_SCRATCHPAD, dn::wrap(pd_.scratchpad_desc(), scratch_.data())}};
  if (bias_) args.emplace(DNNL_ARG_BIAS, dn::wrap(pd_.bias_desc(), bias_));
  prim_.execute(stream_, args);
  stream_.wait();
}

Int8LinearGemm::Int8LinearGemm(int64_t m, int64_t k, int64_t n)
    : pd_(dn::linear_u8s8s32_pd(m, k, n)),
      prim_(pd_),
      scratch_(pd_.scratchpad_desc().get_size() + 1),
      stream_(dn::cpu_engine()) {}

void Int8LinearGemm::run(const uint8_t *x, const int8_t *w_nk, int32_t *acc) {
  prim_.execute(stream_, {{DNNL_ARG_SRC, dn::wrap(pd_.src_desc(), x)},
                          {DNNL_ARG_WEIGHTS, dn::wrap(pd_.weights_desc(), w_nk)},
                          {DNNL_ARG_DST, dn::wrap(pd_.dst_desc(), acc)},
                          {DNNL_ARG_SCRATCHPAD, dn::wrap(pd_.scratchpad_desc(), scratch_.data())}});
  stream_.wait();
}

BatchedGemm::BatchedGemm(int64_t batch, int64_t m, int64_t k, int64_t n, bool b_is_nk, float scale)
    : scale_(scale),
      size_(batch * m * n),
      pd_(dn::batched_f32_pd(batch, m, k, n, b_is_nk)),
      prim_(pd_),
      scratch_(pd_.scratchpad_desc().get_size() / sizeof(float) + 1),
      stream_(dn::cpu_engine()) {}

void BatchedGemm::run(const float *a, const float *b, float *c) {
  prim_.execute(stream_, {{DNNL_ARG_SRC, dn::wrap(pd_.src_desc(), a)},
                          {DNNL_ARG_WEIGHTS, dn::wrap(pd_.weights_desc(), b)},
                          {DNNL_ARG_DST, dn::wrap(pd_.dst_desc(), c)},
                          {DNNL_ARG_SCRATCHPAD, dn::wrap(pd_.scratchpad_desc(), scratch_.data())}});
  stream_.wait();
  if (scale_ == 1.f) return;
  const float s = scale_;
  const int64_t n = size_;
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) c[i] *= s;
}

Int8BatchedGemm::Int8BatchedGemm(int64_t batch, int64_t m, int64_t k, int64_t n, bool b_is_nk,
                                 int a_zero_point)
    : pd_(dn::batched_u8s8s32_pd(batch, m, k, n, b_is_nk, a_zero_point)),
      prim_(pd_),
      scratch_(pd_.scratchpad_desc().get_size() + 1),
      stream_(dn::cpu_engine()) {}

void Int8BatchedGemm::run(const uint8_t *a, const int8_t *b, int32_t *acc) {
  prim_.execute(stream_, {{DNNL_ARG_SRC, dn::wrap(pd_.src_desc(), a)},
                          {DNNL_ARG_WEIGHTS, dn::wrap(pd_.weights_desc(), b)},
                          {DNNL_ARG_DST, dn::wrap(pd_.dst_desc(), acc)},
                          {DNNL_ARG_SCRATCHPAD, dn::wrap(pd_.scratchpad_desc(), scratch_.data())}});
  stream_.wait();
}

namespace {

constexpr int64_t kColBlock = 64;

// Squared differences of columns [c0, c0 + width) summed over rows into acc.
VQM_MULTIVERSION void column_block_sse(const float *o, const float *o_hat, int64_t rows,
                                       int64_t cols, int64_t c0, int64_t width, double *acc) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *orow = o + r * cols + c0, *hrow = o_hat + r * cols + c0;
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) {
      const double e = static_cast<double>(hrow[c]) - orow[c];
      acc[c] += e * e;
    }
  }
}

VQM_MULTIVERSION void column_block_sse_int(const float *o, const int32_t *a, const double *scale,
                                           const double *bias, int64_t rows, int64_t cols,
                                           int64_t c0, int64_t width, double *acc) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *orow = o + r * cols + c0;
    const int32_t *arow = a + r * cols + c0;
#pragma omp simd
    for (int64_t c = 0; c < width; ++c) {
      const double e = arow[c] * scale[c0 + c] + bias[c0 + c] - orow[c];
      acc[c] += e * e;
    }
  }
}

// Column blocks of kColBlock, one task each: contiguous reads, private accumulators, the same
// sums for any thread count.
template <class F>
void by_column_blocks(int64_t rows, int64_t cols, double *out, F &&block_sse) {
  const int64_t blocks = (cols + kColBlock - 1) / kColBlock;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t c0 = b * kColBlock, width = std::min(cols - c0, kColBlock);
    double acc[kColBlock] = {};
    block_sse(c0, width, acc);
    std::copy(acc, acc + width, out + c0);
  }
}

}  // namespace

void column_sse(const float *o, const float *o_hat, int64_t rows, int64_t cols, double *out) {
  by_column_blocks(rows, cols, out, [&](int64_t c0, int64_t width, double *acc) {
    column_block_sse(o, o_hat, rows, cols, c0, width, acc);
  });
}

void column_sse(const float *o, const int32_t *acc, const double *scale, const double *bias,
                int64_t rows, int64_t cols, double *out) {
  by_column_blocks(rows, cols, out, [&](int64_t c0, int64_t width, double *sums) {
    column_block_sse_int(o, acc, scale, bias, rows, cols, c0, width, sums);
  });
}

}  // namespace vqm::quant
