#include "quantizer/search.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <string>

#include "quantizer/codebook.h"
#include "quantizer/search_gemm.h"
#include "runtime/io/error.h"

namespace vqm::quant {

namespace {

void check_bits(const char *what, int bits) {
  if (bits < 2 || bits > 8)
    bad_argument(std::string(what) + " bits must be in [2, 8], got " + std::to_string(bits));
}

void check_zero_point(const char *what, int zp, int bits) {
  if (zp < 0 || zp > (1 << bits) - 1)
    bad_argument(std::string(what) + " zero point " + std::to_string(zp) + " outside [0, " +
                 std::to_string((1 << bits) - 1) + "]");
}

void check_options(const SearchOptions &o) {
  if (!(std::isfinite(o.alpha) && std::isfinite(o.beta) && o.alpha > 0 && o.beta >= o.alpha))
    bad_argument("search: need 0 < alpha <= beta (got " + std::to_string(o.alpha) + ", " +
                 std::to_string(o.beta) + ")");
  if (o.candidates < 1) bad_argument("search: candidates must be >= 1");
  if (o.coarse_stride < 1) bad_argument("search: coarse_stride must be >= 1");
  if (o.rounds < 0) bad_argument("search: rounds must be >= 0");
  if (o.rank_pairs < 0) bad_argument("search: rank_pairs must be >= 0");
  if (o.max_rows < 0) bad_argument("search: max_rows must be >= 0");
  if (!(o.init_percentile > 0.5f && o.init_percentile <= 1.f))
    bad_argument("search: init_percentile must be in (0.5, 1], got " +
                 std::to_string(o.init_percentile));
  if (!std::isfinite(o.gamma) || !std::isfinite(o.theta))
    bad_argument("search: gamma/theta not finite");
}

// C factors linearly spaced over [alpha, beta].
std::vector<float> candidate_factors(const SearchOptions &o) {
  std::vector<float> f(static_cast<size_t>(o.candidates), o.alpha);
  for (int c = 1; c < o.candidates; ++c)
    f[c] = o.alpha + (o.beta - o.alpha) * static_cast<float>(c) / (o.candidates - 1);
  return f;
}

// Indices of the calibration samples the objective is measured on: all of them, or a seeded
// random subset of whole samples holding at most max_rows rows (at least one sample), in order.
std::vector<int64_t> kept_samples(int64_t samples, int64_t rows_per_sample, int max_rows,
                                  uint64_t seed) {
  std::vector<int64_t> keep(static_cast<size_t>(samples));
  std::iota(keep.begin(), keep.end(), int64_t{0});
  if (max_rows == 0 || samples * rows_per_sample <= max_rows) return keep;
  const int64_t n_keep = std::max<int64_t>(1, max_rows / rows_per_sample);
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < n_keep; ++i)  // partial Fisher-Yates
    std::swap(keep[i], keep[i + static_cast<int64_t>(rng() % static_cast<uint64_t>(samples - i))]);
  keep.resize(static_cast<size_t>(n_keep));
  std::sort(keep.begin(), keep.end());
  return keep;
}

// Copies the kept samples' blocks of `block` floats; empty when everything is kept.
std::vector<float> gather_blocks(const float *src, const std::vector<int64_t> &keep,
                                 int64_t samples, int64_t block) {
  if (static_cast<int64_t>(keep.size()) == samples) return {};
  std::vector<float> out(keep.size() * static_cast<size_t>(block));
  for (size_t i = 0; i < keep.size(); ++i)
    std::copy(src + keep[i] * block, src + (keep[i] + 1) * block, out.begin() + i * block);
  return out;
}

struct Range {
  float lo, hi;
};

// min/max (percentile = 1) or the (1-p, p) quantiles of the data, which must be finite.
Range data_range(const char *what, const float *x, int64_t n, double percentile) {
  float lo = x[0], hi = x[0];
  bool finite = true;
#pragma omp parallel for reduction(min : lo) reduction(max : hi) reduction(&& : finite) \
    if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    finite = finite && std::isfinite(x[i]);
  }
  if (!finite) bad_argument(std::string(what) + " holds non-finite values");
  if (percentile >= 1.0) return {lo, hi};
  return {quantile(x, n, 1.0 - percentile), quantile(x, n, percentile)};
}

