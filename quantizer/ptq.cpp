#include "quantizer/ptq.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

#include "quantizer/gptq.h"
#include "quantizer/ptq_internal.h"
#include "runtime/io/error.h"

namespace vqm::quant {

using nlohmann::json;

PtqContext::PtqContext(std::shared_ptr<VitModel> m, const CalibrationSet &c, const PtqOptions &o)
    : model(std::move(m)), calib(&c), opt(o) {
  q.blocks.resize(static_cast<size_t>(model->config().depth));
  for (auto &b : q.blocks) b.attn_bits = b.mlp_bits = o.bits;
  q.patch_in.enabled = q.head_in.enabled = false;
  // Originals of everything the quantizer replaces: searches always start from fp32 weights.
  for (const auto &e : expected_tensors(model->config())) {
    const int64_t n =
        std::accumulate(e.shape.begin(), e.shape.end(), int64_t{1}, std::multiplies<int64_t>());
    fp32[e.name] = std::vector<float>(model->weight(e.name), model->weight(e.name) + n);
  }
}

std::map<TapKey, std::vector<float>> capture(PtqContext &c, const std::vector<TapKey> &taps,
                                             const StartAt *start) {
  c.model->set_quant(c.q);
  std::map<TapKey, std::vector<float>> out;
  for (const auto &t : taps) out[t];
  const StopAt stop{taps.back().first, taps.back().second};
  run_calibration(
      *c.model, *c.calib, c.opt.calib_batch,
      [&](const TapEvent &e, int, int) {
        auto it = out.find({e.tap, e.block});
        if (it != out.end()) it->second.insert(it->second.end(), e.data, e.data + e.rows * e.cols);
      },
      &stop, start);
  return out;
}

int choose_zero_point(const std::vector<float> &x, int bits) {
  const int qmax = (1 << bits) - 1;
  float lo = 0.f, hi = 0.f;
  for (float v : x) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (!(hi > lo)) return 1 << (bits - 1);
  return std::clamp(static_cast<int>(std::lround(qmax * -lo / (hi - lo))), 0, qmax);
}

namespace {

// Per-row deltas of a search result (a per-tensor delta is broadcast).
std::vector<float> row_deltas(const std::vector<float> &d, int64_t n) {
  return d.size() == 1 ? std::vector<float>(static_cast<size_t>(n), d[0]) : d;
}

// Installs the levels q [n, k] of weight `name`: their fake-quantized values for the forwards
// that follow and, with `record`, the integers for the writer.
void install_levels(PtqContext &c, const std::string &name, std::vector<int8_t> q,
                    const std::vector<float> &deltas, int bits, bool record) {
  const int64_t n = static_cast<int64_t>(deltas.size()), k = static_cast<int64_t>(q.size()) / n;
  std::vector<float> w_hat(q.size());
  for (int64_t r = 0; r < n; ++r)  // level * delta in float: fake_quant_weights' expression
    for (int64_t j = 0; j < k; ++j) w_hat[r * k + j] = float(q[r * k + j]) * deltas[r];
  c.model->set_weight(name, std::move(w_hat));
  if (record) c.int_weights[name] = PtqContext::IntWeight{std::move(q), deltas, bits};
}

void install_weights(PtqContext &c, const std::string &name, const std::vector<float> &deltas,
                     int bits, bool record) {
  const std::vector<float> &w = c.fp32.at(name);
  const int64_t n = static_cast<int64_t>(deltas.size()), k = static_cast<int64_t>(w.size()) / n;
  std::vector<int8_t> q(w.size());
  quantize_weights(w.data(), n, k, deltas.data(), bits, q.data());
  install_levels(c, name, std::move(q), deltas, bits, record);
}

// The GPTQ stage (gptq.h) for one linear layer after its search: the layer's inputs on their
// chosen grid weigh the rounding of its weights at the chosen deltas. With x_fp32 (the fp32
// model's inputs of the layer), GPTQ rounds toward output_matched_weights instead of W, and the
// mean output restored is the fp32 model's. Installs the weights and returns the bias correction
// for them (the mean output error over all calibration rows, which is linear: W_hat mean(x_hat)
// - W mean(x_ref), x_ref = x_fp32 or x) and, through *error_ratio, the output error energy
// against nearest rounding's.
std::vector<float> gptq_linear(PtqContext &c, const std::string &layer, const std::vector<float> &x,
                               const std::vector<float> *x_fp32, const ActGrid &x_grid,
                               const std::vector<float> &deltas, int bits, double *error_ratio) {
  const std::vector<float> &w_fp32 = c.fp32.at(layer + ".weight");
  const int64_t n = static_cast<int64_t>(deltas.size()),
                k = static_cast<int64_t>(w_fp32.size()) / n;
  const int64_t rows = static_cast<int64_t>(x.size()) / k;
  std::vector<float> x_hat(x.size());
  fake_quant_act(x.data(), x_hat.data(), static_cast<int64_t>(x.size()), x_grid);
  const std::vector<double> h = input_hessian(x_hat.data(), rows, k);
  const std::vector<float> matched =
      x_fp32 ? output_matched_weights(w_fp32.data(), n, k, h,
                                      cross_hessian(x_fp32->data(), x_hat.data(), rows, k),
                                      c.opt.fp32_target_damp)
             : std::vector<float>{};
  const std::vector<float> &w = x_fp32 ? matched : w_fp32;
  const std::vector<float> &x_ref = x_fp32 ? *x_fp32 : x;  // whose output the bias restores
  std::vector<int8_t> q(w.size()), nearest(w.size());
  gptq_round(w.data(), n, k, deltas.data(), bits, h, c.opt.gptq_options, q.data());
  if (c.report) {
    quantize_weights(w.data(), n, k, deltas.data(), bits, nearest.data());
    const double e0 = weight_output_error(w.data(), nearest.data(), n, k, deltas.data(), h);
    *error_ratio =
        e0 > 0 ? weight_output_error(w.data(), q.data(), n, k, deltas.data(), h) / e0 : 1;
  }
  std::vector<double> mx(static_cast<size_t>(k)), mx_hat(static_cast<size_t>(k));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < k; ++j) {
      mx[j] += x_ref[r * k + j];
      mx_hat[j] += x_hat[r * k + j];
    }
  std::vector<float> corr(static_cast<size_t>(n));
  for (int64_t o = 0; o < n; ++o) {
    double s = 0;
    for (int64_t j = 0; j < k; ++j)
      s += double(q[o * k + j]) * deltas[o] * mx_hat[j] - double(w_fp32[o * k + j]) * mx[j];
    corr[o] = static_cast<float>(s / double(rows));
  }
  install_levels(c, layer + ".weight", std::move(q), deltas, bits, true);
  return corr;
}

ActQuant to_act(const ActGrid &g) {
  ActQuant a;
  a.enabled = true;
  a.bits = g.bits;
  a.zero_point = g.zero_point;
  a.delta = g.delta;
  a.twin_shift = g.twin_shift;
  a.levels = g.levels;
  return a;
}

bool use_search(const PtqOptions &o) {
  return o.method == "ptq";
}
// GPTQ's fp32 target is part of the GPTQ stage, which only the search method runs.
bool use_fp32_target(const PtqOptions &o) {
  return use_search(o) && o.gptq && o.fp32_target;
}
double baseline_percentile(const PtqOptions &o) {
  return o.method == "minmax" ? 1.0 : o.percentile;
}

}  // namespace

