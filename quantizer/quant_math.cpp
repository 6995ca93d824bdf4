#include "quantizer/quant_math.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>

#include "kernels/kernels.h"
#include "quantizer/multiversion.h"
#include "runtime/io/error.h"
#include "runtime/io/tensor.h"

namespace vqm::quant {

// Shared with search.cpp and nuclear_norm.cpp (declared in quant_math.h).
void bad_argument(const std::string &what) {
  fail(ErrorCode::invalid_argument, what);
}

void check_sizes(const char *fn, int64_t a, int64_t b) {
  if (a < 0 || b < 0)
    bad_argument(std::string(fn) + ": negative size (" + std::to_string(a) + ", " +
                 std::to_string(b) + ")");
}

namespace {

// Chunk of an element-wise loop handed to one thread (a few L1-sized blocks).
constexpr int64_t kChunk = int64_t{1} << 14;

// Round half to even of v, |v| <= 2^22, in the default rounding mode: adding 1.5 * 2^23 lands in
// [2^23, 2^24) where the float spacing is exactly 1, so the addition itself rounds to an integer.
// Unlike std::nearbyint this compiles to two vector adds (the baseline x86-64 target has no
// roundps), which matters for the ~10^9 elements a search quantizes. Callers clamp first.
inline float round_half_even_small(float v) {
  constexpr float kMagic = 12582912.f;  // 1.5 * 2^23
  return (v + kMagic) - kMagic;
}

// x * inv (inv = kernels::quant_inverse(delta): the one rounding rule) clamped to [lo, hi]
// (integers) and rounded: equal to clamp(round(x * inv), lo, hi) because rounding is monotone and
// fixes integers. The result is the integer level as a float.
inline float quant_level(float x, float inv, float lo, float hi) {
  const float v = std::min(std::max(x * inv, lo), hi);
  return round_half_even_small(v);
}

// y = quant_level(x) * delta over a span. Every clone computes bit-identical results (multiply,
// min/max, add, multiply: no contraction possible), so the ISA only changes the speed.
VQM_MULTIVERSION void fake_quant_span(const float *x, float *y, int64_t n, float delta, float lo,
                                      float hi) {
  const float inv = kernels::quant_inverse(delta);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = quant_level(x[i], inv, lo, hi) * delta;
}

struct Sums {
  double sa = 0, sb = 0;
  float amin = 0, amax = 0, bmin = 0, bmax = 0;
};

// First Pearson pass: sums and ranges. omp simd fixes one summation order per build and ISA
// clone, so results are reproducible on a machine.
VQM_MULTIVERSION Sums pearson_sums(const float *a, const float *b, int64_t n) {
  double sa = 0, sb = 0;
  float amin = a[0], amax = a[0], bmin = b[0], bmax = b[0];
#pragma omp simd reduction(+ : sa, sb) reduction(min : amin, bmin) reduction(max : amax, bmax)
  for (int64_t i = 0; i < n; ++i) {
    sa += a[i];
    sb += b[i];
    amin = std::min(amin, a[i]);
    amax = std::max(amax, a[i]);
    bmin = std::min(bmin, b[i]);
    bmax = std::max(bmax, b[i]);
  }
  Sums r;
  r.sa = sa, r.sb = sb, r.amin = amin, r.amax = amax, r.bmin = bmin, r.bmax = bmax;
  return r;
}

struct Moments {
  double ab = 0, aa = 0, bb = 0;
};

// Second pass: centred products.
VQM_MULTIVERSION Moments centred_products(const float *a, const float *b, int64_t n, double ma,
                                          double mb) {
  double sab = 0, saa = 0, sbb = 0;
#pragma omp simd reduction(+ : sab, saa, sbb)
  for (int64_t i = 0; i < n; ++i) {
    const double da = a[i] - ma, db = b[i] - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  Moments m;
  m.ab = sab, m.aa = saa, m.bb = sbb;
  return m;
}

void check_weight_args(const char *fn, const float *w, int64_t n, int64_t k,
                       const float *delta_per_row, int bits, const void *out) {
  check_sizes(fn, n, k);
  if (bits < 2 || bits > 8)
    bad_argument(std::string(fn) + ": bits must be in [2, 8], got " + std::to_string(bits));
  if ((n > 0 && !delta_per_row) || (n * k > 0 && (!w || !out)))
    bad_argument(std::string(fn) + ": null pointer");
  for (int64_t r = 0; r < n; ++r) {
    const float d = delta_per_row[r];
    if (!(std::isfinite(d) && d > 0.f))
      bad_argument(std::string(fn) + ": delta of row " + std::to_string(r) + " is " +
                   std::to_string(d) + " (must be finite and > 0)");
  }
}

// Sum of f(block) over fixed blocks of `n` items, added in block order: the same result for any
// thread count (an OpenMP reduction would combine partial sums in an unspecified order).
template <class F>
double ordered_block_sum(int64_t n, int64_t block, F &&f) {
  const int64_t blocks = (n + block - 1) / block;
  std::vector<double> partial(static_cast<size_t>(blocks));
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) partial[b] = f(b * block, std::min(n, (b + 1) * block));
  double s = 0;
  for (double p : partial) s += p;
  return s;
}

}  // namespace

void check_grid(const ActGrid &g) {
  if (g.bits < 1 || g.bits > 16)
    bad_argument("activation grid: bits must be in [1, 16], got " + std::to_string(g.bits));
  const int qmax = g.levels.empty() ? (1 << g.bits) - 1 : 255;
  if (g.zero_point < 0 || g.zero_point > qmax)
    bad_argument("activation grid: zero point " + std::to_string(g.zero_point) + " outside [0, " +
                 std::to_string(qmax) + "]");
  if (!(std::isfinite(g.delta) && g.delta > 0.f))
    bad_argument("activation grid: delta " + std::to_string(g.delta) + " must be finite and > 0");
  if (g.twin_shift != 0 && (g.zero_point != 0 || g.twin_shift < 1 || g.twin_shift > g.bits - 1 ||
                            g.bits - 1 + g.twin_shift > 7))
    bad_argument("activation grid: twin shift " + std::to_string(g.twin_shift) + " with " +
                 std::to_string(g.bits) + " bits and zero point " + std::to_string(g.zero_point));
  if (!g.levels.empty() &&
      (g.bits > 7 || g.twin_shift != 0 || g.levels.size() != (size_t{1} << g.bits) ||
       std::adjacent_find(g.levels.begin(), g.levels.end(), std::greater_equal<>()) !=
           g.levels.end()))
    bad_argument("activation grid: " + std::to_string(g.levels.size()) + " chosen levels for " +
                 std::to_string(g.bits) + " bits must be 2^bits increasing codes (bits <= 7)");
}

namespace {
kernels::TwinCodes twin_codes(const ActGrid &g) {
  return kernels::TwinCodes{1 << (g.bits - 1), g.twin_shift, 1 << (g.bits - 1 + g.twin_shift)};
}
// The fine grid a two-range grid quantizes on first: every byte code, same delta.
ActGrid fine_grid(const ActGrid &g) {
  ActGrid f;
  f.bits = 8;
  f.zero_point = 0;
  f.delta = g.delta;
  return f;
}
kernels::CodeMap code_map(const ActGrid &g) {
  return kernels::nearest_code_map(g.levels.data(), static_cast<int>(g.levels.size()));
}
}  // namespace

float fake_quant_act(float x, const ActGrid &g) {
  check_grid(g);
  if (!g.levels.empty()) {
    kernels::fake_quant_mapped_f32(&x, 1, g.delta, g.zero_point, code_map(g));
    return x;
  }
  if (g.twin_shift) {
    kernels::fake_quant_twin_f32(&x, 1, g.delta, twin_codes(g));
    return x;
  }
  const float lo = static_cast<float>(-g.zero_point);
  const float hi = static_cast<float>((1 << g.bits) - 1 - g.zero_point);
  return quant_level(x, kernels::quant_inverse(g.delta), lo, hi) * g.delta;
}

void fake_quant_act(const float *x, float *y, int64_t n, const ActGrid &g) {
  check_grid(g);
  check_sizes("fake_quant_act", n);
  if (n > 0 && (!x || !y)) bad_argument("fake_quant_act: null pointer");
  if (!g.levels.empty()) {
    if (y != x) std::copy(x, x + n, y);
    const kernels::CodeMap m = code_map(g);
    const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t c = 0; c < chunks; ++c)
      kernels::fake_quant_mapped_f32(y + c * kChunk, std::min(kChunk, n - c * kChunk), g.delta,
                                     g.zero_point, m);
    return;
  }
  if (g.twin_shift) {
    if (y != x) std::copy(x, x + n, y);
    const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t c = 0; c < chunks; ++c)
      kernels::fake_quant_twin_f32(y + c * kChunk, std::min(kChunk, n - c * kChunk), g.delta,
                                   twin_codes(g));
    return;
  }
  const float lo = static_cast<float>(-g.zero_point);
  const float hi = static_cast<float>((1 << g.bits) - 1 - g.zero_point);
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t c = 0; c < chunks; ++c)
    fake_quant_span(x + c * kChunk, y + c * kChunk, std::min(kChunk, n - c * kChunk), g.delta, lo,
                    hi);
}

