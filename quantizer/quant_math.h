// The quantizer's arithmetic as pure functions on raw arrays: uniform grids (fake quantization),
// the similarity / ranking / nuclear-norm measures of PTQ.md, bias-correction statistics, the
// mixed-precision Pareto frontier and q4/q6 weight packing. No ViT knowledge, no file I/O.
//
// Threading: every function is re-entrant; the larger loops use OpenMP internally, and results do
// not depend on the number of threads (reductions are done in a fixed order).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace vqm::quant {

// Element-wise loops below this size are not worth waking the OpenMP team for.
constexpr int64_t kParallelMin = int64_t{1} << 15;
// Throws vqm::Error(invalid_argument, what): the quantizer's check for bad arguments.
[[noreturn]] void bad_argument(const std::string &what);
// bad_argument naming fn unless both sizes are >= 0.
void check_sizes(const char *fn, int64_t a, int64_t b = 0);

// Activation grid: x_q = clamp(round(x / delta) + zero_point, 0, 2^bits - 1);
// x_hat = (x_q - zero_point) * delta. A "signed" symmetric grid is zero_point = 2^(bits-1); an
// "unsigned" grid (softmax) is zero_point = 0. Rounding is half to even (the default FP rounding
// mode, as std::nearbyint), and round(x / delta) is computed as round(x * (1 / delta)), the rule
// of kernels.h (quant_inverse) that the engines and the kernels' twins apply too.
struct ActGrid {
  int bits = 8;
  int zero_point = 128;
  float delta = 1.f;
  // > 0: the two-range grid of kernels.h (TwinCodes) for non-negative data (zero point 0): fine
  // levels below 2^(bits-1), coarse ones at multiples of 2^twin_shift up to 2^(bits-1+twin_shift)
  // (<= 255). Codes are fine-grid codes, levels code * delta; kernels' rule, the engines' too.
  int twin_shift = 0;
  // Non-empty: the chosen-level grid of kernels.h (CodeMap): 2^bits strictly increasing codes of
  // a fine 8-bit grid whose step and zero point are delta and zero_point (0..255); a value takes
  // the nearest of them (kernels' rule, the engines' too). bits <= 7, no twin_shift.
  std::vector<uint8_t> levels{};
};
// Throws vqm::Error(invalid_argument) unless 1 <= bits <= 16, 0 <= zero_point <= 2^bits - 1 (255
// with levels) and delta is finite and > 0, and a two-range or chosen-level grid is one kernels.h
// allows.
void check_grid(const ActGrid &g);
float fake_quant_act(float x, const ActGrid &g);
void fake_quant_act(const float *x, float *y, int64_t n, const ActGrid &g);  // y may equal x
// The same grid as integers, for candidate products on int8 matmuls (bits <= 8): codes[i] = the
// level plus the zero point, in [0, 2^bits - 1] (a u8 matmul source with that zero point);
// levels[i] = the level alone, x_hat / delta (an s8 operand without a zero point; throws unless
// every level of the grid fits in [-128, 127]). (code - zero_point) * delta and level * delta
// equal fake_quant_act bit for bit: one rounding rule.
void quantize_act_codes(const float *x, uint8_t *codes, int64_t n, const ActGrid &g);
void quantize_act_levels(const float *x, int8_t *levels, int64_t n, const ActGrid &g);

// Weights: symmetric signed per output channel (row of W [N,K]),
// q = clamp(round(w / delta), -2^(b-1), 2^(b-1) - 1), w_hat = q * delta. bits in [2, 8]; every
// delta finite and > 0 (an all-zero row still needs a positive delta; any one will do).
void quantize_weights(const float *w, int64_t n, int64_t k, const float *delta_per_row, int bits,
                      int8_t *q_out);
// One weight's level by the same rule, unchecked (bits in [2, 8], delta finite and > 0): for
// callers that round weight by weight, such as GPTQ.
int8_t weight_level(float w, float delta, int bits);
void fake_quant_weights(const float *w, int64_t n, int64_t k, const float *delta_per_row, int bits,
                        float *w_hat_out);

// The q-quantile of x (n > 0; linear interpolation between order statistics), in one pass with
// no copy for the far tails (q or 1 - q within 1/16), else by selection on a copy (quantile.cpp).
float quantile(const float *x, int64_t n, double q);

// Pearson correlation of two vectors (two-pass, double accumulation). Returns 1 if both are
// constant and equal (including n = 0), 0 if either is constant otherwise.
double pearson(const float *a, const float *b, int64_t n);
// (1/samples) * sum_i pearson(O_i, Ohat_i), each sample being `per_sample` consecutive floats.
double mean_pearson(const float *o, const float *o_hat, int64_t samples, int64_t per_sample);

// mean_pearson against a fixed reference O, prepared once, for scoring many O_hat candidates
// (what a search does): one pass over O_hat per call instead of two over both arrays. Equal to
// mean_pearson(o, o_hat, ...) up to ~1e-9 (the centred reference is kept in float); samples
// where either side is (nearly) constant fall back to the exact pearson(). Keeps a pointer to
// `o`: it must outlive this object.
struct ShiftedMoments;  // partial sums of PearsonReference (quant_math.cpp)
class PearsonReference {
 public:
  PearsonReference(const float *o, int64_t samples, int64_t per_sample);
  double mean(const float *o_hat) const;
  // The same for o_hat[r][c] = acc[r][c] * col_scale[c] + col_bias[c], rows of `cols` values
  // (per_sample a multiple of cols), computed in double from int32 accumulators: the exact
  // output of an integer candidate product, without materialising it in float.
  double mean(const int32_t *acc, int64_t cols, const double *col_scale,
              const double *col_bias) const;
  int64_t samples() const { return samples_; }
  int64_t per_sample() const { return per_sample_; }