void quantize_linear(PtqContext &c, const std::string &layer, const std::vector<float> &x,
                     ActQuant *point, int bits, const SearchOptions &so, bool record,
                     const std::vector<float> *x_fp32) {
  const std::vector<float> &w = c.fp32.at(layer + ".weight");
  // A layer without a bias (qkv_bias false, CLIP's patch embedding) searches with a zero one
  // and keeps none: its bias correction has nowhere to go.
  const auto bias_it = c.fp32.find(layer + ".bias");
  const bool has_bias = bias_it != c.fp32.end();
  const int64_t n = c.model->file().get(layer + ".weight").shape.at(0);
  const int64_t k = static_cast<int64_t>(w.size()) / n;
  const std::vector<float> b = has_bias ? bias_it->second : std::vector<float>(n, 0.f);
  const int64_t rows = static_cast<int64_t>(x.size()) / k;
  const int x_bits = act_bits(c.opt, bits);
  const int64_t samples = c.calib->n;
  LinearProblem p{x.data(), samples, rows / samples, k,      w.data(),
                  b.data(), n,       bits,           x_bits, choose_zero_point(x, x_bits)};
  const LinearResult r = use_search(c.opt)
                             ? search_linear(p, so)
                             : minmax_linear(p, baseline_percentile(c.opt), so.per_channel);
  // GPTQ for the model being written (record); the sensitivity trials of mixed precision keep
  // nearest rounding: they need the order of magnitude of a module's error, not its last tenth.
  const bool gptq = record && c.opt.gptq && use_search(c.opt);
  double gptq_ratio = 0;
  std::vector<float> correction = r.bias_correction;
  if (gptq)
    correction =
        gptq_linear(c, layer, x, x_fp32, r.x_grid, row_deltas(r.w_delta, n), bits, &gptq_ratio);
  else
    install_weights(c, layer + ".weight", row_deltas(r.w_delta, n), bits, record);
  if (has_bias) {
    std::vector<float> bias = b;
    if (c.opt.bias_correction)
      for (int64_t j = 0; j < n; ++j) bias[j] -= correction[j];
    c.model->set_weight(layer + ".bias", std::move(bias));
  }
  *point = to_act(r.x_grid);
  if (record && c.report) {
    LayerReport row;
    row.name = layer;
    row.kind = "linear";
    row.w_bits = bits;
    row.x_bits = x_bits;
    row.x_delta = r.x_grid.delta;
    row.x_zero_point = r.x_grid.zero_point;
    row.x_levels = r.x_grid.levels;
    row.similarity_init = r.similarity_init;
    row.similarity = c.opt.bias_correction && has_bias ? r.similarity_corrected : r.similarity;
    row.curve = r.curve;
    row.gptq_error_ratio = gptq_ratio;
    c.report->layers.push_back(row);
  }
}