// D0 = max(hi / (2^b - 1 - zp), -lo / zp), each term only where its denominator is positive: the
// smallest delta whose grid still reaches both ends of the data. Data the grid cannot hold at all
// (all zero, or only on the side the zero point excludes) gets delta 1: any delta is then as good.
float act_d0(Range r, int bits, int zp, int twin_shift = 0) {
  const int qmax = twin_shift ? 1 << (bits - 1 + twin_shift) : (1 << bits) - 1;
  double d = 0;
  if (qmax - zp > 0) d = std::max(d, static_cast<double>(r.hi) / (qmax - zp));
  if (zp > 0) d = std::max(d, -static_cast<double>(r.lo) / zp);
  const float df = static_cast<float>(d);
  return df > 0 && std::isfinite(df) ? df : 1.f;
}

// D0 = max|w| / (2^(b-1) - 0.5) per row (or one for the tensor, repeated per row). The -0.5
// lets the largest weight round onto the last level instead of being cut half a step early.
std::vector<float> weight_d0(const float *w, int64_t n, int64_t k, int bits, bool per_channel) {
  std::vector<float> d(static_cast<size_t>(n));
  bool finite = true;
#pragma omp parallel for reduction(&& : finite) if (n * k >= kParallelMin)
  for (int64_t r = 0; r < n; ++r) {
    float m = 0;
    for (int64_t j = 0; j < k; ++j) {
      m = std::max(m, std::fabs(w[r * k + j]));
      finite = finite && std::isfinite(w[r * k + j]);
    }
    d[r] = m;
  }
  if (!finite) bad_argument("search: weights hold non-finite values");
  if (!per_channel) std::fill(d.begin(), d.end(), *std::max_element(d.begin(), d.end()));
  const float denom = static_cast<float>(1 << (bits - 1)) - 0.5f;
  for (float &v : d) v = v > 0 ? v / denom : 1.f;  // an all-zero row: any delta is exact
  return d;
}

std::vector<float> scaled(const std::vector<float> &d0, const std::vector<float> &f) {
  std::vector<float> d(d0.size());
  for (size_t i = 0; i < d0.size(); ++i) d[i] = d0[i] * f[i];
  return d;
}

void check_linear(const LinearProblem &p) {
  if (!p.x || !p.w) bad_argument("linear search: null x or w");
  if (p.samples <= 0 || p.tokens <= 0 || p.k <= 0 || p.n <= 0)
    bad_argument("linear search: samples, tokens, k and n must be > 0 (got " +
                 std::to_string(p.samples) + ", " + std::to_string(p.tokens) + ", " +
                 std::to_string(p.k) + ", " + std::to_string(p.n) + ")");
  check_bits("linear search: weight", p.w_bits);
  check_bits("linear search: input", p.x_bits);
  check_zero_point("linear search: input", p.x_zero_point, p.x_bits);
}

// Everything a linear-layer objective evaluation needs, built once per problem: the searched rows,
// the fp32 reference output, the primitive and the candidate operands: fake-quantized floats, or
// on the int8 path (search_gemm.h) their integer levels, with o_hat = acc * dx * dw[c] + b[c].
struct LinearCtx {
  const LinearProblem &p;
  std::vector<float> x_copy;
  const float *x;
  int64_t samples, rows;
  bool int8;
  LinearGemm gemm;  // the reference output; the candidates too unless int8
  std::optional<Int8LinearGemm> igemm;
  std::vector<float> o, o_hat, x_hat, w_hat;
  std::vector<uint8_t> x_codes;
  std::vector<int8_t> w_levels;
  std::vector<int32_t> acc;
  std::vector<float> w_delta;
  std::vector<int64_t> w_row_sum;  // sum_k w_levels[c][k]: the zero point's share of acc
  float x_delta = 1.f;
  int x_zero_point = 0;  // the candidate grid's (a chosen-level grid has its fine grid's)
  std::vector<double> col_scale, col_bias;
  std::optional<PearsonReference> ref;  // scores candidates against o

