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

// This CPU's per-core L2 cache in bytes as the OS reports it (sysconf), or 1 MiB when it reports
// none; held to [256 KiB, 4 MiB] so that a wrong report cannot make a caller's tiles degenerate.
int64_t l2_cache_bytes();

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

// The activation rounding rule, one definition for the quantizer, both engines and the reference
// twins: the level of x on a grid of step delta is nearbyint(x * quant_inverse(delta)), the
// reciprocal rounded to float once per grid. A multiply rather than a true division: x / delta
// rounds differently from x * (1 / delta) for a few x, so every path must use the same one, and
// without the division the quantizing vector kernels run 7-11 % faster (docs/performance.md).
inline float quant_inverse(float delta) {
  return 1.0f / delta;
}

// In place fake quantization on an affine b-bit grid held in [0, qmax] (qmax = 2^b - 1):
// q = clamp(nearbyint(x * quant_inverse(delta)) + zero_point, 0, qmax); x = (q - zero_point) *
// delta. This is the simulated (fp32) twin of the integer engine's activation quantization.
void fake_quant_f32(float *x, int64_t n, float delta, int zero_point, int qmax);
void fake_quant_f32_ref(float *x, int64_t n, float delta, int zero_point, int qmax);

// Two-range unsigned grid ("twin uniform", Yuan et al., PTQ4ViT) for non-negative data whose
// mass sits near zero, such as attention probabilities: fine levels c * delta for codes c below
// `fine`, coarse levels at the multiples of 2^shift from `fine` up to `qmax`. A value takes its
// fine code c = clamp(nearbyint(v * quant_inverse(delta)), 0, 255) (the uniform rule, zero point
// 0); a code from `fine` up is then rounded, half to even, to a multiple of 2^shift, at most qmax.
// Codes stay fine-grid codes, so the bytes are a u8 matmul source with scale delta and zero point
// 0: such a grid costs the integer engine one byte pass after the quantizing kernel. b bits: fine =
// 2^(b-1), qmax = 2^(b-1+shift), 1 <= shift <= b-1 (no gap between the ranges), and qmax <= 255: at
// most 2^b distinct levels.
struct TwinCodes {
  int32_t fine, shift, qmax;
};
// In place on fine codes (as quantize/softmax_quant with QuantGrid{delta, 0, 255} wrote them).
void coarsen_codes(uint8_t *codes, int64_t n, const TwinCodes &t);
// The simulated twin: x = (twin code of x) * delta, equal to coarsen_codes after quantizing.
void fake_quant_twin_f32(float *x, int64_t n, float delta, const TwinCodes &t);

// A grid of chosen levels ("codebook", ours): at most 2^b of the 256 codes of a fine 8-bit grid
// (step delta, zero point z), placed where the data is rather than evenly. A value takes its fine
// code by the uniform rule (q = clamp(nearbyint(x * quant_inverse(delta)) + z, 0, 255)), then the
// nearest chosen code, a tie going to the lower one. Codes stay fine-grid codes, so the bytes are
// a u8 matmul source with scale delta and zero point z: the integer engine pays one byte lookup
// after the quantizing kernel. CodeMap is that second step for every fine code.
struct CodeMap {
  uint8_t to[256];
};
// levels: `count` strictly increasing codes (1 <= count <= 256).
CodeMap nearest_code_map(const uint8_t *levels, int count);
// In place on fine codes (as quantize/layernorm_quant/gelu_quant with QuantGrid{delta, z, 255}
// wrote them). The fast version looks up 64 bytes at a time (AVX512_VBMI byte permutes): a byte
// at a time, the lookup cost as much as the LayerNorm it follows. Bit-identical to the twin.
void map_codes(uint8_t *codes, int64_t n, const CodeMap &m);
void map_codes_ref(uint8_t *codes, int64_t n, const CodeMap &m);
// The simulated twin: x = (m.to[fine code of x] - z) * delta, equal to map_codes after quantizing.
void fake_quant_mapped_f32(float *x, int64_t n, float delta, int zero_point, const CodeMap &m);

}  // namespace vqm::kernels