namespace {
// Levels of the grid (plus `offset`) as bytes: the loop of fake_quant_span without the final
// multiply, so a code dequantizes to fake_quant_act's value exactly. Two functions, not a
// template: GCC does not clone templates for target_clones.
VQM_MULTIVERSION void level_span(const float *x, uint8_t *y, int64_t n, float delta, float lo,
                                 float hi, float offset) {
  const float inv = kernels::quant_inverse(delta);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i)
    y[i] = static_cast<uint8_t>(static_cast<int>(quant_level(x[i], inv, lo, hi) + offset));
}
VQM_MULTIVERSION void level_span(const float *x, int8_t *y, int64_t n, float delta, float lo,
                                 float hi, float offset) {
  const float inv = kernels::quant_inverse(delta);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i)
    y[i] = static_cast<int8_t>(static_cast<int>(quant_level(x[i], inv, lo, hi) + offset));
}

template <class T>
void quantize_levels(const char *fn, const float *x, T *y, int64_t n, const ActGrid &g,
                     float offset) {
  check_grid(g);
  check_sizes(fn, n);
  if (n > 0 && (!x || !y)) bad_argument(std::string(fn) + ": null pointer");
  const float lo = static_cast<float>(-g.zero_point);
  const float hi = static_cast<float>((1 << g.bits) - 1 - g.zero_point);
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t c = 0; c < chunks; ++c)
    level_span(x + c * kChunk, y + c * kChunk, std::min(kChunk, n - c * kChunk), g.delta, lo, hi,
               offset);
}
}  // namespace