  LinearCtx(const LinearProblem &prob, const std::vector<int64_t> &keep, bool use_int8)
      : p(prob),
        x_copy(gather_blocks(prob.x, keep, prob.samples, prob.tokens * prob.k)),
        x(x_copy.empty() ? prob.x : x_copy.data()),
        samples(static_cast<int64_t>(keep.size())),
        rows(samples * prob.tokens),
        int8(use_int8 && int8_candidates_exact(prob.k)),
        gemm(rows, prob.k, prob.n, prob.bias),
        o(static_cast<size_t>(rows * prob.n)),
        o_hat(o.size()) {
    gemm.set_weights(p.w);
    gemm.run(x, o.data());
    ref.emplace(o.data(), samples, p.tokens * p.n);
    if (!int8) {
      x_hat.resize(static_cast<size_t>(rows * p.k));
      w_hat.resize(static_cast<size_t>(p.n * p.k));
      return;
    }
    igemm.emplace(rows, p.k, p.n);
    x_codes.resize(static_cast<size_t>(rows * p.k));
    w_levels.resize(static_cast<size_t>(p.n * p.k));
    acc.resize(o.size());
    col_scale.resize(static_cast<size_t>(p.n));
    col_bias.resize(static_cast<size_t>(p.n));
    w_row_sum.resize(static_cast<size_t>(p.n));
  }
  void set_w(const std::vector<float> &delta_rows) {
    if (int8) {
      quantize_weights(p.w, p.n, p.k, delta_rows.data(), p.w_bits, w_levels.data());
      for (int64_t c = 0; c < p.n; ++c) {
        int64_t sum = 0;
        for (int64_t j = 0; j < p.k; ++j) sum += w_levels[c * p.k + j];
        w_row_sum[c] = sum;
      }
      w_delta = delta_rows;
      return;
    }
    fake_quant_weights(p.w, p.n, p.k, delta_rows.data(), p.w_bits, w_hat.data());
    gemm.set_weights(w_hat.data());
  }
  void set_x(const ActGrid &g) {
    if (int8) {
      quantize_act_codes(x, x_codes.data(), rows * p.k, g);
      x_delta = g.delta;
      x_zero_point = g.zero_point;
      return;
    }
    fake_quant_act(x, x_hat.data(), rows * p.k, g);
  }
  // The candidate's product: o_hat, or acc with o_hat = acc * col_scale + col_bias, where
  // acc = sum_k code * w and the zero point's share zp * sum_k w moves into col_bias.
  void product() {
    if (!int8) return gemm.run(x_hat.data(), o_hat.data());
    igemm->run(x_codes.data(), w_levels.data(), acc.data());
    for (int64_t c = 0; c < p.n; ++c) {
      col_scale[c] = double(x_delta) * double(w_delta[c]);
      col_bias[c] =
          (p.bias ? double(p.bias[c]) : 0.0) - double(x_zero_point * w_row_sum[c]) * col_scale[c];
    }
  }
  double eval() {
    product();
    return int8 ? ref->mean(acc.data(), p.n, col_scale.data(), col_bias.data())
                : ref->mean(o_hat.data());
  }
  // Per output column, the squared error of the candidate's output against o.
  void column_errors(double *sse) {
    product();
    if (int8)
      column_sse(o.data(), acc.data(), col_scale.data(), col_bias.data(), rows, p.n, sse);
    else
      column_sse(o.data(), o_hat.data(), rows, p.n, sse);
  }
  // Fills the result's final statistics from o_hat at the final deltas.
  void finish(LinearResult &r) {
    r.similarity = eval();
    const int64_t n = p.n;
    if (int8) {
#pragma omp parallel for schedule(static) if (rows * n >= kParallelMin)
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t c = 0; c < n; ++c)
          o_hat[i * n + c] = static_cast<float>(acc[i * n + c] * col_scale[c] + col_bias[c]);
    }
    r.bias_correction = mean_output_error(o.data(), o_hat.data(), rows, n);
#pragma omp parallel for schedule(static) if (rows * n >= kParallelMin)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t c = 0; c < n; ++c) o_hat[i * n + c] -= r.bias_correction[c];
    r.similarity_corrected = ref->mean(o_hat.data());
    r.rows_used = rows;
  }
};

ActGrid make_grid(int bits, int zp, float delta) {
  return ActGrid{bits, zp, delta};
}

}  // namespace