namespace vqm::kernels {

// Fused element-wise kernels of the integer path: each computes its float result exactly as the
// matching f32 kernel above does, then writes it as a level on an affine b-bit grid held in
// [0, qmax] (qmax = 2^b - 1, b in 2..8):
//   q = clamp(nearbyint(v * quant_inverse(delta)) + zero_point, 0, qmax)
// which is fake_quant_f32's expression term for term (round-half-even under the default rounding
// mode), so an integer activation dequantizes, as (q - zero_point) * delta, to
// exactly the value the simulated (fake-quant) forward computes. Fusing saves writing and
// re-reading the f32 tensor, which is most of the cost of these memory-bound passes.
//
// Outputs are one byte per element: uint8 q for "source" operands of u8 x s8 matmuls, or, with
// store_signed, int8 (q - zero_point) for operands that oneDNN takes as s8 (a symmetric grid,
// zero_point = 2^(b-1), where q - zero_point always fits). Preconditions: delta finite and > 0,
// 1 <= qmax <= 255, 0 <= zero_point <= qmax; a signed store of a level outside [-128, 127] (only
// possible for an 8-bit grid with zero_point != 128) saturates. NaN inputs give level 0 rather
// than undefined behaviour, but are not otherwise meaningful.
//
// The AVX-512 versions reproduce the AVX-512 f32 kernels operation for operation, so on either
// dispatch path e.g. layernorm_quant(x) == quantize(layernorm_f32(x)) bit for bit. Against the
// double-precision `_ref` twins, layernorm/softmax/gelu/quick_gelu may land one level apart where a
// value sits within float rounding of a level boundary; quantize is bit-identical.
struct QuantGrid {
  float delta;
  int32_t zero_point;
  int32_t qmax;
  bool store_signed;  // write int8(q - zero_point) instead of uint8(q)
};

// LayerNorm (as layernorm_f32) then quantize: y is rows x cols bytes. x may not alias y.
void layernorm_quant(const float *x, void *y, int64_t rows, int64_t cols, const float *gamma,
                     const float *beta, float eps, const QuantGrid &g);
void layernorm_quant_ref(const float *x, void *y, int64_t rows, int64_t cols, const float *gamma,
                         const float *beta, float eps, const QuantGrid &g);

// Plain quantize of n floats into n bytes.
void quantize(const float *x, void *y, int64_t n, const QuantGrid &g);
void quantize_ref(const float *x, void *y, int64_t n, const QuantGrid &g);

// GELU (exact erf form, as gelu_erf_f32) then quantize: the requantization after fc1.
void gelu_quant(const float *x, void *y, int64_t n, const QuantGrid &g);
void gelu_quant_ref(const float *x, void *y, int64_t n, const QuantGrid &g);

// QuickGELU, x*sigmoid(1.702x) = x / (1 + exp(-1.702 x)), as CLIP uses, then quantize. It has no
// f32 twin above: the AVX-512 version's float value is within a few ulp of the exact one (tested
// to 1e-6 relative on [-50, 12]) down to x = -52, below which the exact value (under 2e-37 in
// magnitude, a denormal or zero in float) is returned as -0, the zero point on any grid with delta
// above 1e-36. From x = 10 up the value is x itself; -inf gives -0 and +inf the top level, on both
// paths.
void quick_gelu_quant(const float *x, void *y, int64_t n, const QuantGrid &g);
void quick_gelu_quant_ref(const float *x, void *y, int64_t n, const QuantGrid &g);

// Row softmax of scale * x (as softmax_f32; scale >= 0) then quantize: the attention
// probabilities, normally on an unsigned grid. x is not modified.
void softmax_quant(const float *x, void *y, int64_t rows, int64_t cols, float scale,
                   const QuantGrid &g);
void softmax_quant_ref(const float *x, void *y, int64_t rows, int64_t cols, float scale,
                       const QuantGrid &g);

// Byte permutations for levels a matmul already wrote as int8 b (oneDNN rounds, and adds a shift,
// itself): each byte is copied as clamp(b, lo, hi) + add, the clamp in int8 and the add modulo
// 256. The clamp is the part of a grid an int8 destination cannot express (it saturates to
// [-128, 127] only, a b-bit grid has 2^b levels); the add moves the levels where the consumer
// wants them: a u8 grid level q = b + add, or an int8 operand q - zero_point. Precondition:
// lo <= hi. Bit-identical to the `_ref` twins.
struct ByteClamp {
  int8_t lo, hi;
  uint8_t add;
};

// merge_heads_f32's permutation of bytes: src [B, H, T, D] -> dst [B, T, H, D], clamped.
void merge_heads_s8(const int8_t *src, uint8_t *dst, int64_t b, int64_t h, int64_t t, int64_t d,
                    const ByteClamp &c);
void merge_heads_s8_ref(const int8_t *src, uint8_t *dst, int64_t b, int64_t h, int64_t t, int64_t d,
                        const ByteClamp &c);

// split_heads_f32's permutation of bytes: src [B, T, S, H, D]; dst[s] is a dense [B, H, T, D]
// block of group s, each byte clamped with clamps[s] (groups such as q, k and v have grids, and
// consumers, of their own). With dst_t, dst[s] is [B, H, dst_t[s], D] (dst_t[s] >= t) and the
// call fills its tokens [0, t): offset dst[s] by t0 * D to write a token range [t0, t0 + t) of a
// longer sequence, as a caller that splits one sequence's rows between threads does.
void split_heads_s8(const int8_t *src, uint8_t *const *dst, const ByteClamp *clamps, int64_t b,
                    int64_t t, int64_t s, int64_t h, int64_t d, const int64_t *dst_t = nullptr);
void split_heads_s8_ref(const int8_t *src, uint8_t *const *dst, const ByteClamp *clamps, int64_t b,
                        int64_t t, int64_t s, int64_t h, int64_t d, const int64_t *dst_t = nullptr);

}  // namespace vqm::kernels
