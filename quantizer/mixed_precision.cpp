// Mixed precision (PTQ.md): Omega_l(b) = nuclear norm of the module's attention map (MSA) or
// output feature (MLP) times the squared error of the module's output when that module alone is
// quantized at b bits; then the Pareto-frontier choice within the budget.
//
// Where the error is measured is a choice (PtqOptions::sensitivity_at): at the module's output as
// in the paper, or (default, ours) at the network's output feature; on which images is another
// (PtqOptions::sensitivity_images, ours: the first 8 calibration images, ~3x cheaper than 32).
//
// One change (ours, docs/quantization.md): the nuclear norm enters relative to the mean over the
// modules of its own kind. An attention map (rows summing to 1) and an MLP output feature have
// nuclear norms orders of magnitude apart, so the raw product makes every MSA module look
// insensitive and sends all of them to the lowest bit-width. The output errors are measured on
// the same residual stream for both kinds and stay comparable as they are.
#include <algorithm>
#include <cmath>
#include <exception>

#include "quantizer/ptq_internal.h"
#include "runtime/io/error.h"

namespace vqm::quant {

namespace {

// Nuclear norms are averaged over at most this many calibration images (and all heads): the
// ranking of modules is stable long before 32 images, and an SVD of a 197x197 map is not free.
constexpr int kNuclearImages = 8;

double squared_error(const std::vector<float> &a, const std::vector<float> &b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return s;
}

// The first `images` images of `all` (without its description: only the writer reads that).
CalibrationSet first_images(const CalibrationSet &all, int images, int64_t image_size) {
  CalibrationSet s;
  s.n = images;
  s.input.assign(all.input.begin(), all.input.begin() + images * image_size);
  return s;
}

// Points the context at another calibration set for its lifetime.
class CalibScope {
 public:
  CalibScope(PtqContext &c, const CalibrationSet *set) : c_(c), saved_(c.calib) { c.calib = set; }
  ~CalibScope() { c_.calib = saved_; }
  CalibScope(const CalibScope &) = delete;
  CalibScope &operator=(const CalibScope &) = delete;