namespace {

// Candidate indices of a scan (SearchOptions::coarse_stride): every stride-th of `count` and the
// last, or all of them for stride 1.
std::vector<int> coarse_indices(int count, int stride) {
  std::vector<int> idx;
  for (int i = 0; i < count; i += stride) idx.push_back(i);
  if (idx.back() != count - 1) idx.push_back(count - 1);
  return idx;
}

// The coarse pass keeps at least kMinCoarse candidates: its spacing must stay fine next to the
// width of the objective's peak (C = 100, stride 4: 2.8 % of D0 apart), so small grids such as
// the 10 candidates of a mixed-precision sensitivity search are scanned whole.
constexpr int kMinCoarse = 25;
int effective_stride(const SearchOptions &o) {
  return std::max(1, std::min(o.coarse_stride, (o.candidates - 1) / (kMinCoarse - 1)));
}

bool is_coarse(int i, int count, int stride) {
  return i % stride == 0 || i == count - 1;
}

// The candidates of the fine pass around coarse index `centre`: those within stride - 1 of it
// (none for stride 1), i.e. every candidate between the coarse neighbours of `centre`.
std::vector<int> fine_offsets(int stride) {
  std::vector<int> off;
  for (int o = -(stride - 1); o <= stride - 1; ++o)
    if (o != 0) off.push_back(o);
  return off;
}

// Picks a factor by objective: the coarse candidates, then the fine ones around the best coarse
// one (with stride 1, every candidate: the paper's grid). eval(f) installs factor f and returns
// the objective; a candidate replaces `current` only if it is strictly better than `best`. The
// objective over factors is smooth at the coarse spacing (docs/quantization.md measures the
// accuracy cost), so the fine pass lands on the grid's best in all but near-tie cases. `curve`
// (optional) receives (factor * curve_scale, objective) of every candidate tried, in order.
template <class Eval>
float scan_factors(const std::vector<float> &factors, int stride, float current, double &best,
                   Eval &&eval, std::vector<std::pair<float, double>> *curve = nullptr,
                   float curve_scale = 1.f) {
  const int count = static_cast<int>(factors.size());
  std::vector<std::pair<int, double>> seen;
  float best_f = current;
  auto visit = [&](int i) {
    const double v = eval(factors[i]);
    seen.emplace_back(i, v);
    if (v > best) {
      best = v;
      best_f = factors[i];
    }
  };
  for (int i : coarse_indices(count, stride)) visit(i);
  int centre = seen[0].first;
  double centre_v = seen[0].second;
  for (const auto &[i, v] : seen)
    if (v > centre_v) centre = i, centre_v = v;
  for (int o : fine_offsets(stride))
    if (centre + o >= 0 && centre + o < count && !is_coarse(centre + o, count, stride))
      visit(centre + o);
  if (curve) {
    std::sort(seen.begin(), seen.end());
    curve->clear();
    for (const auto &[i, v] : seen) curve->emplace_back(factors[i] * curve_scale, v);
  }
  return best_f;
}

// The alternations below scan one factor with the other fixed. A scan is a deterministic
// function of the other factor and the current state, and it leaves the state at its best, so
// rerunning it when the other factor has not moved since its last run finds nothing new (the same
// candidates, the same values, the same curve). Skipping it is exact, and it saves a quarter to
// a half of a search's products once the alternation has converged.
class AlternationSkip {
 public:
  // Whether the first factor's scan must run, given the second factor's current value.
  bool first_needed(float second) { return needed(first_ran_, second_at_first_, second); }
  bool second_needed(float first) { return needed(second_ran_, first_at_second_, first); }

