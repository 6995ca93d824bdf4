#include "kernels/onednn/matmul_int8.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace vqm::kernels::onednn {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

void require(bool ok, const std::string &what) {
  if (!ok) throw std::invalid_argument(what);
}

void check_dims(int64_t m, int64_t k, int64_t n, const char *who) {
  require(m > 0 && k > 0 && n > 0, std::string(who) +
                                       ": dimensions must be positive, got m=" + std::to_string(m) +
                                       " k=" + std::to_string(k) + " n=" + std::to_string(n));
}

// A u8 tensor's zero point lies on its own grid; bounding it also keeps oneDNN's int32
// compensation zp * sum_k w (|.| <= 255 * 127 * K) far from overflow for any realistic K.
void check_zero_point(int32_t zp, const char *who) {
  require(zp >= 0 && zp <= 255,
          std::string(who) + ": u8 zero point must be in [0, 255], got " + std::to_string(zp));
}

void check_scale(float s, const char *who) {
  require(std::isfinite(s) && s != 0.f,
          std::string(who) + ": scales must be finite and non-zero, got " + std::to_string(s));
}

void check_dst(const S8Dst &dst, const char *who) {
  require(dst.s8 ? dst.zero_point >= -128 && dst.zero_point <= 127 : dst.zero_point == 0,
          std::string(who) + ": destination zero point " + std::to_string(dst.zero_point) +
              (dst.s8 ? " outside [-128, 127]" : " without an s8 destination"));
}

dt dst_type(const S8Dst &dst) {
  return dst.s8 ? dt::s8 : dt::f32;
}

dnnl::primitive_attr make_attr(Epilogue epilogue, int scale_mask, const std::vector<float> &scales,
                               int32_t src_zero_point, const S8Dst &dst) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  attr.set_output_scales(scale_mask, scales);
  // Left unset when 0: a zero point, even of value 0, would make oneDNN carry (and compute) the
  // compensation term.
  if (src_zero_point != 0) attr.set_zero_points(DNNL_ARG_SRC, /*mask=*/0, {src_zero_point});
  if (dst.zero_point != 0) attr.set_zero_points(DNNL_ARG_DST, /*mask=*/0, {dst.zero_point});
  attr.set_post_ops(make_post_ops(epilogue));
  return attr;
}

}  // namespace

dnnl::matmul::primitive_desc linear_u8s8_pd(int64_t m, int64_t k, int64_t n,
                                            const std::vector<float> &out_scales,
                                            int32_t x_zero_point, bool bias, Epilogue epilogue,
                                            S8Dst dst) {
  check_dims(m, k, n, "linear_u8s8_pd");
  check_zero_point(x_zero_point, "linear_u8s8_pd");
  check_dst(dst, "linear_u8s8_pd");
  // A sum post-op would add the old levels, not values.
  require(!dst.s8 || epilogue != Epilogue::accumulate,
          "linear_u8s8_pd: an s8 destination cannot accumulate");
  require(out_scales.size() == 1 || static_cast<int64_t>(out_scales.size()) == n,
          "linear_u8s8_pd: need 1 or n=" + std::to_string(n) + " output scales, got " +
              std::to_string(out_scales.size()));
  for (float s : out_scales) check_scale(s, "linear_u8s8_pd");
  const memory::desc src({m, k}, dt::u8, tag::ab);
  const memory::desc wei({k, n}, dt::s8, tag::any);
  const memory::desc out({m, n}, dst_type(dst), tag::ab);
  const memory::desc bia = bias ? memory::desc({1, n}, dt::f32, tag::ab) : memory::desc();
  // Mask bit 1 = the N dimension of the 2-D destination.
  const int mask = out_scales.size() == 1 ? 0 : 1 << 1;
  const dnnl::matmul::desc desc(src, wei, bia, out);
  return dnnl::matmul::primitive_desc(
      desc, make_attr(epilogue, mask, out_scales, x_zero_point, dst), cpu_engine());
}

std::vector<float> prescale_linear_bias_u8s8(const float *bias, int64_t n,
                                             const std::vector<float> &out_scales) {
  require(n > 0 && bias != nullptr, "prescale_linear_bias_u8s8: need a bias of n > 0 values");
  require(out_scales.size() == 1 || static_cast<int64_t>(out_scales.size()) == n,
          "prescale_linear_bias_u8s8: need 1 or n=" + std::to_string(n) + " output scales, got " +
              std::to_string(out_scales.size()));
  std::vector<float> out(n);
  for (int64_t j = 0; j < n; ++j) {
    const float s = out_scales.size() == 1 ? out_scales[0] : out_scales[j];
    check_scale(s, "prescale_linear_bias_u8s8");
    out[j] = bias[j] / s;
  }
  return out;
}