void quantize_act_codes(const float *x, uint8_t *codes, int64_t n, const ActGrid &g) {
  if (g.bits > 8) bad_argument("quantize_act_codes: bits must be <= 8");
  if (!g.levels.empty()) {  // as the integer engine: the fine grid, then the nearest level
    check_grid(g);
    ActGrid f = fine_grid(g);
    f.zero_point = g.zero_point;
    quantize_levels("quantize_act_codes", x, codes, n, f, static_cast<float>(g.zero_point));
    kernels::map_codes(codes, n, code_map(g));
    return;
  }
  if (g.twin_shift) {  // as the integer engine: the fine grid, then coarsened (kernels.h)
    check_grid(g);
    quantize_levels("quantize_act_codes", x, codes, n, fine_grid(g), 0.f);
    kernels::coarsen_codes(codes, n, twin_codes(g));
    return;
  }
  quantize_levels("quantize_act_codes", x, codes, n, g, static_cast<float>(g.zero_point));
}

void quantize_act_levels(const float *x, int8_t *levels, int64_t n, const ActGrid &g) {
  if (g.twin_shift || !g.levels.empty())
    bad_argument("quantize_act_levels: a two-range or chosen-level grid has no s8 levels");
  if (g.bits > 8 || g.zero_point > 128 || (1 << g.bits) - 1 - g.zero_point > 127)
    bad_argument("quantize_act_levels: the levels of a " + std::to_string(g.bits) +
                 "-bit grid with zero point " + std::to_string(g.zero_point) +
                 " do not fit in int8");
  quantize_levels("quantize_act_levels", x, levels, n, g, 0.f);
}

