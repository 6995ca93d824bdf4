// Element-wise and row-wise kernels on plain pointers. Nothing here knows about ViT.
// Each kernel has a scalar `_ref` twin (kernels/ref/) that is the test oracle; the unsuffixed
// entry point dispatches at run time to the fastest implementation the CPU supports
// (kernels/cpu/dispatch.cpp; VQM_ISA=ref|avx512 overrides). Row loops run on OpenMP threads.
#pragma once
#include <cstdint>

namespace vqm::kernels {

// y[r,:] = (x[r,:] - mean) / sqrt(var + eps) * gamma + beta, for each of `rows` rows.
// x and y may alias. Variance is the biased one (PyTorch LayerNorm).
void layernorm_f32(const float *x, float *y, int64_t rows, int64_t cols, const float *gamma,
                   const float *beta, float eps);
void layernorm_f32_ref(const float *x, float *y, int64_t rows, int64_t cols, const float *gamma,
                       const float *beta, float eps);

// In place: x[r,:] = softmax(scale * x[r,:]) for each row (max-subtracted, so any finite input
// is safe).
void softmax_f32(float *x, int64_t rows, int64_t cols, float scale);
void softmax_f32_ref(float *x, int64_t rows, int64_t cols, float scale);

// In place: x = 0.5 x (1 + erf(x / sqrt 2)) (exact GELU, as torch.nn.GELU()).
void gelu_erf_f32(float *x, int64_t n);
void gelu_erf_f32_ref(float *x, int64_t n);

// Which implementation the dispatcher uses: "avx512" or "ref".
const char *active_isa();

}  // namespace vqm::kernels

namespace vqm::kernels {

// Layout moves for multi-head attention (plain permutations, no arithmetic).
// src [B, T, S, H, D] -> dst [S, B, H, T, D]: splits a fused projection of S groups (e.g. S = 3
// for q, k, v) into dense head-major blocks, which oneDNN's fast batched matmul needs.
void split_heads_f32(const float *src, float *dst, int64_t b, int64_t t, int64_t s, int64_t h,
                     int64_t d);
// src [B, H, T, D] -> dst [B, T, H, D]: merges heads back into token order.
void merge_heads_f32(const float *src, float *dst, int64_t b, int64_t h, int64_t t, int64_t d);
// Non-overlapping square patches: src [N, C, H, W] -> dst [N, (H/p)*(W/p), C*p*p] with each
// patch flattened in (c, y, x) order, so a stride-p conv becomes one matmul. H, W multiples of p.
void patchify_f32(const float *src, float *dst, int64_t n, int64_t c, int64_t height, int64_t width,
                  int64_t p);

}  // namespace vqm::kernels

namespace vqm::kernels {

// In place fake quantization on an affine b-bit grid held in [0, qmax] (qmax = 2^b - 1):
// q = clamp(nearbyint(x / delta) + zero_point, 0, qmax); x = (q - zero_point) * delta.
// This is the simulated (fp32) twin of the integer engine's activation quantization.
void fake_quant_f32(float *x, int64_t n, float delta, int zero_point, int qmax);
void fake_quant_f32_ref(float *x, int64_t n, float delta, int zero_point, int qmax);

}  // namespace vqm::kernels