 private:
  static bool needed(bool &ran, float &seen, float other) {
    if (ran && seen == other) return false;
    ran = true;
    seen = other;
    return true;
  }
  bool first_ran_ = false, second_ran_ = false;
  float second_at_first_ = 0, first_at_second_ = 0;
};

// The x start: the max-based D0, or the percentile one when it scores better (ours, see
// SearchOptions::init_percentile). Leaves ctx at the chosen start; returns its D0.
float choose_x_start(LinearCtx &ctx, const SearchOptions &opt, float d0x_max, double &best,
                     LinearResult &r) {
  const LinearProblem &p = ctx.p;
  if (opt.init_percentile >= 1.f) return d0x_max;
  const float d0x_pct =
      act_d0(data_range("linear search: x", p.x, p.samples * p.tokens * p.k, opt.init_percentile),
             p.x_bits, p.x_zero_point);
  ctx.set_x(make_grid(p.x_bits, p.x_zero_point, d0x_pct));
  const double s = ctx.eval();
  if (s > best) {
    best = s;
    r.percentile_start = true;
    return d0x_pct;
  }
  ctx.set_x(make_grid(p.x_bits, p.x_zero_point, d0x_max));
  return d0x_max;
}

// Per-channel refinement. A sample's Pearson mixes all output channels, so the shared-factor
// search cannot tell which channel wants a finer or coarser grid; it did fix the scale regime
// (clipping vs rounding trade-off for the layer as a whole). Given x_hat, each output column
// depends only on its own weight row, so each channel can pick its factor by its own squared
// error sum_rows (o_hat_c - o_c)^2: one product per candidate scores all channels at once (per
// channel coarse-to-fine as scan_factors: a fine candidate gives each channel its own offset from
// its best coarse factor). The refined deltas are kept only if they do not lower the paper's
// objective, so the reported similarity never falls below the shared-factor result.
bool refine_channels(LinearCtx &ctx, const std::vector<float> &d0w,
                     const std::vector<float> &factors, int stride, std::vector<float> &fw,
                     double &best) {
  const int64_t n = ctx.p.n;
  const int count = static_cast<int>(factors.size());
  std::vector<double> best_sse(static_cast<size_t>(n), std::numeric_limits<double>::infinity());
  std::vector<double> coarse_sse(best_sse), sse(static_cast<size_t>(n));
  std::vector<float> best_fc(fw), fc(fw);
  std::vector<int> centre(static_cast<size_t>(n), 0);
  auto score = [&](const std::vector<float> &f) {
    ctx.set_w(scaled(d0w, f));
    ctx.column_errors(sse.data());
    for (int64_t c = 0; c < n; ++c)
      if (sse[c] < best_sse[c]) best_sse[c] = sse[c], best_fc[c] = f[c];
  };
  score(fw);  // the shared factor first: ties keep it
  for (int i : coarse_indices(count, stride)) {
    score(std::vector<float>(fc.size(), factors[i]));
    for (int64_t c = 0; c < n; ++c)
      if (sse[c] < coarse_sse[c]) coarse_sse[c] = sse[c], centre[c] = i;
  }
  for (int o : fine_offsets(stride)) {
    bool any = false;
    for (int64_t c = 0; c < n; ++c) {
      const int i = centre[c] + o;
      const bool fine = i >= 0 && i < count && !is_coarse(i, count, stride);
      fc[c] = fine ? factors[i] : best_fc[c];  // a channel without a candidate re-scores its best
      any = any || fine;
    }
    if (any) score(fc);
  }
  ctx.set_w(scaled(d0w, best_fc));
  const double s = ctx.eval();
  if (s < best) {
    ctx.set_w(scaled(d0w, fw));
    return false;
  }
  best = s;
  fw = best_fc;
  return true;
}

// Chosen levels for the input (SearchOptions::codebook, quantizer/codebook.h): Lloyd-Max
// iterations from the searched uniform grid over the searched rows, each scored by the paper's
// objective; the best replaces the uniform grid only if it scores higher. Leaves ctx at x_grid.
// Lloyd converges in a handful of iterations from the uniform start; every one costs a product.
constexpr int kCodebookIterations = 12;
void choose_codebook(LinearCtx &ctx, ActGrid &x_grid, double &best) {
  ActGrid g = codebook_from_uniform(x_grid);
  const CodeHistogram h = code_histogram(ctx.x, ctx.rows * ctx.p.k, g);
  for (int it = 0; it < kCodebookIterations; ++it) {
    std::vector<uint8_t> next = lloyd_step(h, g);
    if (next == g.levels) break;
    g.levels = std::move(next);
    ctx.set_x(g);
    const double s = ctx.eval();
    if (s > best) best = s, x_grid = g;
  }
  ctx.set_x(x_grid);
}

}  // namespace

LinearResult search_linear(const LinearProblem &p, const SearchOptions &opt) {
  check_linear(p);
  check_options(opt);
  // Initial deltas from all rows; the objective on the (possibly) subsampled rows.
  const std::vector<float> d0w = weight_d0(p.w, p.n, p.k, p.w_bits, opt.per_channel);
  const float d0x_max = act_d0(data_range("linear search: x", p.x, p.samples * p.tokens * p.k, 1.0),
                               p.x_bits, p.x_zero_point);
  LinearCtx ctx(p, kept_samples(p.samples, p.tokens, opt.max_rows, opt.seed), opt.int8_candidates);
  const std::vector<float> factors = candidate_factors(opt);
  const int stride = effective_stride(opt);

  std::vector<float> fw(static_cast<size_t>(p.n), 1.f);  // current weight factor per channel
  float fx = 1.f;
  ctx.set_w(d0w);
  ctx.set_x(make_grid(p.x_bits, p.x_zero_point, d0x_max));
  LinearResult r;
  r.similarity_init = ctx.eval();
  double best = r.similarity_init;
  const float d0x = choose_x_start(ctx, opt, d0x_max, best, r);
  AlternationSkip skip;
  for (int round = 0; round < opt.rounds; ++round) {
    // Weights with x fixed: one shared factor on every channel's D0; then the input with w fixed.
    if (skip.first_needed(fx)) {
      const float f_w = scan_factors(factors, stride, fw[0], best, [&](float f) {
        ctx.set_w(scaled(d0w, std::vector<float>(fw.size(), f)));
        return ctx.eval();
      });
      std::fill(fw.begin(), fw.end(), f_w);
      ctx.set_w(scaled(d0w, fw));
    }
    auto eval_x = [&](float f) {
      ctx.set_x(make_grid(p.x_bits, p.x_zero_point, d0x * f));
      return ctx.eval();
    };
    if (skip.second_needed(fw[0])) {
      fx = scan_factors(factors, stride, fx, best, eval_x, &r.curve, d0x);
      ctx.set_x(make_grid(p.x_bits, p.x_zero_point, d0x * fx));
    }
  }
  if (opt.per_channel && opt.refine_channels && opt.candidates > 1)
    r.channels_refined = refine_channels(ctx, d0w, factors, stride, fw, best);

  r.w_delta = scaled(d0w, fw);
  if (!opt.per_channel) r.w_delta.resize(1);
  r.x_grid = make_grid(p.x_bits, p.x_zero_point, d0x * fx);
  if (opt.codebook && p.x_bits <= 7) choose_codebook(ctx, r.x_grid, best);
  ctx.finish(r);
  return r;
}

