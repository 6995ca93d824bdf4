// Per-layer quantization-interval search of PTQ.md (Liu et al. 2021) on raw calibration arrays:
// similarity-aware search for linear layers, ranking-aware search for the attention products,
// and the min/max and percentile baselines. No ViT knowledge: the caller supplies each layer's
// captured input, weights and the zero points it chose.
//
// Cost: every candidate is one fp32 oneDNN GEMM over the (subsampled) calibration rows plus a
// Pearson pass; a linear search runs at most R * 2 * C GEMMs (+ C + 1 for the per-channel
// refinement; scans that cannot change anything are skipped, see search.cpp).
// The primitives are created once per problem and use all OpenMP threads; nothing is printed.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "quantizer/quant_math.h"

namespace vqm::quant {

struct SearchOptions {
  float alpha = 0.5f, beta = 1.2f;  // candidate range [alpha*D0, beta*D0]
  int candidates = 100;             // C (C = 1: the single candidate alpha*D0)
  int rounds = 2;                   // R alternations (0: initial deltas only)
  bool per_channel = true;          // weights: one delta per output channel (else one per tensor)
  float gamma = 0.1f, theta = 0.f;  // ranking loss weight and margin
  int rank_pairs = 64;              // pairs per row for the ranking loss (0 = all)
  uint64_t seed = 0;
  int max_rows = 4096;  // subsample calibration rows (seeded, whole samples kept); 0 = all rows
  // After the alternating search, give each output channel its own factor from the C candidates
  // by per-column squared error (only with per_channel). See search_linear.
  bool refine_channels = true;
  // Ours: activations also get a start from this quantile of the data (the (1-p)-quantile for the
  // lower side) in place of max/min; the search is centred on whichever start scores better.
  // Without it one outlier 40x the typical magnitude leaves [alpha, beta] * max far from any
  // useful clipping at 4 bits, and a plain percentile baseline beats the search. 1 = max only
  // (the paper). similarity_init is always the max-based start.
  float init_percentile = 0.9999f;
  // Score candidates on int8 products of their integer levels where the CPU makes them exact
  // (quantizer/search_gemm.h): the same objective up to float rounding, ~3x faster. Off: the fp32
  // products of the fake-quantized operands (the reference path, and the only one without VNNI).
  bool int8_candidates = true;
  // Coarse-to-fine candidate scan (ours): every coarse_stride-th of the C candidates (and the
  // last), then all candidates between the best one's coarse neighbours, in every alternation
  // and per channel in the refinement; about C / stride + 2 * (stride - 1) products per scan
  // instead of C. The stride is reduced so that at least 25 candidates stay in the coarse pass
  // (C < 49: the full grid). 1 = the full grid (the paper). vit-quantize defaults to 4
  // (PtqOptions), where docs/quantization.md measures it.
  int coarse_stride = 1;
  // Ours: below 8 bits, a linear layer's input may take chosen levels instead of a uniform grid
  // (quantizer/codebook.h), kept only where the objective says so. Only for inputs the engines
  // read as u8 codes (the caller knows which).
  bool codebook = false;
};

// One linear layer y = x W^T + b. x: [samples * tokens, k] (tokens rows per calibration sample);
// w: [n, k]; bias may be null. x_zero_point: chosen by the caller (2^(b-1) for signed data; for
// data with a small negative tail such as GELU outputs the caller passes its own).
struct LinearProblem {
  const float *x;
  int64_t samples, tokens, k;
  const float *w;
  const float *bias;
  int64_t n;
  int w_bits, x_bits;
  int x_zero_point;
};

struct LinearResult {
  std::vector<float> w_delta;  // n entries (per channel) or 1
  ActGrid x_grid;
  double similarity_init;  // mean_pearson at the initial deltas (max-based)
  double similarity;       // after search
  // n entries: mean_output_error(o, o_hat) at the final deltas (caller subtracts from bias).
  std::vector<float> bias_correction;
  std::vector<std::pair<float, double>> curve;  // last round's (x delta, objective) pairs
  // Additions:
  double similarity_corrected = 0;  // mean_pearson once bias_correction is applied to o_hat
  bool channels_refined = false;    // the per-channel refinement was kept (see search_linear)
  int64_t rows_used = 0;            // calibration rows the objective was measured on
  bool percentile_start = false;    // the x search was centred on the percentile start
};

// Objective: mean over samples of Pearson(O_i, Ohat_i), O_i the sample's [tokens, n] fp32 output
// (with bias), Ohat using fake-quant x and w and the same bias.
// Initialisation (from all rows, so an outlier in a sample left out by max_rows still counts):
// weights D0 = max|w_row| / (2^(b-1) - 0.5) per channel (or per tensor); activations
// D0 = max(max(x) / (2^b - 1 - zp), -min(x) / zp), each term only where its denominator is > 0;
// the same formula on the init_percentile quantiles gives the alternative start, kept if better.
// Alternates R rounds over C candidate factors f in [alpha, beta]: one shared f times every
// channel's D0 with x fixed, then x's factor with w fixed; a candidate replaces the current delta
// only if it strictly improves the objective, so similarity >= similarity_init (and >= the
// percentile baseline at init_percentile). Then the per-channel refinement (kept only if it does
// not lower the objective; reasons in search.cpp) and the bias-correction statistics. The
// search is measured on at most max_rows rows (whole samples drawn with the seed).
// Throws vqm::Error(invalid_argument) on bad shapes, bits, zero points, options or non-finite data.
LinearResult search_linear(const LinearProblem &p, const SearchOptions &opt);

// Attention products: out = out_scale * a . b, batched. a: [batch, m, k]; b: [batch, k, n], or
// [batch, n, k] when b_is_nk (product a . b^T, e.g. Q.K^T with out_scale = 1/sqrt(d)).
// batch = samples * heads: each sample's output is its heads' [heads, m, n] block, the unit of
// Pearson grouping. Grids use the given zero points (Q, K, V signed; softmax output unsigned).
struct MatmulProblem {
  const float *a;
  const float *b;
  int64_t batch, m, k, n;
  bool b_is_nk;
  int64_t samples;
  int a_bits, b_bits;
  int a_zero_point, b_zero_point;
  float out_scale;
  // > 0: a takes the two-range grid with this shift (ActGrid::twin_shift; a_zero_point 0), its
  // initial delta from the grid's top code 2^(a_bits-1+shift) instead of 2^a_bits - 1.
  int a_twin_shift = 0;
};

struct MatmulResult {
  ActGrid a_grid, b_grid;
  double similarity_init, similarity, rank_loss_init, rank_loss;
  std::vector<std::pair<float, double>> curve;  // last round's (a delta, objective) pairs
  // Additions:
  std::vector<std::pair<float, double>> curve_b;  // last round's (b delta, objective) pairs
  int64_t rows_used = 0;  // samples kept * m (the subsampling unit, as for linear layers)
  bool percentile_start_a = false, percentile_start_b = false;
};

// use_ranking: objective = mean_pearson - gamma * ranking_loss(out, out_hat) (PTQ.md, ranking
// over each output row, i.e. one query of one head), else mean_pearson only. rank_loss fields are
// reported either way. Alternates a's delta (b fixed) and b's delta (a fixed) like search_linear.
MatmulResult search_matmul(const MatmulProblem &p, const SearchOptions &opt, bool use_ranking);

// Baselines (--method minmax / percentile): deltas without any search. percentile = 1: min/max;
// e.g. 0.9999: activations use the 99.99th percentile of x for the upper side and the 0.01th for
// the lower side, in place of max and min, in the D0 formula above. Weights always use max|w|
// (clipping a few hundred weights per channel by percentile is not what the baseline means).
// per_channel: one weight delta per output channel (else one per tensor, as --per-tensor asks).
// similarity_init == similarity; bias_correction is filled; curve is empty.
LinearResult minmax_linear(const LinearProblem &p, double percentile, bool per_channel = true);
MatmulResult minmax_matmul(const MatmulProblem &p, double percentile);

}  // namespace vqm::quant