namespace {
// The levels of a symmetric b-bit weight grid, [-2^(b-1), 2^(b-1) - 1], as floats for quant_level.
struct WeightRange {
  float lo, hi;
  explicit WeightRange(int bits)
      : lo(static_cast<float>(-(1 << (bits - 1)))), hi(static_cast<float>((1 << (bits - 1)) - 1)) {}
};
}  // namespace

int8_t weight_level(float w, float delta, int bits) {
  const WeightRange range(bits);
  return static_cast<int8_t>(quant_level(w, kernels::quant_inverse(delta), range.lo, range.hi));
}

void quantize_weights(const float *w, int64_t n, int64_t k, const float *delta_per_row, int bits,
                      int8_t *q_out) {
  check_weight_args("quantize_weights", w, n, k, delta_per_row, bits, q_out);
  const WeightRange range(bits);
#pragma omp parallel for schedule(static) if (n * k >= kParallelMin)
  for (int64_t r = 0; r < n; ++r) {
    const float inv = kernels::quant_inverse(delta_per_row[r]);  // weight_level's rule, per row
    for (int64_t j = 0; j < k; ++j)
      q_out[r * k + j] = static_cast<int8_t>(quant_level(w[r * k + j], inv, range.lo, range.hi));
  }
}

void fake_quant_weights(const float *w, int64_t n, int64_t k, const float *delta_per_row, int bits,
                        float *w_hat_out) {
  check_weight_args("fake_quant_weights", w, n, k, delta_per_row, bits, w_hat_out);
  const WeightRange range(bits);
#pragma omp parallel for schedule(static) if (n * k >= kParallelMin)
  for (int64_t r = 0; r < n; ++r)
    fake_quant_span(w + r * k, w_hat_out + r * k, k, delta_per_row[r], range.lo, range.hi);
}

double pearson(const float *a, const float *b, int64_t n) {
  check_sizes("pearson", n);
  if (n == 0) return 1.0;
  if (!a || !b) bad_argument("pearson: null pointer");
  const Sums s = pearson_sums(a, b, n);
  const bool const_a = s.amin == s.amax, const_b = s.bmin == s.bmax;
  if (const_a && const_b) return a[0] == b[0] ? 1.0 : 0.0;
  if (const_a || const_b) return 0.0;
  const double ma = s.sa / static_cast<double>(n), mb = s.sb / static_cast<double>(n);
  const Moments m = centred_products(a, b, n, ma, mb);
  if (!(m.aa > 0 && m.bb > 0)) return 0.0;  // NaN data, or values equal up to double rounding
  return std::clamp(m.ab / std::sqrt(m.aa * m.bb), -1.0, 1.0);
}

double mean_pearson(const float *o, const float *o_hat, int64_t samples, int64_t per_sample) {
  check_sizes("mean_pearson", samples, per_sample);
  if (samples == 0) bad_argument("mean_pearson: no samples");
  std::vector<double> r(static_cast<size_t>(samples));
#pragma omp parallel for schedule(static) if (samples * per_sample >= kParallelMin)
  for (int64_t s = 0; s < samples; ++s)
    r[s] = pearson(o + s * per_sample, o_hat + s * per_sample, per_sample);
  double sum = 0;
  for (double v : r) sum += v;
  return sum / static_cast<double>(samples);
}

struct ShiftedMoments {
  double s1 = 0, s2 = 0, c = 0;
};