SearchOptions linear_search(const PtqContext &c, const SearchOptions &so, const LinearSpec &ls) {
  SearchOptions out = so;
  out.codebook = use_search(c.opt) && c.opt.codebook && ls.chosen_levels;
  return out;
}

namespace {
void record_matmul(PtqContext &c, const std::string &name, const MatmulResult &r, int bits) {
  if (!c.report) return;
  LayerReport row;
  row.name = name;
  row.kind = "matmul";
  row.x_bits = bits;
  row.x_delta = r.a_grid.delta;
  row.x_zero_point = r.a_grid.zero_point;
  row.x_twin_shift = r.a_grid.twin_shift;
  row.b_delta = r.b_grid.delta;
  row.b_zero_point = r.b_grid.zero_point;
  row.similarity_init = r.similarity_init;
  row.similarity = r.similarity;
  row.rank_loss_init = r.rank_loss_init;
  row.rank_loss = r.rank_loss;
  row.curve = r.curve;
  c.report->layers.push_back(row);
}
}  // namespace

// K and V are the second ("weights") operand of their products, which oneDNN's fast int8 kernels
// take as s8 without a zero point: the integer engine stores q - zp. For b <= 7 bits that always
// fits in s8 whatever the zero point, so they keep the range-based one (a symmetric grid cost 0.3
// points of top-1 at 4 bits on the Fashion-MNIST model); at 8 bits only the symmetric grid fits.
namespace {
int weight_operand_zero_point(const std::vector<float> &x, int bits) {
  return bits >= 8 ? 1 << (bits - 1) : choose_zero_point(x, bits);
}
}  // namespace

void quantize_qk(PtqContext &c, int l, const std::vector<float> &q, const std::vector<float> &k,
                 int bits, const SearchOptions &so, bool record) {
  bits = act_bits(c.opt, bits);  // both operands are activations
  const VitConfig &cfg = c.model->config();
  const int64_t T = cfg.tokens(), dh = cfg.head_dim(),
                batch = static_cast<int64_t>(q.size()) / (T * dh);
  MatmulProblem p{q.data(),
                  k.data(),
                  batch,
                  T,
                  dh,
                  T,
                  true,
                  c.calib->n,
                  bits,
                  bits,
                  choose_zero_point(q, bits),
                  weight_operand_zero_point(k, bits),
                  1.0f / std::sqrt(static_cast<float>(dh))};
  const MatmulResult r = use_search(c.opt) ? search_matmul(p, so, c.opt.ranking)
                                           : minmax_matmul(p, baseline_percentile(c.opt));
  c.q.blocks[l].q = to_act(r.a_grid);
  c.q.blocks[l].k = to_act(r.b_grid);
  if (record) record_matmul(c, qk_name(l), r, bits);
}