LinearResult minmax_linear(const LinearProblem &p, double percentile, bool per_channel) {
  check_linear(p);
  if (!(percentile > 0.5 && percentile <= 1.0))
    bad_argument("minmax: percentile must be in (0.5, 1], got " + std::to_string(percentile));
  SearchOptions opt;  // measured on the same rows as a default search
  opt.per_channel = per_channel;
  const std::vector<float> d0w = weight_d0(p.w, p.n, p.k, p.w_bits, opt.per_channel);
  const float d0x = act_d0(data_range("minmax: x", p.x, p.samples * p.tokens * p.k, percentile),
                           p.x_bits, p.x_zero_point);
  LinearCtx ctx(p, kept_samples(p.samples, p.tokens, opt.max_rows, opt.seed), opt.int8_candidates);
  LinearResult r;
  r.w_delta = d0w;
  r.x_grid = make_grid(p.x_bits, p.x_zero_point, d0x);
  ctx.set_w(d0w);
  ctx.set_x(r.x_grid);
  ctx.finish(r);
  if (!per_channel) r.w_delta.resize(1);
  r.similarity_init = r.similarity;
  return r;
}

namespace {

void check_matmul(const MatmulProblem &p) {
  if (!p.a || !p.b) bad_argument("matmul search: null a or b");
  if (p.batch <= 0 || p.m <= 0 || p.k <= 0 || p.n <= 0 || p.samples <= 0)
    bad_argument("matmul search: batch, m, k, n and samples must be > 0");
  if (p.batch % p.samples != 0)
    bad_argument("matmul search: batch " + std::to_string(p.batch) +
                 " is not a multiple of samples " + std::to_string(p.samples));
  check_bits("matmul search: a", p.a_bits);
  check_bits("matmul search: b", p.b_bits);
  check_zero_point("matmul search: a", p.a_zero_point, p.a_bits);
  check_zero_point("matmul search: b", p.b_zero_point, p.b_bits);
  if (p.a_twin_shift) {
    ActGrid g = make_grid(p.a_bits, p.a_zero_point, 1.f);
    g.twin_shift = p.a_twin_shift;
    check_grid(g);
  }
  if (!std::isfinite(p.out_scale) || p.out_scale == 0.f)
    bad_argument("matmul search: out_scale must be finite and non-zero");
}

struct Objective {
  double sim, rank, value;
};

struct MatmulCtx {
  const MatmulProblem &p;
  int64_t heads, samples, batch;
  std::vector<float> a_copy, b_copy;
  const float *a, *b;
  bool int8;  // candidates on int8 products (search_gemm.h): a as u8 codes, b as s8 levels
  BatchedGemm gemm;
  std::optional<Int8BatchedGemm> igemm;
  std::vector<float> out, out_hat, a_hat, b_hat;
  std::vector<uint8_t> a_codes;
  std::vector<int8_t> b_levels;
  std::vector<int32_t> acc;
  float a_delta = 1.f, b_delta = 1.f;
  std::vector<double> col_scale, col_zero;
  std::vector<std::pair<int64_t, int64_t>> pairs;
  std::optional<PearsonReference> ref;
  float gamma, theta;
  int rank_pairs;
  uint64_t seed;
  bool use_ranking;

