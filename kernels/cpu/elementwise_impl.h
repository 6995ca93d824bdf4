// Per-ISA implementations behind the dispatcher in dispatch.cpp. Not a public interface: callers
// use kernels.h.
#pragma once
#include <omp.h>

#include <cstdint>

namespace vqm::kernels::avx512 {

// Runs body(begin, end) on each thread of a new team with its share of [0, count), split evenly
// (as a static schedule). The kernels put their loops in such a body and copy every pointer,
// size and constant they use into locals first: a loop that reads the region's shared variables
// reloads them after each store (a byte or float store may alias anything), and the byte kernels
// ran 1.6x slower for it. Inside an enclosing parallel region the team is the calling thread.
template <class Body>
inline void parallel_share(int64_t count, const Body &body) {
#pragma omp parallel
  {
    const int64_t t = omp_get_thread_num(), team = omp_get_num_threads();
    body(count * t / team, count * (t + 1) / team);
  }
}

void layernorm_f32(const float *x, float *y, int64_t rows, int64_t cols, const float *gamma,
                   const float *beta, float eps);
void softmax_f32(float *x, int64_t rows, int64_t cols, float scale);
void gelu_erf_f32(float *x, int64_t n);
}  // namespace vqm::kernels::avx512

namespace vqm::kernels::avx512 {
void fake_quant_f32(float *x, int64_t n, float delta, int zero_point, int qmax);
}  // namespace vqm::kernels::avx512

namespace vqm::kernels {
struct QuantGrid;  // kernels.h
struct ByteClamp;  // kernels.h
struct CodeMap;    // kernels.h
}  // namespace vqm::kernels

namespace vqm::kernels::avx512 {
void layernorm_quant(const float *x, void *y, int64_t rows, int64_t cols, const float *gamma,
                     const float *beta, float eps, const QuantGrid &g);
void quantize(const float *x, void *y, int64_t n, const QuantGrid &g);
void gelu_quant(const float *x, void *y, int64_t n, const QuantGrid &g);
void quick_gelu_quant(const float *x, void *y, int64_t n, const QuantGrid &g);
void softmax_quant(const float *x, void *y, int64_t rows, int64_t cols, float scale,
                   const QuantGrid &g);
// AVX512BW (bytes_avx512.cpp); map_codes also AVX512_VBMI.
void map_codes(uint8_t *codes, int64_t n, const CodeMap &m);
void merge_heads_s8(const int8_t *src, uint8_t *dst, int64_t b, int64_t h, int64_t t, int64_t d,
                    const ByteClamp &c);
void split_heads_s8(const int8_t *src, uint8_t *const *dst, const ByteClamp *clamps, int64_t b,
                    int64_t t, int64_t s, int64_t h, int64_t d, const int64_t *dst_t);
}  // namespace vqm::kernels::avx512
