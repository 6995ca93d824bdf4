// Error-feedback weight rounding (GPTQ, Frantar et al. 2023) on raw arrays, a stage after the
// interval search: the per-channel deltas stay the search's, only the rounding of each weight to
// a level of its grid changes, so the result runs on the same u8 x s8 kernels. No ViT knowledge.
//
// Rounding every weight to its nearest level minimises |W - W_hat| but not the output error
// |X (W - W_hat)^T|: with correlated inputs, the error of one column can be compensated by the
// columns not yet rounded. GPTQ rounds the columns in turn and spreads each one's error over the
// rest through the inverse Hessian H^-1, H = X^T X of the layer's calibration inputs.
#pragma once
#include <cstdint>
#include <vector>

namespace vqm::quant {

struct GptqOptions {
  double damp = 0.01;     // added to H's diagonal, times its mean (GPTQ's percdamp)
  bool act_order = true;  // columns in decreasing order of H's diagonal (GPTQ's act_order)
};

// H = x^T x / rows, x [rows, k] row-major (float products through oneDNN's sgemm, the sum in
// float over rows: the Hessian only weighs the rounding decisions).
std::vector<double> input_hessian(const float *x, int64_t rows, int64_t k);

// The weights whose outputs on the quantized inputs x_hat best match w's on the reference inputs
// x (the fp32 model's, on the same images): argmin |x W^T - x_hat W*^T|^2 + lambda |W* - w|^2,
// lambda = damp * mean diag(h). h = input_hessian(x_hat), m = x^T x_hat / rows
// (cross_hessian(x, x_hat)). Equals w when x_hat == x. Rounding W* by gptq_round with h then
// lowers the error against the fp32 model's output, upstream quantization errors included,
// instead of against w's output on the already-perturbed inputs (after GPTAQ, Li et al. 2025).
std::vector<double> cross_hessian(const float *x, const float *x_hat, int64_t rows, int64_t k);
std::vector<float> output_matched_weights(const float *w, int64_t n, int64_t k,
                                          const std::vector<double> &h,
                                          const std::vector<double> &m, double damp);

// Rounds w [n, k] to the levels of its per-row grids (deltas, bits: quantize_weights' rule and
// clamp) with error feedback through h [k, k] (input_hessian). q_out [n, k]: the levels.
// Implemented as Babai's nearest-plane form of GPTQ (Chen et al. 2024), one Cholesky factor of H
// instead of GPTQ's Cholesky, inverse and second Cholesky; tests/quant/gptq_test.cpp checks it
// against the textbook algorithm. Throws vqm::Error(invalid_argument) on bad arguments or an H
// that is not positive definite even after damping.
void gptq_round(const float *w, int64_t n, int64_t k, const float *delta_per_row, int bits,
                const std::vector<double> &h, const GptqOptions &opt, int8_t *q_out);

// Output error energy of the levels q [n, k] against w under h: trace((W - W_hat) H (W -
// W_hat)^T) / n, W_hat = q * delta. The quantity GPTQ lowers; reported per layer.
double weight_output_error(const float *w, const int8_t *q, int64_t n, int64_t k,
                           const float *delta_per_row, const std::vector<double> &h);

}  // namespace vqm::quant