  MatmulCtx(const MatmulProblem &prob, const SearchOptions &opt, bool ranking,
            const std::vector<int64_t> &keep)
      : p(prob),
        heads(prob.batch / prob.samples),
        samples(static_cast<int64_t>(keep.size())),
        batch(samples * heads),
        a_copy(gather_blocks(prob.a, keep, prob.samples, heads * prob.m * prob.k)),
        b_copy(gather_blocks(prob.b, keep, prob.samples, heads * prob.k * prob.n)),
        a(a_copy.empty() ? prob.a : a_copy.data()),
        b(b_copy.empty() ? prob.b : b_copy.data()),
        int8(opt.int8_candidates && int8_candidates_exact(prob.k) && b_levels_fit(prob)),
        gemm(batch, prob.m, prob.k, prob.n, prob.b_is_nk, prob.out_scale),
        gamma(opt.gamma),
        theta(opt.theta),
        rank_pairs(opt.rank_pairs),
        seed(opt.seed),
        use_ranking(ranking) {
    out.resize(static_cast<size_t>(batch * p.m * p.n));
    out_hat.resize(out.size());
    gemm.run(a, b, out.data());
    ref.emplace(out.data(), samples, heads * p.m * p.n);
    // Pairs drawn once: every candidate is scored on the same pairs (common random numbers).
    if (rank_pairs > 0)
      pairs = sample_ranking_pairs(out.data(), batch * p.m, p.n, rank_pairs, seed);
    if (!int8) {
      a_hat.resize(static_cast<size_t>(batch * p.m * p.k));
      b_hat.resize(static_cast<size_t>(batch * p.k * p.n));
      return;
    }
    igemm.emplace(batch, p.m, p.k, p.n, p.b_is_nk, p.a_zero_point);
    a_codes.resize(static_cast<size_t>(batch * p.m * p.k));
    b_levels.resize(static_cast<size_t>(batch * p.k * p.n));
    acc.resize(out.size());
    col_scale.resize(static_cast<size_t>(p.n));
    col_zero.assign(static_cast<size_t>(p.n), 0.0);
  }
  // b's levels (q - zero point) must fit in s8: always for up to 7 bits, at 8 bits only for the
  // symmetric grid (the integer engine's K and V grids, see ptq.cpp).
  static bool b_levels_fit(const MatmulProblem &q) {
    return q.b_zero_point <= 128 && (1 << q.b_bits) - 1 - q.b_zero_point <= 127;
  }
  void set_a(const ActGrid &g) {
    if (int8) {
      quantize_act_codes(a, a_codes.data(), batch * p.m * p.k, g);
      a_delta = g.delta;
      return;
    }
    fake_quant_act(a, a_hat.data(), batch * p.m * p.k, g);
  }
  void set_b(const ActGrid &g) {
    if (int8) {
      quantize_act_levels(b, b_levels.data(), batch * p.k * p.n, g);
      b_delta = g.delta;
      return;
    }
    fake_quant_act(b, b_hat.data(), batch * p.k * p.n, g);
  }
  Objective eval() {
    Objective o;
    if (int8) {
      igemm->run(a_codes.data(), b_levels.data(), acc.data());
      const double scale = double(p.out_scale) * a_delta * b_delta;
      std::fill(col_scale.begin(), col_scale.end(), scale);
      o.sim = ref->mean(acc.data(), p.n, col_scale.data(), col_zero.data());
      if (rank_pairs > 0) {
        o.rank = ranking_loss_on_pairs(pairs, acc.data(), scale, theta);
      } else {  // all pairs (tests, small problems): on the materialised output
        for (size_t i = 0; i < acc.size(); ++i) out_hat[i] = static_cast<float>(acc[i] * scale);
        o.rank = ranking_loss(out.data(), out_hat.data(), batch * p.m, p.n, theta, 0, seed);
      }
    } else {
      gemm.run(a_hat.data(), b_hat.data(), out_hat.data());
      o.sim = ref->mean(out_hat.data());
      o.rank = rank_pairs > 0
                   ? ranking_loss_on_pairs(pairs, out_hat.data(), theta)
                   : ranking_loss(out.data(), out_hat.data(), batch * p.m, p.n, theta, 0, seed);
    }
    o.value = use_ranking ? o.sim - gamma * o.rank : o.sim;
    return o;
  }
};

}  // namespace

namespace {
ActGrid a_grid(const MatmulProblem &p, float delta) {
  ActGrid g = make_grid(p.a_bits, p.a_zero_point, delta);
  g.twin_shift = p.a_twin_shift;
  return g;
}
}  // namespace

