// Chooses the kernel implementation once per process: AVX-512 when the CPU has it (AVX512F; the
// byte kernels also AVX512BW), the scalar reference otherwise. VQM_ISA=ref forces the reference
// (for debugging and A/B timing).
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/elementwise_impl.h"
#include "kernels/kernels.h"

namespace vqm::kernels {

namespace {
bool use_avx512() {
  static const bool value = [] {
    const char *env = std::getenv("VQM_ISA");
    if (env && std::strcmp(env, "ref") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return value;
}
// The byte kernels also need AVX512BW (bytes_avx512.cpp).
bool use_avx512bw() {
  static const bool value = use_avx512() && __builtin_cpu_supports("avx512bw") != 0;
  return value;
}
// The code lookup also needs AVX512_VBMI (bytes_avx512.cpp).
bool use_avx512vbmi() {
  static const bool value = use_avx512bw() && __builtin_cpu_supports("avx512vbmi") != 0;
  return value;
}
}  // namespace

const char *active_isa() {
  return use_avx512() ? "avx512" : "ref";
}

int64_t l2_cache_bytes() {
  static const int64_t value = [] {
    const long n = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return std::clamp<int64_t>(n > 0 ? n : int64_t{1} << 20, int64_t{256} << 10, int64_t{4} << 20);
  }();
  return value;
}

void layernorm_f32(const float *x, float *y, int64_t rows, int64_t cols, const float *gamma,
                   const float *beta, float eps) {
  if (use_avx512()) return avx512::layernorm_f32(x, y, rows, cols, gamma, beta, eps);
  layernorm_f32_ref(x, y, rows, cols, gamma, beta, eps);
}

void softmax_f32(float *x, int64_t rows, int64_t cols, float scale) {
  if (use_avx512()) return avx512::softmax_f32(x, rows, cols, scale);
  softmax_f32_ref(x, rows, cols, scale);
}

void gelu_erf_f32(float *x, int64_t n) {
  if (use_avx512()) return avx512::gelu_erf_f32(x, n);
  gelu_erf_f32_ref(x, n);
}

}  // namespace vqm::kernels

namespace vqm::kernels {

void fake_quant_f32(float *x, int64_t n, float delta, int zero_point, int qmax) {
  if (use_avx512()) return avx512::fake_quant_f32(x, n, delta, zero_point, qmax);
  fake_quant_f32_ref(x, n, delta, zero_point, qmax);
}

}  // namespace vqm::kernels

namespace vqm::kernels {

void layernorm_quant(const float *x, void *y, int64_t rows, int64_t cols, const float *gamma,
                     const float *beta, float eps, const QuantGrid &g) {
  if (use_avx512()) return avx512::layernorm_quant(x, y, rows, cols, gamma, beta, eps, g);
  layernorm_quant_ref(x, y, rows, cols, gamma, beta, eps, g);
}

void quantize(const float *x, void *y, int64_t n, const QuantGrid &g) {
  if (use_avx512()) return avx512::quantize(x, y, n, g);
  quantize_ref(x, y, n, g);
}

void gelu_quant(const float *x, void *y, int64_t n, const QuantGrid &g) {
  if (use_avx512()) return avx512::gelu_quant(x, y, n, g);
  gelu_quant_ref(x, y, n, g);
}

void quick_gelu_quant(const float *x, void *y, int64_t n, const QuantGrid &g) {
  if (use_avx512()) return avx512::quick_gelu_quant(x, y, n, g);
  quick_gelu_quant_ref(x, y, n, g);
}

void softmax_quant(const float *x, void *y, int64_t rows, int64_t cols, float scale,
                   const QuantGrid &g) {
  if (use_avx512()) return avx512::softmax_quant(x, y, rows, cols, scale, g);
  softmax_quant_ref(x, y, rows, cols, scale, g);
}

void map_codes(uint8_t *codes, int64_t n, const CodeMap &m) {
  if (use_avx512vbmi()) return avx512::map_codes(codes, n, m);
  map_codes_ref(codes, n, m);
}

void merge_heads_s8(const int8_t *src, uint8_t *dst, int64_t b, int64_t h, int64_t t, int64_t d,
                    const ByteClamp &c) {
  if (use_avx512bw()) return avx512::merge_heads_s8(src, dst, b, h, t, d, c);
  merge_heads_s8_ref(src, dst, b, h, t, d, c);
}

void split_heads_s8(const int8_t *src, uint8_t *const *dst, const ByteClamp *clamps, int64_t b,
                    int64_t t, int64_t s, int64_t h, int64_t d, const int64_t *dst_t) {
  if (use_avx512bw()) return avx512::split_heads_s8(src, dst, clamps, b, t, s, h, d, dst_t);
  split_heads_s8_ref(src, dst, clamps, b, t, s, h, d, dst_t);
}

}  // namespace vqm::kernels
