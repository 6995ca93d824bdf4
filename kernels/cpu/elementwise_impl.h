// Per-ISA implementations behind the dispatcher in dispatch.cpp. Not a public interface: callers
// use kernels.h.
#pragma once
#include <cstdint>

namespace vqm::kernels::avx512 {
void layernorm_f32(const float *x, float *y, int64_t rows, int64_t cols, const float *gamma,
                   const float *beta, float eps);
void softmax_f32(float *x, int64_t rows, int64_t cols, float scale);
void gelu_erf_f32(float *x, int64_t n);
}  // namespace vqm::kernels::avx512

namespace vqm::kernels::avx512 {
void fake_quant_f32(float *x, int64_t n, float delta, int zero_point, int qmax);
}  // namespace vqm::kernels::avx512