void quantize_av(PtqContext &c, int l, const std::vector<float> &a, const std::vector<float> &v,
                 int bits, const SearchOptions &so, bool record) {
  bits = act_bits(c.opt, bits);  // both operands are activations
  const VitConfig &cfg = c.model->config();
  const int64_t T = cfg.tokens(), dh = cfg.head_dim(),
                batch = static_cast<int64_t>(v.size()) / (T * dh);
  // The softmax output is never negative: an unsigned grid (zero point 0) uses every level.
  MatmulProblem p{a.data(), v.data(),   batch, T,    T, dh,
                  false,    c.calib->n, bits,  bits, 0, weight_operand_zero_point(v, bits),
                  1.0f};
  MatmulResult r = use_search(c.opt) ? search_matmul(p, so, false)
                                     : minmax_matmul(p, baseline_percentile(c.opt));
  // The two-range softmax grid (ours, after PTQ4ViT's twin uniform): most probabilities sit near
  // 1/T, where a uniform b-bit grid reaching the large ones has no level; fine levels there and
  // coarse ones above cost the integer engine one byte pass. Every shift the grid allows is
  // searched, and kept only if it beats the uniform grid.
  if (use_search(c.opt) && c.opt.twin_softmax)
    for (p.a_twin_shift = 1; p.a_twin_shift <= bits - 1 && bits - 1 + p.a_twin_shift <= 7;
         ++p.a_twin_shift) {
      const MatmulResult t = search_matmul(p, so, false);
      if (t.similarity > r.similarity) r = t;
    }
  c.q.blocks[l].attn = to_act(r.a_grid);
  c.q.blocks[l].v = to_act(r.b_grid);
  if (record) record_matmul(c, av_name(l), r, bits);
}

void restore_module(PtqContext &c, int l, bool attn) {
  for (const LinearSpec &ls : block_linears()) {
    if (std::string(ls.module) != (attn ? "attn" : "mlp")) continue;
    for (const char *part : {".weight", ".bias"}) {
      const std::string name = layer_name(l, ls.id) + part;
      if (auto it = c.fp32.find(name); it != c.fp32.end()) c.model->set_weight(name, it->second);
    }
  }
  BlockQuant &b = c.q.blocks[l];
  for (ActQuant *a : attn
                         ? std::vector<ActQuant *>{&b.qkv_in, &b.q, &b.k, &b.attn, &b.v, &b.proj_in}
                         : std::vector<ActQuant *>{&b.fc1_in, &b.fc2_in})
    a->enabled = false;
}

int64_t module_params(const VitConfig &cfg, bool attn) {
  const int64_t d = cfg.embed_dim;
  return attn ? 4 * d * d : 2 * d * cfg.mlp_hidden;
}