namespace {

// With d = o_hat - mean(o): sum d, sum d^2, sum centred_o * d. Shifting by the reference mean
// keeps the one-pass variance free of cancellation, since o_hat tracks o.
VQM_MULTIVERSION ShiftedMoments shifted_moments(const float *centred, const float *o_hat, int64_t n,
                                                double shift) {
  double s1 = 0, s2 = 0, c = 0;
#pragma omp simd reduction(+ : s1, s2, c)
  for (int64_t i = 0; i < n; ++i) {
    const double d = o_hat[i] - shift;
    s1 += d;
    s2 += d * d;
    c += centred[i] * d;
  }
  ShiftedMoments m;
  m.s1 = s1, m.s2 = s2, m.c = c;
  return m;
}

}  // namespace

PearsonReference::PearsonReference(const float *o, int64_t samples, int64_t per_sample)
    : o_(o), samples_(samples), per_sample_(per_sample) {
  check_sizes("PearsonReference", samples, per_sample);
  if (samples == 0) bad_argument("PearsonReference: no samples");
  if (per_sample > 0 && !o) bad_argument("PearsonReference: null pointer");
  const size_t ns = static_cast<size_t>(samples);
  centred_.resize(static_cast<size_t>(samples * per_sample));
  mean_.resize(ns);
  sum_centred_.resize(ns);
  var_.resize(ns);
  constant_.resize(ns);
#pragma omp parallel for schedule(static) if (samples * per_sample >= kParallelMin)
  for (int64_t s = 0; s < samples; ++s) {
    const float *os = o + s * per_sample;
    float *cs = centred_.data() + s * per_sample;
    if (per_sample == 0) {
      constant_[s] = 1;
      continue;
    }
    const Sums sums = pearson_sums(os, os, per_sample);
    const double m = sums.sa / static_cast<double>(per_sample);
    double sc = 0, sc2 = 0;
    for (int64_t i = 0; i < per_sample; ++i) {
      cs[i] = static_cast<float>(os[i] - m);
      sc += cs[i];
      sc2 += static_cast<double>(cs[i]) * cs[i];
    }
    mean_[s] = m;
    sum_centred_[s] = sc;
    var_[s] = sc2 - sc * sc / static_cast<double>(per_sample);
    constant_[s] = sums.amin == sums.amax || !(var_[s] > 0);
  }
}

namespace {

// o_hat = acc * scale[c] + bias[c] - shift over `rows` rows of `cols`: the moments of
// shifted_moments, from int32 accumulators.
VQM_MULTIVERSION ShiftedMoments shifted_moments_int(const float *centred, const int32_t *acc,
                                                    int64_t rows, int64_t cols, const double *scale,
                                                    const double *bias, double shift) {
  double s1 = 0, s2 = 0, c = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float *cr = centred + r * cols;
    const int32_t *ar = acc + r * cols;
#pragma omp simd reduction(+ : s1, s2, c)
    for (int64_t j = 0; j < cols; ++j) {
      const double d = ar[j] * scale[j] + (bias[j] - shift);
      s1 += d;
      s2 += d * d;
      c += cr[j] * d;
    }
  }
  ShiftedMoments m;
  m.s1 = s1, m.s2 = s2, m.c = c;
  return m;
}

}  // namespace

// Per sample: the partial moments of its chunks added in order, then Pearson from them, or
// exact(s) (the two-pass form) where the one-pass form is unsafe.
double PearsonReference::combine(const std::vector<ShiftedMoments> &part, int64_t chunks,
                                 const std::function<double(int64_t)> &exact) const {
  double total = 0;
  for (int64_t s = 0; s < samples_; ++s) {
    if (constant_[s]) {
      total += exact(s);
      continue;
    }
    ShiftedMoments m;
    for (int64_t c = 0; c < chunks; ++c) {
      m.s1 += part[s * chunks + c].s1;
      m.s2 += part[s * chunks + c].s2;
      m.c += part[s * chunks + c].c;
    }
    const double n = static_cast<double>(per_sample_);
    const double var_h = m.s2 - m.s1 * m.s1 / n;
    // A (nearly) constant o_hat leaves only rounding noise in var_h: use the exact two-pass form.
    if (!(var_h > 1e-12 * m.s2)) {
      total += exact(s);
      continue;
    }
    const double cov = m.c - sum_centred_[s] * m.s1 / n;
    total += std::clamp(cov / std::sqrt(var_[s] * var_h), -1.0, 1.0);
  }
  return total / static_cast<double>(samples_);
}