 private:
  PtqContext &c_;
  const CalibrationSet *saved_;
};

// Mean nuclear norm of a block's attention maps (over images and heads) and of its MLP output
// (block_out - attn_residual, over images), on the first `images` images. One matrix per thread:
// each norm's eigenvalue step is serial. Summed in a fixed order, so the result does not depend
// on the thread count.
std::pair<double, double> block_nuclear_norms(const std::vector<float> &attn,
                                              const std::vector<float> &resid,
                                              const std::vector<float> &out, int images,
                                              const VitConfig &cfg) {
  const int64_t T = cfg.tokens(), D = cfg.embed_dim, H = cfg.num_heads;
  const int64_t per_image = H + 1, count = images * per_image;
  std::vector<double> norm(static_cast<size_t>(count));
  std::exception_ptr error;  // the first one: an exception must not leave the parallel region
#pragma omp parallel for schedule(dynamic)
  for (int64_t j = 0; j < count; ++j) {
    const int64_t i = j / per_image, h = j % per_image;
    try {
      if (h < H) {
        norm[j] = nuclear_norm(attn.data() + (i * H + h) * T * T, T, T);
      } else {
        std::vector<float> y(static_cast<size_t>(T * D));
        for (int64_t t = 0; t < T * D; ++t) y[t] = out[i * T * D + t] - resid[i * T * D + t];
        norm[j] = nuclear_norm(y.data(), T, D);
      }
    } catch (...) {
#pragma omp critical(vqm_nuclear_norm_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  double nn_attn = 0, nn_mlp = 0;
  for (int64_t j = 0; j < count; ++j) (j % per_image < H ? nn_attn : nn_mlp) += norm[j];
  return {nn_attn / (double(images) * double(H)), nn_mlp / images};
}

}  // namespace

std::vector<std::pair<int, int>> choose_mixed_bits(PtqContext &c, double budget_bits) {
  const int images = c.opt.sensitivity_images;
  const bool fewer = images > 0 && images < c.calib->n;
  const CalibrationSet subset =
      fewer ? first_images(*c.calib, images, c.model->config().input_size()) : CalibrationSet{};
  const CalibScope scope(c, fewer ? &subset : c.calib);
  const VitConfig &cfg = c.model->config();
  const int depth = cfg.depth;
  const SearchOptions &so = c.opt.sensitivity_search;
  const auto &cands = c.opt.candidate_bits;
  std::vector<ModuleReport> reports;            // same order as options
  std::vector<std::vector<BitOption>> options;  // module order: blocks.0.attn, blocks.0.mlp, ...
  const int total = depth * 2 * static_cast<int>(cands.size());
  int done = 0;
  const bool at_output = c.opt.sensitivity_at == "output";
  const TapKey output_key{Tap::prelogits, -1};
  // Every module is fp32 here (each is restored after its trial), so this is the fp32 output.
  const std::vector<float> fp_output =
      at_output ? capture(c, {output_key}).at(output_key) : std::vector<float>{};
  // The fp32 residual stream entering block l: block l's captures and trials start there.
  std::vector<float> block_in = capture(c, {{Tap::embed, -1}}).begin()->second;

  for (int l = 0; l < depth; ++l) {
    const StartAt from{l, &block_in};
    // fp32 activations of this block (everything else fp32 too: sensitivity is per module).
    auto fp = capture(c,
                      {{Tap::qkv_in, l},
                       {Tap::q, l},
                       {Tap::k, l},
                       {Tap::v, l},
                       {Tap::attn_probs, l},
                       {Tap::proj_in, l},
                       {Tap::attn_residual, l},
                       {Tap::fc1_in, l},
                       {Tap::fc2_in, l},
                       {Tap::block_out, l}},
                      &from);
    const auto &attn = fp[{Tap::attn_probs, l}];
    const auto &resid = fp[{Tap::attn_residual, l}];
    const auto &out = fp[{Tap::block_out, l}];
    const auto [nn_attn, nn_mlp] =
        block_nuclear_norms(attn, resid, out, std::min(c.calib->n, kNuclearImages), cfg);

    const std::string pre = block_prefix(l);
    for (bool is_attn : {true, false}) {
      std::vector<BitOption> opts;
      ModuleReport mr;
      mr.name = pre + (is_attn ? "attn" : "mlp");
      mr.params = module_params(cfg, is_attn);
      mr.nuclear_norm = is_attn ? nn_attn : nn_mlp;
      for (int b : cands) {
        BlockQuant &bq = c.q.blocks[l];
        for (const LinearSpec &ls : block_linears()) {
          if (std::string(ls.module) != mr.name.substr(pre.size())) continue;
          quantize_linear(c, layer_name(l, ls.id), fp[{ls.input, l}], &(bq.*ls.input_grid), b,
                          linear_search(c, so, ls), false);
          if (ls.id != Linear::qkv) continue;
          quantize_qk(c, l, fp[{Tap::q, l}], fp[{Tap::k, l}], b, so, false);
          quantize_av(c, l, attn, fp[{Tap::v, l}], b, so, false);
        }
        // With everything upstream in fp32, the residual stream after the module differs from
        // the fp32 one by exactly the module's output error.
        const TapKey key = at_output ? output_key
                           : is_attn ? TapKey{Tap::attn_residual, l}
                                     : TapKey{Tap::block_out, l};
        const auto quantized = capture(c, {key}, &from);
        const double err = squared_error(quantized.at(key), at_output ? fp_output
                                                            : is_attn ? resid
                                                                      : out);
        restore_module(c, l, is_attn);
        opts.push_back({b, double(mr.params) * b, err});  // scaled by the nuclear norm below
        mr.sensitivity[b] = err;
        if (c.progress) c.progress("sensitivity " + mr.name, ++done, total);
      }
      options.push_back(opts);
      reports.push_back(mr);
    }
    block_in = std::move(fp[{Tap::block_out, l}]);
  }
  c.model->set_quant(c.q);
  // Omega = (nuclear norm / mean nuclear norm of the same kind) * output error.
  double mean_nn[2] = {0, 0};
  for (size_t m = 0; m < reports.size(); ++m) mean_nn[m % 2] += reports[m].nuclear_norm / depth;
  for (size_t m = 0; m < reports.size(); ++m) {
    const double weight = mean_nn[m % 2] > 0 ? reports[m].nuclear_norm / mean_nn[m % 2] : 1.0;
    for (auto &o : options[m]) o.sensitivity *= weight;
    for (auto &[b, v] : reports[m].sensitivity) v *= weight;
    if (c.report) c.report->modules.push_back(reports[m]);
  }
  const std::vector<int> choice = pareto_choose(options, budget_bits);
  if (c.report) c.report->frontier = pareto_frontier(options);
  std::vector<std::pair<int, int>> bits;
  for (int l = 0; l < depth; ++l)
    bits.emplace_back(options[2 * l][choice[2 * l]].bits,
                      options[2 * l + 1][choice[2 * l + 1]].bits);
  return bits;
}

}  // namespace vqm::quant