namespace {

void check_options(const PtqOptions &o) {
  if (o.method != "ptq" && o.method != "minmax" && o.method != "percentile")
    fail(ErrorCode::invalid_argument,
         "unknown method '" + o.method + "' (ptq, minmax, percentile)");
  auto valid_bits = [](int b) { return b >= 2 && b <= 8; };
  if (!valid_bits(o.bits))
    fail(ErrorCode::invalid_argument, "bits must be in [2, 8], got " + std::to_string(o.bits));
  if (!valid_bits(o.edge_bits))
    fail(ErrorCode::invalid_argument,
         "edge bits must be in [2, 8], got " + std::to_string(o.edge_bits));
  for (int b : o.candidate_bits)
    if (!valid_bits(b)) fail(ErrorCode::invalid_argument, "candidate bits must be in [2, 8]");
  if (o.min_act_bits != 0 && !valid_bits(o.min_act_bits))
    fail(ErrorCode::invalid_argument,
         "minimum activation bits must be 0 (automatic) or in [2, 8], got " +
             std::to_string(o.min_act_bits));
  if (o.sensitivity_at != "output" && o.sensitivity_at != "module")
    fail(ErrorCode::invalid_argument,
         "unknown sensitivity_at '" + o.sensitivity_at + "' (output, module)");
  if (o.sensitivity_images < 0)
    fail(ErrorCode::invalid_argument, "sensitivity_images must be >= 0 (0 = all)");
  if (o.mixed_avg_bits < 0 || o.size_budget_bytes < 0)
    fail(ErrorCode::invalid_argument, "budgets must be positive");
}

VqmWriter write_model(PtqContext &c, const VqmFile &fp32) {
  VqmWriter w;
  json meta = fp32.meta();
  json qj = json::object();
  qj["method"] = c.opt.method;
  quant_to_json(c.q, qj);
  // Only what ran: a baseline records no search settings, a uniform run no mixed-precision ones.
  json settings = {
      {"per_channel", c.opt.search.per_channel},
      {"max_rows", c.opt.search.max_rows},
      {"seed", c.opt.search.seed},
      {"bias_correction", c.opt.bias_correction},
      {"edge_bits", c.opt.edge_bits},
      {"min_act_bits", c.opt.min_act_bits},
      {"zero_point_rule", "range"},
      {"order",
       "sequential: each layer searched on the outputs of the quantized layers before it"}};
  if (use_search(c.opt)) {
    const SearchOptions &so = c.opt.search;
    settings.update({{"alpha", so.alpha},
                     {"beta", so.beta},
                     {"candidates", so.candidates},
                     {"rounds", so.rounds},
                     {"refine_channels", so.refine_channels},
                     {"init_percentile", so.init_percentile},
                     {"ranking", c.opt.ranking},
                     {"gamma", so.gamma},
                     {"theta", so.theta},
                     {"rank_pairs", so.rank_pairs},
                     {"int8_candidates", so.int8_candidates},
                     {"coarse_stride", so.coarse_stride},
                     {"gptq", c.opt.gptq},
                     {"twin_softmax", c.opt.twin_softmax},
                     {"codebook", c.opt.codebook},
                     {"reparam", c.opt.reparam}});
    if (c.opt.gptq)
      settings.update({{"gptq_damp", c.opt.gptq_options.damp},
                       {"gptq_act_order", c.opt.gptq_options.act_order},
                       {"fp32_target", c.opt.fp32_target}});
    if (use_fp32_target(c.opt)) settings["fp32_target_damp"] = c.opt.fp32_target_damp;
  } else {
    settings["percentile"] = baseline_percentile(c.opt);
  }
  if (c.opt.mixed_avg_bits > 0 || c.opt.size_budget_bytes > 0 || c.opt.measure_sensitivity)
    settings.update({{"candidate_bits", c.opt.candidate_bits},
                     {"sensitivity_at", c.opt.sensitivity_at},
                     {"sensitivity_candidates", c.opt.sensitivity_search.candidates},
                     {"sensitivity_images", c.opt.sensitivity_images},
                     {"sensitivity_rounds", c.opt.sensitivity_search.rounds}});
  qj["settings"] = settings;
  qj["calibration"] = c.calib->description;
  if (c.opt.mixed_avg_bits > 0 || c.opt.size_budget_bytes > 0) {
    qj["mixed"] = {{"avg_bits", c.opt.mixed_avg_bits},
                   {"size_budget_bytes", c.opt.size_budget_bytes}};
  } else {
    qj["bits"] = c.opt.bits;
  }
  if (c.report) qj["avg_bits"] = c.report->avg_bits;
  meta["quantization"] = qj;
  meta["producer"] = {
      {"name", "vqm"},
      {"version", VQM_VERSION_STRING},
      {"tool", "vit-quantize"},
      {"source", fp32.meta().value("producer", json::object()).value("source", "")}};
  w.set_meta(meta);
  for (const auto &t : fp32.tensors()) {
    auto it = c.int_weights.find(t.name);
    if (it == c.int_weights.end()) {
      const float *data = c.model->weight(t.name);  // corrected biases, untouched others
      w.add_f32(t.name, t.shape, data);
      continue;
    }
    const auto &iw = it->second;
    const int64_t k = t.shape.back(), rows = static_cast<int64_t>(iw.values.size()) / k;
    // Stored in exactly b bits per value (qB), so the file size is what the budget counted.
    const DType dt = int_dtype_for_bits(iw.bits);
    const std::vector<uint8_t> packed = pack_rows(iw.values.data(), rows, k, iw.bits);
    w.add_tensor(t.name, dt, t.shape, packed.data(), packed.size(), t.name + ".scale", 0);
    w.add_f32(t.name + ".scale", {static_cast<int64_t>(iw.scale.size())}, iw.scale.data());
  }
  return w;
}

}  // namespace