double PearsonReference::mean(const float *o_hat) const {
  if (per_sample_ > 0 && !o_hat) bad_argument("PearsonReference: null pointer");
  // Work items are (sample, chunk) so that a few large samples still use every thread; partial
  // moments are combined in a fixed order.
  const int64_t chunks = std::max<int64_t>(1, (per_sample_ + kChunk - 1) / kChunk);
  std::vector<ShiftedMoments> part(static_cast<size_t>(samples_ * chunks));
#pragma omp parallel for schedule(static) if (samples_ * per_sample_ >= kParallelMin)
  for (int64_t item = 0; item < samples_ * chunks; ++item) {
    const int64_t s = item / chunks, c0 = (item % chunks) * kChunk;
    const int64_t len = std::min(kChunk, per_sample_ - c0);
    if (constant_[s] || len <= 0) continue;
    const int64_t off = s * per_sample_ + c0;
    part[item] = shifted_moments(centred_.data() + off, o_hat + off, len, mean_[s]);
  }
  return combine(part, chunks, [&](int64_t s) {
    return pearson(o_ + s * per_sample_, o_hat + s * per_sample_, per_sample_);
  });
}

double PearsonReference::mean(const int32_t *acc, int64_t cols, const double *col_scale,
                              const double *col_bias) const {
  if (cols <= 0 || per_sample_ % cols != 0)
    bad_argument("PearsonReference: " + std::to_string(per_sample_) +
                 " values per sample are not rows of " + std::to_string(cols));
  if (per_sample_ > 0 && (!acc || !col_scale || !col_bias))
    bad_argument("PearsonReference: null pointer");
  const int64_t rows = per_sample_ / cols, chunk_rows = std::max<int64_t>(1, kChunk / cols);
  const int64_t chunks = std::max<int64_t>(1, (rows + chunk_rows - 1) / chunk_rows);
  std::vector<ShiftedMoments> part(static_cast<size_t>(samples_ * chunks));
#pragma omp parallel for schedule(static) if (samples_ * per_sample_ >= kParallelMin)
  for (int64_t item = 0; item < samples_ * chunks; ++item) {
    const int64_t s = item / chunks, r0 = (item % chunks) * chunk_rows;
    const int64_t len = std::min(chunk_rows, rows - r0);
    if (constant_[s] || len <= 0) continue;
    const int64_t off = s * per_sample_ + r0 * cols;
    part[item] = shifted_moments_int(centred_.data() + off, acc + off, len, cols, col_scale,
                                     col_bias, mean_[s]);
  }
  return combine(part, chunks, [&](int64_t s) {  // rare: materialise the sample in float
    std::vector<float> hat(static_cast<size_t>(per_sample_));
    const int32_t *as = acc + s * per_sample_;
    for (int64_t i = 0; i < per_sample_; ++i)
      hat[i] = static_cast<float>(as[i] * col_scale[i % cols] + col_bias[i % cols]);
    return pearson(o_ + s * per_sample_, hat.data(), per_sample_);
  });
}

