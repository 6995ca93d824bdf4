// The post-LayerNorm reparameterization stage (after RepQ-ViT, Li et al. 2023), before any
// search: LayerNorm outputs differ per channel by orders of magnitude in range and offset (a few
// channels reach +-20 where most stay within +-2), and one per-tensor grid for qkv's and fc1's
// input spends its levels on those few. Per channel c of norm1 (norm2), with range r_c and
// centre m_c of its calibration output, the stage rewrites
//   x'_c = (x_c - m_c) / s_c + M,   s_c = r_c / R   (R, M: the mean range and centre)
// by dividing LayerNorm's gamma by s_c and replacing its beta with (beta_c - m_c) / s_c + M, and
// folds the inverse into the next layer: W'[:, c] = s_c W[:, c], b' = b + W (m - s M). The fp32
// network computes the same function (up to rounding); every channel of x' spans [M - R/2,
// M + R/2], so the per-tensor activation grid fits all of them, and the per-output-channel
// weight grid absorbs the column scales. A layer without a bias (qkv_bias false) cannot take the
// offset: there only the scale is moved (m_c = M = 0).
#include <algorithm>
#include <cmath>
#include <limits>

#include "quantizer/ptq_internal.h"

namespace vqm::quant {

namespace {

struct ChannelRange {
  std::vector<float> lo, hi;
};

// Per-channel min/max at every block's qkv and fc1 input over the calibration set (fp32).
std::map<TapKey, ChannelRange> post_norm_ranges(PtqContext &c) {
  const int64_t d = c.model->config().embed_dim;
  std::map<TapKey, ChannelRange> out;
  c.model->set_quant(c.q);  // nothing decided yet: the fp32 forward
  run_calibration(*c.model, *c.calib, c.opt.calib_batch, [&](const TapEvent &e, int, int) {
    if (e.tap != Tap::qkv_in && e.tap != Tap::fc1_in) return;
    ChannelRange &r = out[{e.tap, e.block}];
    if (r.lo.empty()) {
      r.lo.assign(static_cast<size_t>(d), std::numeric_limits<float>::infinity());
      r.hi.assign(static_cast<size_t>(d), -std::numeric_limits<float>::infinity());
    }
    for (int64_t i = 0; i < e.rows; ++i)
      for (int64_t j = 0; j < d; ++j) {
        r.lo[j] = std::min(r.lo[j], e.data[i * d + j]);
        r.hi[j] = std::max(r.hi[j], e.data[i * d + j]);
      }
  });
  return out;
}

// Rewrites one LayerNorm and the linear layer it feeds (names of their tensors) for `r`.
void reparam_pair(PtqContext &c, const std::string &norm, const std::string &linear, bool has_bias,
                  const ChannelRange &r) {
  const int64_t d = static_cast<int64_t>(r.lo.size());
  std::vector<double> range(static_cast<size_t>(d)), centre(static_cast<size_t>(d));
  double mean_range = 0, mean_centre = 0;
  for (int64_t j = 0; j < d; ++j) {
    range[j] = double(r.hi[j]) - r.lo[j];
    centre[j] = has_bias ? 0.5 * (double(r.hi[j]) + r.lo[j]) : 0.0;
    mean_range += range[j] / double(d);
    mean_centre += centre[j] / double(d);
  }
  if (!(mean_range > 0)) return;  // a constant LayerNorm output: nothing to equalise
  std::vector<float> &gamma = c.fp32.at(norm + ".weight"), &beta = c.fp32.at(norm + ".bias");
  std::vector<float> &w = c.fp32.at(linear + ".weight");
  const int64_t n = static_cast<int64_t>(w.size()) / d;
  std::vector<double> s(static_cast<size_t>(d)), shift(static_cast<size_t>(d));
  for (int64_t j = 0; j < d; ++j) {
    // A channel far narrower than the rest would be blown up to the common range, and its
    // weights scaled down to nothing: its scale stops at 1/100 of the mean.
    s[j] = std::max(range[j] / mean_range, 1e-2);
    shift[j] = centre[j] - s[j] * mean_centre;  // x = s x' + shift
    gamma[j] = static_cast<float>(gamma[j] / s[j]);
    beta[j] = static_cast<float>((beta[j] - shift[j]) / s[j]);
  }
  if (has_bias) {
    std::vector<float> &b = c.fp32.at(linear + ".bias");
    for (int64_t o = 0; o < n; ++o) {
      double acc = 0;
      for (int64_t j = 0; j < d; ++j) acc += double(w[o * d + j]) * shift[j];
      b[o] = static_cast<float>(b[o] + acc);
    }
    c.model->set_weight(linear + ".bias", b);
  }
  for (int64_t o = 0; o < n; ++o)
    for (int64_t j = 0; j < d; ++j) w[o * d + j] = static_cast<float>(w[o * d + j] * s[j]);
  c.model->set_weight(norm + ".weight", gamma);
  c.model->set_weight(norm + ".bias", beta);
  c.model->set_weight(linear + ".weight", w);
}

}  // namespace

void reparam_post_layernorm(PtqContext &c) {
  const VitConfig &cfg = c.model->config();
  const auto ranges = post_norm_ranges(c);
  for (int l = 0; l < cfg.depth; ++l) {
    const std::string pre = block_prefix(l);
    reparam_pair(c, pre + "norm1", layer_name(l, Linear::qkv), linear_has_bias(cfg, Linear::qkv),
                 ranges.at({Tap::qkv_in, l}));
    reparam_pair(c, pre + "norm2", layer_name(l, Linear::fc1), linear_has_bias(cfg, Linear::fc1),
                 ranges.at({Tap::fc1_in, l}));
  }
}

}  // namespace vqm::quant