MatmulResult search_matmul(const MatmulProblem &p, const SearchOptions &opt, bool use_ranking) {
  check_matmul(p);
  check_options(opt);
  const int64_t a_size = p.batch * p.m * p.k, b_size = p.batch * p.k * p.n;
  float d0a = act_d0(data_range("matmul search: a", p.a, a_size, 1.0), p.a_bits, p.a_zero_point,
                     p.a_twin_shift);
  float d0b = act_d0(data_range("matmul search: b", p.b, b_size, 1.0), p.b_bits, p.b_zero_point);
  MatmulCtx ctx(p, opt, use_ranking, kept_samples(p.samples, p.m, opt.max_rows, opt.seed));
  const std::vector<float> factors = candidate_factors(opt);
  float fa = 1.f, fb = 1.f;
  auto grid_a = [&](float f) { return a_grid(p, d0a * f); };
  auto grid_b = [&](float f) { return make_grid(p.b_bits, p.b_zero_point, d0b * f); };
  ctx.set_a(grid_a(fa));
  ctx.set_b(grid_b(fb));
  MatmulResult r;
  const Objective init = ctx.eval();
  r.similarity_init = init.sim;
  r.rank_loss_init = init.rank;
  double best = init.value;
  if (opt.init_percentile < 1.f) {  // the percentile start, per input (see search_linear)
    const float pa = act_d0(data_range("matmul search: a", p.a, a_size, opt.init_percentile),
                            p.a_bits, p.a_zero_point, p.a_twin_shift);
    const float pb = act_d0(data_range("matmul search: b", p.b, b_size, opt.init_percentile),
                            p.b_bits, p.b_zero_point);
    const float max_a = d0a, max_b = d0b;
    for (const auto &[da, db] : {std::pair{pa, max_b}, std::pair{max_a, pb}, std::pair{pa, pb}}) {
      ctx.set_a(a_grid(p, da));
      ctx.set_b(make_grid(p.b_bits, p.b_zero_point, db));
      const double v = ctx.eval().value;
      if (v > best) {
        best = v;
        d0a = da;
        d0b = db;
      }
    }
    r.percentile_start_a = d0a != max_a;
    r.percentile_start_b = d0b != max_b;
    ctx.set_a(grid_a(fa));
    ctx.set_b(grid_b(fb));
  }

  // The alternation of search_linear, with a in the role of W and b in the role of x.
  const int stride = effective_stride(opt);
  AlternationSkip skip;
  for (int round = 0; round < opt.rounds; ++round) {
    auto eval_a = [&](float f) {
      ctx.set_a(grid_a(f));
      return ctx.eval().value;
    };
    if (skip.first_needed(fb)) {
      fa = scan_factors(factors, stride, fa, best, eval_a, &r.curve, d0a);
      ctx.set_a(grid_a(fa));
    }
    auto eval_b = [&](float f) {
      ctx.set_b(grid_b(f));
      return ctx.eval().value;
    };
    if (skip.second_needed(fa)) {
      fb = scan_factors(factors, stride, fb, best, eval_b, &r.curve_b, d0b);
      ctx.set_b(grid_b(fb));
    }
  }
  r.a_grid = grid_a(fa);
  r.b_grid = grid_b(fb);
  const Objective fin = ctx.eval();
  r.similarity = fin.sim;
  r.rank_loss = fin.rank;
  r.rows_used = ctx.samples * p.m;
  return r;
}

MatmulResult minmax_matmul(const MatmulProblem &p, double percentile) {
  check_matmul(p);
  if (!(percentile > 0.5 && percentile <= 1.0))
    bad_argument("minmax: percentile must be in (0.5, 1], got " + std::to_string(percentile));
  const SearchOptions opt;
  MatmulResult r;
  r.a_grid = a_grid(p, act_d0(data_range("minmax: a", p.a, p.batch * p.m * p.k, percentile),
                              p.a_bits, p.a_zero_point, p.a_twin_shift));
  r.b_grid = make_grid(p.b_bits, p.b_zero_point,
                       act_d0(data_range("minmax: b", p.b, p.batch * p.k * p.n, percentile),
                              p.b_bits, p.b_zero_point));
  MatmulCtx ctx(p, opt, false, kept_samples(p.samples, p.m, opt.max_rows, opt.seed));
  ctx.set_a(r.a_grid);
  ctx.set_b(r.b_grid);
  const Objective o = ctx.eval();
  r.similarity_init = r.similarity = o.sim;
  r.rank_loss_init = r.rank_loss = o.rank;
  r.rows_used = ctx.samples * p.m;
  return r;
}

}  // namespace vqm::quant