std::vector<std::pair<int64_t, int64_t>> sample_ranking_pairs(const float *a, int64_t rows,
                                                              int64_t cols, int pairs_per_row,
                                                              uint64_t seed) {
  check_sizes("sample_ranking_pairs", rows, cols);
  if (pairs_per_row <= 0) bad_argument("sample_ranking_pairs: pairs_per_row must be > 0");
  std::vector<std::pair<int64_t, int64_t>> pairs;
  if (cols < 2) return pairs;
  if (!a) bad_argument("sample_ranking_pairs: null pointer");
  pairs.reserve(static_cast<size_t>(rows) * static_cast<size_t>(pairs_per_row));
  std::mt19937_64 rng(seed);
  const uint64_t c = static_cast<uint64_t>(cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int p = 0; p < pairs_per_row; ++p) {
      // i uniform, j uniform among the others: a uniform unordered pair (the modulo bias of a
      // 64-bit draw is negligible, and mt19937_64 makes the sequence identical everywhere).
      const int64_t i = static_cast<int64_t>(rng() % c);
      int64_t j = static_cast<int64_t>(rng() % (c - 1));
      if (j >= i) ++j;
      const int64_t ii = r * cols + i, jj = r * cols + j;
      if (a[ii] > a[jj])
        pairs.emplace_back(ii, jj);
      else if (a[jj] > a[ii])
        pairs.emplace_back(jj, ii);
      // Ties (and NaN) carry no order: skipped, not counted.
    }
  }
  return pairs;
}

namespace {

using Pair = std::pair<int64_t, int64_t>;

// Sum over pairs of max(theta - (a_hat[hi] - a_hat[lo]), 0): gathers from a row of the map, so
// the loop vectorises (omp simd: one summation order per build and ISA clone). The pair loop was
// the largest cost of a Q.K^T search before (scalar, one dependent double add per pair).
VQM_MULTIVERSION double hinge_sum(const Pair *pairs, int64_t n, const float *a_hat, double th) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t p = 0; p < n; ++p) {
    const double d = static_cast<double>(a_hat[pairs[p].first]) - a_hat[pairs[p].second];
    s += th - d > 0.0 ? th - d : 0.0;
  }
  return s;
}

VQM_MULTIVERSION double hinge_sum(const Pair *pairs, int64_t n, const int32_t *acc, double scale,
                                  double th) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t p = 0; p < n; ++p) {
    const double d = scale * (static_cast<double>(acc[pairs[p].first]) - acc[pairs[p].second]);
    s += th - d > 0.0 ? th - d : 0.0;
  }
  return s;
}

}  // namespace

double ranking_loss_on_pairs(const std::vector<Pair> &pairs, const float *a_hat, float theta) {
  if (pairs.empty()) return 0.0;
  if (!a_hat) bad_argument("ranking_loss: null pointer");
  const int64_t n = static_cast<int64_t>(pairs.size());
  const double sum = ordered_block_sum(n, 4096, [&](int64_t b, int64_t e) {
    return hinge_sum(pairs.data() + b, e - b, a_hat, theta);
  });
  return sum / static_cast<double>(n);
}

double ranking_loss_on_pairs(const std::vector<Pair> &pairs, const int32_t *acc, double scale,
                             float theta) {
  if (pairs.empty()) return 0.0;
  if (!acc) bad_argument("ranking_loss: null pointer");
  const int64_t n = static_cast<int64_t>(pairs.size());
  const double sum = ordered_block_sum(n, 4096, [&](int64_t b, int64_t e) {
    return hinge_sum(pairs.data() + b, e - b, acc, scale, theta);
  });
  return sum / static_cast<double>(n);
}

double ranking_loss(const float *a, const float *a_hat, int64_t rows, int64_t cols, float theta,
                    int pairs_per_row, uint64_t seed) {
  check_sizes("ranking_loss", rows, cols);
  if (pairs_per_row < 0) bad_argument("ranking_loss: pairs_per_row must be >= 0");
  if (pairs_per_row > 0)
    return ranking_loss_on_pairs(sample_ranking_pairs(a, rows, cols, pairs_per_row, seed), a_hat,
                                 theta);
  if (cols < 2 || rows == 0) return 0.0;
  if (!a || !a_hat) bad_argument("ranking_loss: null pointer");
  std::vector<double> sums(static_cast<size_t>(rows));
  std::vector<int64_t> counts(static_cast<size_t>(rows));
  const double th = theta;
#pragma omp parallel for schedule(static) if (rows * cols * cols >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float *ar = a + r * cols, *hr = a_hat + r * cols;
    double s = 0;
    int64_t cnt = 0;
    for (int64_t i = 0; i < cols; ++i) {
      for (int64_t j = i + 1; j < cols; ++j) {
        double sign;
        if (ar[i] > ar[j])
          sign = 1.0;
        else if (ar[i] < ar[j])
          sign = -1.0;
        else
          continue;
        s += std::max(th - (static_cast<double>(hr[i]) - hr[j]) * sign, 0.0);
        ++cnt;
      }
    }
    sums[r] = s;
    counts[r] = cnt;
  }
  double s = 0;
  int64_t cnt = 0;
  for (int64_t r = 0; r < rows; ++r) {
    s += sums[r];
    cnt += counts[r];
  }
  return cnt ? s / static_cast<double>(cnt) : 0.0;
}

