// oneDNN u8 x s8 matmul primitives for the integer engine: linear layers and batched products.
// Plain shapes, no ViT names; same conventions as the fp32 wrappers in matmul.h (create once,
// weights prepacked once, caller-owned scratchpad via scratchpad_mode::user).
//
// Everything quantization-related is baked into the primitive as a *static* attribute: oneDNN 2.6
// leaves its brgemm kernels for gemm:jit when scales are DNNL_RUNTIME_F32_VAL (ONEDNN-NOTES.md),
// and static src zero points are accepted by 2.6 matmul and keep brgemm too, so no argument
// besides the tensors (and the scratchpad) has to be bound at execution.
//
// Arguments to bind at execute():
//   DNNL_ARG_SRC        x / a (u8), wrap(pd.src_desc(), ptr)
//   DNNL_ARG_WEIGHTS    linear: pack_linear_weights_s8(...); batched: wrap(pd.weights_desc(), B)
//   DNNL_ARG_BIAS       linear with bias only: the output of prescale_linear_bias_u8s8(), NOT the
//                       raw bias (see below), wrap(pd.bias_desc(), ptr)
//   DNNL_ARG_DST        f32 or s8 (see S8Dst), wrap(pd.dst_desc(), ptr)
//   DNNL_ARG_SCRATCHPAD wrap(pd.scratchpad_desc(), ptr) (or a larger shared buffer)
//
// The primitive descriptors must be created with the OpenMP thread count they will run with:
// oneDNN sizes the scratchpad for omp_get_max_threads() at creation.
#pragma once
#include <cstdint>
#include <dnnl.hpp>
#include <vector>

#include "kernels/onednn/matmul.h"

namespace vqm::kernels::onednn {

// What an int8 product writes: f32 values v (the default), or, when `s8`, integer levels
// min(max(nearbyint(v + zero_point), -128), 127), v as for f32 and rounded to float first (the
// output scales then carry a grid's 1 / delta). oneDNN 2.x adds a destination zero point after
// the scales and the bias, in float, then saturates and converts half to even (the rounding rule
// of kernels.h): keep the zero point small, since the float sum v + zero_point has fewer bits
// below the point than v. It is static and common to all columns, the only kind 2.6 takes for a
// matmul destination. Saves the caller an f32 round trip when the next product wants levels.
struct S8Dst {
  bool s8 = false;
  int32_t zero_point = 0;  // in [-128, 127]; 0 when !s8
};

// y[M,N] f32 = out_scales[n] * sum_k (x[m,k] - x_zero_point) * w[n,k] + bias[n]
// (Epilogue::accumulate: y += that; Epilogue::gelu_erf: y = gelu(that), which oneDNN runs as a
// post-op costing about as much as a separate pass, see ONEDNN-NOTES.md).
// x: u8 [M,K] row-major, per-tensor zero point in [0, 255]; w: s8 [N,K] row-major (PyTorch
// nn.Linear layout), symmetric. out_scales: N values (per output channel, delta_x * delta_w[n])
// or 1 value (per tensor); every scale must be finite and non-zero (a channel whose weights are
// all zero can take any scale, e.g. 1). With dst.s8, y is int8 levels (S8Dst) and the epilogue may
// not be `accumulate`. Throws std::invalid_argument on bad arguments, dnnl::error when oneDNN
// refuses the configuration.
//
// Why the bias must be prescaled: oneDNN 2.x applies output scales *after* the bias,
// dst = scale * (acc + bias) (3.x changed this), so the bias bound as DNNL_ARG_BIAS must be
// bias[n] / out_scales[n]; prescale_linear_bias_u8s8() computes it. Passing the bias as a
// binary-add post-op instead would keep raw units but made the linear layers 10-35% slower
// (1 thread: 197x384x1152 0.24 -> 0.32 ms, 1576x384x1536 2.6 -> 3.5 ms), while the native bias
// is free.
//
// The packed weights layout depends on whether x_zero_point is 0 (oneDNN adds a per-column
// compensation sum_k w[n,k] only when it is not), so pack against the pd that will run.
dnnl::matmul::primitive_desc linear_u8s8_pd(int64_t m, int64_t k, int64_t n,
                                            const std::vector<float> &out_scales,
                                            int32_t x_zero_point, bool bias, Epilogue epilogue,
                                            S8Dst dst = {});

// bias[n] / out_scales[n or 0]: the DNNL_ARG_BIAS contents for a linear_u8s8_pd primitive built
// with the same out_scales. Result error is within ~1 ulp of bias[n] after oneDNN rescales it.
std::vector<float> prescale_linear_bias_u8s8(const float *bias, int64_t n,
                                             const std::vector<float> &out_scales);

// Reorders w [N,K] s8 row-major into a new memory of layout `want` (a linear_u8s8_pd
// weights_desc(), format_tag::any), including the zero-point compensation oneDNN appends to it when
// there is one.
dnnl::memory pack_linear_weights_s8(const int8_t *w_nk, int64_t n, int64_t k,
                                    const dnnl::memory::desc &want);

// c[b] f32 = scale * sum_k (a[b,m,k] - a_zero_point) * B[b][k,n] for b < batch.
// a: u8 [batch,M,K] dense, zero point in [0, 255]; B: s8 symmetric, stored [batch,K,N] or, when
// `b_is_nk`, [batch,N,K] (the product is a·Bᵀ, read through a transposed descriptor without a
// copy; this is how Kᵀ is consumed at full speed); c: f32 [batch,M,N] dense, or int8 levels with
// dst.s8 (S8Dst: then scale includes the grid's 1 / delta). B is an activation,
// so it is not prepacked: bind it with wrap(pd.weights_desc(), ptr). With a non-zero zero point
// oneDNN computes the column sums of B on the fly (in the scratchpad) at each execution.
dnnl::matmul::primitive_desc batched_u8s8_pd(int64_t batch, int64_t m, int64_t k, int64_t n,
                                             bool b_is_nk, float scale, int32_t a_zero_point,
                                             S8Dst dst = {});

// The quantizer's candidate products (quantizer/search_gemm.h): u8 x s8 matmuls with the raw
// int32 accumulators as output, no scales and no bias, so one primitive serves every candidate
// interval of a search (the scales change per candidate; oneDNN 2.6 bakes them in).
// acc[M,N] = sum_k x[m,k] * w[n,k], w bound as plain s8 [N,K] row-major with
// wrap(pd.weights_desc(), ptr): no zero point, because with one oneDNN wants its weights packed
// with a compensation, and 2.6 packs s8 with its reference reorder (measured: as slow as the
// product itself for a 384x1152 layer, once per candidate). Callers subtract zp * sum_k w[n,k].
dnnl::matmul::primitive_desc linear_u8s8s32_pd(int64_t m, int64_t k, int64_t n);
// acc[b] = sum_k (a[b,m,k] - a_zero_point) * B[b][k,n], B stored as in batched_u8s8_pd.
dnnl::matmul::primitive_desc batched_u8s8s32_pd(int64_t batch, int64_t m, int64_t k, int64_t n,
                                                bool b_is_nk, int32_t a_zero_point);

// True when this CPU's u8 x s8 products accumulate exactly in int32 (VNNI or AMX: vpdpbusd adds
// each 4-term dot product straight into int32). Without VNNI oneDNN's int8 kernels pair products
// in int16 (vpmaddubsw), which saturates for large u8 x s8 pairs, so they may be inexact there.
bool exact_int8_products();

}  // namespace vqm::kernels::onednn