 private:
  const float *o_;
  int64_t samples_, per_sample_;
  std::vector<float> centred_;  // o - mean of its sample
  std::vector<double> mean_, sum_centred_, var_;
  std::vector<char> constant_;
  double combine(const std::vector<ShiftedMoments> &part, int64_t chunks,
                 const std::function<double(int64_t)> &exact) const;
};

// Ranking loss of PTQ.md on a [rows, cols] row-major map (one row = one query of one head):
// sum over rows r and pairs (i < j) of max(theta - (Ahat_ri - Ahat_rj) * sign(A_ri - A_rj), 0),
// divided by the number of pairs evaluated. The normalisation makes the loss a mean per pair, so
// gamma keeps its meaning across token counts T and sampling densities (the raw sum grows as T^2
// and the paper's gamma is unpublished anyway). Pairs with A_ri == A_rj carry no order and are
// skipped (not counted) in both modes, so the sampled value estimates the full one without bias.
// pairs_per_row = 0: all pairs; otherwise that many pairs drawn per row (uniformly, with
// replacement) from std::mt19937_64(seed). No pairs at all (cols < 2, all ties) gives 0.
double ranking_loss(const float *a, const float *a_hat, int64_t rows, int64_t cols, float theta,
                    int pairs_per_row, uint64_t seed);
// The same sampled pairs, drawn once so that a search scores every candidate on identical pairs
// without redrawing: flat indices (hi, lo) into the map with a[hi] > a[lo]. ranking_loss with
// pairs_per_row > 0 equals ranking_loss_on_pairs(sample_ranking_pairs(...), ...).
std::vector<std::pair<int64_t, int64_t>> sample_ranking_pairs(const float *a, int64_t rows,
                                                              int64_t cols, int pairs_per_row,
                                                              uint64_t seed);
double ranking_loss_on_pairs(const std::vector<std::pair<int64_t, int64_t>> &pairs,
                             const float *a_hat, float theta);
// The same for a_hat = scale * acc (an integer candidate product), in double.
double ranking_loss_on_pairs(const std::vector<std::pair<int64_t, int64_t>> &pairs,
                             const int32_t *acc, double scale, float theta);

// Sum of singular values of the m x n row-major matrix: the square roots of the non-negative
// eigenvalues of the smaller Gram matrix (A A^T or A^T A), found in double by tridiagonal
// reduction and QL. Cost O(m n min(m,n) + min(m,n)^3): meant for per-head maps and per-sample
// features (min(m, n) up to a few hundred).
double nuclear_norm(const float *a, int64_t m, int64_t n);

// Per-column mean of (o_hat - o) over `rows` rows of `cols` columns: the expected output error
// used by bias correction (subtract it from the bias).
std::vector<float> mean_output_error(const float *o, const float *o_hat, int64_t rows,
                                     int64_t cols);

// Mixed precision (ZeroQ-style Pareto frontier). modules[m] lists that module's candidate options;
// cost is in model bits (e.g. params * bits), sensitivity is Omega_l(b) of PTQ.md.
struct BitOption {
  int bits;
  double cost;
  double sensitivity;
};
// For each module, the index of the chosen option minimising sum(sensitivity) subject to
// sum(cost) <= budget (with a relative slack of 1e-9, so a budget computed as params * 4.0 admits
// uniform 4 bits despite rounding). Exact: the frontier is built by merging modules one by one
// and pruning dominated points. Throws vqm::Error(invalid_argument) when even the cheapest
// configuration exceeds the budget, a module has no options or a number is not finite, and
// vqm::Error(limit) if the frontier would exceed 2^22 points (far above 24 modules x 5 options,
// whose costs share few distinct sums).
std::vector<int> pareto_choose(const std::vector<std::vector<BitOption>> &modules, double budget);
// The whole frontier, for reports: (cost, total sensitivity), ascending cost, strictly decreasing
// sensitivity.
std::vector<std::pair<double, double>> pareto_frontier(
    const std::vector<std::vector<BitOption>> &modules);

// Packing of signed b-bit integers in rows of k values, K innermost, each row padded to whole
// bytes (docs/vqm-format.md, "Packed q4 / q6"; row size from vqm::packed_row_bytes):
// q4: two values per byte, element 2j in the low nibble, 2j+1 in the high nibble (two's
// complement 4-bit); q6: little-endian bit stream, value j occupies row bits [6j, 6j+6).
// bits 8: plain copy. Unused bits are zero. Throws invalid_argument for other bit widths or a value
// outside [-2^(b-1), 2^(b-1) - 1] (naming its row and column).
std::vector<uint8_t> pack_rows(const int8_t *q, int64_t rows, int64_t k, int bits);
void unpack_rows(const uint8_t *packed, int64_t rows, int64_t k, int bits, int8_t *q_out);
// Bytes of one packed row (k for bits 8).
int64_t packed_row_size(int64_t k, int bits);

}  // namespace vqm::quant