namespace {

// The optional stages that will run, named as their switches (PtqReport::stages).
std::vector<std::string> stages_run(const PtqOptions &opt) {
  const bool search = use_search(opt);
  const std::pair<const char *, bool> stages[] = {
      {"ranking", search && opt.ranking},    {"bias-correction", opt.bias_correction},
      {"reparam", search && opt.reparam},    {"gptq", search && opt.gptq},
      {"fp32-target", use_fp32_target(opt)}, {"twin-softmax", search && opt.twin_softmax},
      {"codebook", search && opt.codebook}};
  std::vector<std::string> out;
  for (const auto &[name, on] : stages)
    if (on) out.push_back(name);
  return out;
}

// Weight parameters of all blocks' MSA and MLP modules (what a mixed-precision budget buys).
double block_params(const VitConfig &cfg) {
  return cfg.depth * double(module_params(cfg, true) + module_params(cfg, false));
}

// Mixed precision's budget in bits of block weights (0: uniform bits).
double mixed_budget_bits(const PtqOptions &opt, const VitConfig &cfg) {
  if (opt.size_budget_bytes > 0) return opt.size_budget_bytes * 8.0;
  return opt.mixed_avg_bits * block_params(cfg);
}

// `opt` with min_act_bits resolved (PtqOptions::min_act_bits). Under mixed precision the floor is
// the average rounded up: `--mixed 4` with 3-bit activations under its 2- and 3-bit modules
// agreed with fp32 on 98.2 % of the demo model's test images, with 4-bit ones on 98.7 %
// (docs/quantization.md); the weights keep trading down to 2 bits.
PtqOptions resolve_act_floor(PtqOptions opt, const VitConfig &cfg) {
  if (opt.min_act_bits != 0) return opt;
  const double budget = mixed_budget_bits(opt, cfg);
  // 1e-9: a budget of exactly 4 bits per parameter must floor at 4, not 5.
  const int avg_up =
      budget > 0 ? static_cast<int>(std::ceil(budget / block_params(cfg) - 1e-9)) : 0;
  opt.min_act_bits = std::clamp(avg_up, 3, 8);
  return opt;
}

// Bits per module, (attn, mlp) per block: uniform, or mixed precision within the budget.
std::vector<std::pair<int, int>> module_bits(PtqContext &c) {
  const PtqOptions &opt = c.opt;
  const VitConfig &cfg = c.model->config();
  if (const double budget = mixed_budget_bits(opt, cfg); budget > 0)
    return choose_mixed_bits(c, budget);
  if (opt.measure_sensitivity && c.report)
    choose_mixed_bits(c, std::numeric_limits<double>::max());  // fills the report; bits stay
  return std::vector<std::pair<int, int>>(static_cast<size_t>(cfg.depth), {opt.bits, opt.bits});
}

// Block l in network order. block_in: the residual stream entering it under everything decided
// before it (the captures replay this block alone; ours: replaying blocks 0..l-1 for each of a
// block's six captures was half the quantizer's time on DeiT-S), advanced to its output when
// `advance`. block_in_fp32 (the fp32 target): the fp32 model's stream, from which the block's
// fp32 inputs are captured before it is quantized (its weights are still fp32 then); advanced.
void quantize_block(PtqContext &c, int l, std::vector<float> &block_in, bool advance,
                    std::vector<float> *block_in_fp32,
                    const std::function<void(const std::string &)> &tick) {
  BlockQuant &bq = c.q.blocks[l];
  const SearchOptions &so = c.opt.search;
  const StartAt from{l, &block_in};
  std::map<TapKey, std::vector<float>> fp;
  if (block_in_fp32) {
    std::vector<TapKey> taps;
    for (const LinearSpec &ls : block_linears()) taps.push_back({ls.input, l});
    taps.push_back({Tap::block_out, l});
    const StartAt from_fp32{l, block_in_fp32};
    fp = capture(c, taps, &from_fp32);
    *block_in_fp32 = std::move(fp[{Tap::block_out, l}]);
  }
  // The block's linear layers in network order (the layer table); the attention products come
  // right after qkv, whose outputs they read.
  for (const LinearSpec &ls : block_linears()) {
    const int bits = std::string(ls.module) == "attn" ? bq.attn_bits : bq.mlp_bits;
    const std::string layer = layer_name(l, ls.id);
    quantize_linear(c, layer, capture(c, {{ls.input, l}}, &from)[{ls.input, l}],
                    &(bq.*ls.input_grid), bits, linear_search(c, so, ls), true,
                    block_in_fp32 ? &fp[{ls.input, l}] : nullptr);
    tick(layer);
    if (ls.id != Linear::qkv) continue;
    auto qkv = capture(c, {{Tap::q, l}, {Tap::k, l}, {Tap::v, l}}, &from);
    quantize_qk(c, l, qkv[{Tap::q, l}], qkv[{Tap::k, l}], bits, so, true);
    tick(qk_name(l));
    auto probs = capture(c, {{Tap::attn_probs, l}}, &from);
    quantize_av(c, l, probs[{Tap::attn_probs, l}], qkv[{Tap::v, l}], bits, so, true);
    tick(av_name(l));
  }
  if (advance) block_in = std::move(capture(c, {{Tap::block_out, l}}, &from)[{Tap::block_out, l}]);
}

// The classifier head (and DeiT's distillation head) after the last block.
void quantize_head(PtqContext &c, const std::vector<float> &block_in,
                   const std::vector<float> *block_in_fp32) {
  const VitConfig &cfg = c.model->config();
  const int edge_bits = c.opt.edge_bits;
  const StartAt from{cfg.depth, &block_in};
  auto caps = capture(c, {{Tap::prelogits, -1}}, &from);
  std::vector<float> head_fp32;
  if (block_in_fp32) {
    const StartAt from_fp32{cfg.depth, block_in_fp32};
    head_fp32 = std::move(capture(c, {{Tap::prelogits, -1}}, &from_fp32).begin()->second);
  }
  quantize_linear(c, "head", caps.begin()->second, &c.q.head_in, edge_bits, c.opt.search, true,
                  block_in_fp32 ? &head_fp32 : nullptr);
  if (!cfg.distilled) return;
  // The distillation head shares the head's input grid; its weights take max-based per-channel
  // deltas (8-bit by default, where searching gains nothing measurable).
  const auto &w = c.fp32.at("head_dist.weight");
  const int64_t n = cfg.num_classes, k = cfg.embed_dim;
  std::vector<float> deltas(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    float mx = 0;
    for (int64_t j = 0; j < k; ++j) mx = std::max(mx, std::fabs(w[r * k + j]));
    deltas[r] = mx > 0 ? mx / ((1 << (edge_bits - 1)) - 0.5f) : 1.f;
  }
  install_weights(c, "head_dist.weight", deltas, edge_bits, true);
}

// Each module's bits and parameter count into the report (mixed precision already added the
// modules with their sensitivities).
void report_modules(const PtqContext &c, PtqReport *report) {
  const VitConfig &cfg = c.model->config();
  for (int l = 0; l < cfg.depth; ++l) {
    for (bool attn : {true, false}) {
      const std::string name = module_name(l, attn ? "attn" : "mlp");
      auto it = std::find_if(report->modules.begin(), report->modules.end(),
                             [&](const ModuleReport &m) { return m.name == name; });
      if (it == report->modules.end()) {
        report->modules.push_back({name, 0, 0, 0, {}});
        it = report->modules.end() - 1;
      }
      it->bits = attn ? c.q.blocks[l].attn_bits : c.q.blocks[l].mlp_bits;
      it->params = module_params(cfg, attn);
    }
  }
}

}  // namespace