memory pack_linear_weights_s8(const int8_t *w_nk, int64_t n, int64_t k, const memory::desc &want) {
  require(want.dims() == memory::dims{k, n} && want.data_type() == dt::s8,
          "pack_linear_weights_s8: target layout is not an s8 [k, n] weights descriptor");
  // PyTorch [N,K] row-major is logical [K,N] in "ba" order. A reorder into a descriptor with
  // compensation extra flags also writes the per-column sums oneDNN needs for the zero point.
  const memory::desc plain({k, n}, dt::s8, tag::ba);
  memory src(plain, cpu_engine(), const_cast<int8_t *>(w_nk));
  memory dst(want, cpu_engine());
  dnnl::stream s(cpu_engine());
  dnnl::reorder(src, dst).execute(s, src, dst);
  s.wait();
  return dst;
}

dnnl::matmul::primitive_desc batched_u8s8_pd(int64_t batch, int64_t m, int64_t k, int64_t n,
                                             bool b_is_nk, float scale, int32_t a_zero_point,
                                             S8Dst dst) {
  check_dims(m, k, n, "batched_u8s8_pd");
  require(batch > 0, "batched_u8s8_pd: batch must be positive, got " + std::to_string(batch));
  check_zero_point(a_zero_point, "batched_u8s8_pd");
  check_dst(dst, "batched_u8s8_pd");
  check_scale(scale, "batched_u8s8_pd");
  const memory::desc src({batch, m, k}, dt::u8, tag::abc);
  // [batch,N,K] storage seen as logical [batch,K,N] is the "acb" permutation.
  const memory::desc wei({batch, k, n}, dt::s8, b_is_nk ? tag::acb : tag::abc);
  const memory::desc out({batch, m, n}, dst_type(dst), tag::abc);
  const dnnl::matmul::desc desc(src, wei, out);
  return dnnl::matmul::primitive_desc(
      desc, make_attr(Epilogue::none, 0, {scale}, a_zero_point, dst), cpu_engine());
}

namespace {
dnnl::primitive_attr raw_attr(int32_t src_zero_point) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (src_zero_point != 0) attr.set_zero_points(DNNL_ARG_SRC, /*mask=*/0, {src_zero_point});
  return attr;
}
}  // namespace

dnnl::matmul::primitive_desc linear_u8s8s32_pd(int64_t m, int64_t k, int64_t n) {
  check_dims(m, k, n, "linear_u8s8s32_pd");
  const memory::desc src({m, k}, dt::u8, tag::ab);
  const memory::desc wei({k, n}, dt::s8, tag::ba);  // [N,K] row-major
  const memory::desc dst({m, n}, dt::s32, tag::ab);
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wei, dst), raw_attr(0), cpu_engine());
}

dnnl::matmul::primitive_desc batched_u8s8s32_pd(int64_t batch, int64_t m, int64_t k, int64_t n,
                                                bool b_is_nk, int32_t a_zero_point) {
  check_dims(m, k, n, "batched_u8s8s32_pd");
  require(batch > 0, "batched_u8s8s32_pd: batch must be positive, got " + std::to_string(batch));
  check_zero_point(a_zero_point, "batched_u8s8s32_pd");
  const memory::desc src({batch, m, k}, dt::u8, tag::abc);
  const memory::desc wei({batch, k, n}, dt::s8, b_is_nk ? tag::acb : tag::abc);
  const memory::desc dst({batch, m, n}, dt::s32, tag::abc);
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wei, dst), raw_attr(a_zero_point),
                                      cpu_engine());
}

bool exact_int8_products() {
  // The ISA values are bit sets (dnnl_types.h): every ISA from avx512_core_vnni up (bf16, amx)
  // contains all of its bits; avx2_vnni is left out (its int8 matmul kernels are not brgemm in
  // 2.6, and the jit gemm they fall back to is not known to use VNNI).
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto vnni = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_vnni);
  return (isa & vnni) == vnni;
}

}  // namespace vqm::kernels::onednn