std::vector<float> mean_output_error(const float *o, const float *o_hat, int64_t rows,
                                     int64_t cols) {
  check_sizes("mean_output_error", rows, cols);
  if (rows == 0) bad_argument("mean_output_error: no rows");
  if (cols > 0 && (!o || !o_hat)) bad_argument("mean_output_error: null pointer");
  std::vector<float> out(static_cast<size_t>(cols));
  constexpr int64_t kBlock = 64;  // columns per task: contiguous reads, private accumulators
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t c0 = b * kBlock, c1 = std::min(cols, c0 + kBlock);
    double acc[kBlock] = {};
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = c0; c < c1; ++c)
        acc[c - c0] += static_cast<double>(o_hat[r * cols + c]) - o[r * cols + c];
    for (int64_t c = c0; c < c1; ++c)
      out[c] = static_cast<float>(acc[c - c0] / static_cast<double>(rows));
  }
  return out;
}

int64_t packed_row_size(int64_t k, int bits) {
  check_sizes("packed_row_size", k);
  if (bits < 2 || bits > 8)
    bad_argument("packing: bits must be 2 to 8, got " + std::to_string(bits));
  return static_cast<int64_t>(packed_row_bytes(int_dtype_for_bits(bits), static_cast<uint64_t>(k)));
}

std::vector<uint8_t> pack_rows(const int8_t *q, int64_t rows, int64_t k, int bits) {
  check_sizes("pack_rows", rows, k);
  const int64_t row_bytes = packed_row_size(k, bits);
  std::vector<uint8_t> out(static_cast<size_t>(rows * row_bytes), 0);
  if (rows * k == 0) return out;
  if (!q) bad_argument("pack_rows: null pointer");
  if (bits == 8) {
    std::memcpy(out.data(), q, static_cast<size_t>(rows * k));
    return out;
  }
  const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  const unsigned mask = (1u << bits) - 1;
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t *dst = out.data() + r * row_bytes;
    for (int64_t j = 0; j < k; ++j) {
      const int v = q[r * k + j];
      if (v < lo || v > hi)
        bad_argument("pack_rows: value " + std::to_string(v) + " at row " + std::to_string(r) +
                     ", column " + std::to_string(j) + " does not fit in " + std::to_string(bits) +
                     " bits");
      // LSB-first bit stream: a value spans at most two bytes (bits <= 8).
      const unsigned pattern = static_cast<unsigned>(v) & mask;
      const int64_t bit = j * bits;
      const unsigned shifted = pattern << (bit % 8);
      dst[bit / 8] |= static_cast<uint8_t>(shifted & 0xffu);
      if (shifted > 0xffu) dst[bit / 8 + 1] |= static_cast<uint8_t>(shifted >> 8);
    }
  }
  return out;
}

void unpack_rows(const uint8_t *packed, int64_t rows, int64_t k, int bits, int8_t *q_out) {
  check_sizes("unpack_rows", rows, k);
  packed_row_size(k, bits);  // throws on a width outside 2..8
  if (rows * k == 0) return;
  if (!packed || !q_out) bad_argument("unpack_rows: null pointer");
  // The bit layout is the file format's: one implementation, in runtime/io/tensor.cpp.
  unpack_int_rows(packed, int_dtype_for_bits(bits), rows, k, q_out);
}

}  // namespace vqm::quant