VqmWriter quantize(const VqmFile &fp32, const CalibrationSet &calib, const PtqOptions &options,
                   PtqReport *report, const Progress &progress) {
  check_options(options);
  const auto t0 = std::chrono::steady_clock::now();
  std::shared_ptr<VitModel> model = VitModel::load_mutable(fp32);
  const PtqOptions opt = resolve_act_floor(options, model->config());
  PtqContext c(std::move(model), calib, opt);
  if (c.model->quant() || fp32.meta().contains("quantization"))
    fail(ErrorCode::invalid_argument,
         fp32.source() + " is already quantized: quantize the fp32 model instead");
  c.report = report;
  c.progress = progress;
  const VitConfig &cfg = c.model->config();
  const int depth = cfg.depth;
  if (use_search(opt) && opt.reparam) reparam_post_layernorm(c);
  if (report) report->stages = stages_run(opt);

  const std::vector<std::pair<int, int>> bits = module_bits(c);
  double weighted = 0;
  for (int l = 0; l < depth; ++l) {
    c.q.blocks[l].attn_bits = bits[l].first;
    c.q.blocks[l].mlp_bits = bits[l].second;
    weighted += bits[l].first * double(module_params(cfg, true)) +
                bits[l].second * double(module_params(cfg, false));
  }
  if (report) report->avg_bits = weighted / block_params(cfg);

  // Sequential search in network order.
  const int steps = (cfg.num_classes > 0 ? 2 : 1) + 6 * depth;
  int step = 0;
  auto tick = [&](const std::string &what) {
    if (progress) progress(what, ++step, steps);
  };
  const bool fp32_target = use_fp32_target(opt);
  std::vector<float> block_in_fp32;
  if (fp32_target) block_in_fp32 = capture(c, {{Tap::embed, -1}}).begin()->second;
  {
    auto caps = capture(c, {{Tap::patch_in, -1}});
    quantize_linear(c, "patch_embed.proj", caps.begin()->second, &c.q.patch_in, opt.edge_bits,
                    opt.search, true);
    tick("patch_embed");
  }
  std::vector<float> block_in = capture(c, {{Tap::embed, -1}}).begin()->second;
  for (int l = 0; l < depth; ++l)
    quantize_block(c, l, block_in, l + 1 < depth || cfg.num_classes > 0,
                   fp32_target ? &block_in_fp32 : nullptr, tick);
  if (cfg.num_classes > 0) {  // an embedding model has no head: its output stays fp32
    quantize_head(c, block_in, fp32_target ? &block_in_fp32 : nullptr);
    tick("head");
  }
  c.model->set_quant(c.q);
  if (report) {
    report_modules(c, report);
    report->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return write_model(c, fp32);
}

std::string PtqReport::stages_text() const {
  std::string out;
  for (const auto &st : stages) out += (out.empty() ? "" : ", ") + st;
  return out.empty() ? "none" : out;
}

json PtqReport::to_json() const {
  json j = {{"seconds", seconds}, {"avg_bits", avg_bits}, {"stages", stages}};
  j["layers"] = json::array();
  for (const auto &l : layers) {
    json row = {{"name", l.name},
                {"kind", l.kind},
                {"bits", l.x_bits},
                {"x_delta", l.x_delta},
                {"x_zero_point", l.x_zero_point},
                {"similarity_init", l.similarity_init},
                {"similarity", l.similarity},
                {"curve", l.curve}};
    if (l.gptq_error_ratio > 0) row["gptq_error_ratio"] = l.gptq_error_ratio;
    if (l.x_twin_shift > 0) row["x_twin_shift"] = l.x_twin_shift;
    if (!l.x_levels.empty()) row["x_levels"] = l.x_levels;
    if (l.kind == "matmul") {
      row["b_delta"] = l.b_delta;
      row["b_zero_point"] = l.b_zero_point;
      row["rank_loss_init"] = l.rank_loss_init;
      row["rank_loss"] = l.rank_loss;
    }
    j["layers"].push_back(row);
  }
  j["modules"] = json::array();
  for (const auto &m : modules) {
    json s = json::object();
    for (const auto &[b, v] : m.sensitivity) s[std::to_string(b)] = v;
    j["modules"].push_back({{"name", m.name},
                            {"bits", m.bits},
                            {"params", m.params},
                            {"nuclear_norm", m.nuclear_norm},
                            {"sensitivity", s}});
  }
  j["pareto_frontier"] = frontier;
  return j;
}

}  // namespace vqm::quant
