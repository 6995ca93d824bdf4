// Post-training quantization of a whole ViT (PTQ.md): calibration through the runtime's own
// forward, per-layer interval search in network order (each layer sees the already-quantized
// layers before it), bias correction, and nuclear-norm mixed precision on a Pareto frontier.
#pragma once
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "quantizer/calibrate.h"
#include "quantizer/gptq.h"
#include "quantizer/search.h"
#include "runtime/io/format.h"

namespace vqm::quant {

struct PtqOptions {
  std::string method = "ptq";    // ptq | minmax | percentile
  int bits = 8;                  // uniform bit-width of every MSA and MLP module
  double mixed_avg_bits = 0;     // > 0: mixed precision, parameter-weighted average weight bits
  double size_budget_bytes = 0;  // > 0: mixed precision within this many bytes of block weights
  // Mixed precision's choices per module. Below min_act_bits they are weight widths only: a
  // module at b bits quantizes its activations at max(b, min_act_bits) (ours: where a module is
  // insensitive its weights can go below 3 bits, which lets --mixed 3 trade; activations below
  // the average lose far more than weights do, docs/quantization.md).
  std::vector<int> candidate_bits = {2, 3, 4, 5, 6, 8};
  // 0: 3 bits (a uniform --bits 2 is W2A3), and under mixed precision the budget's average bits
  // rounded up, at least 3 (--mixed 4: no activation below 4 bits; the budget buys weight bits).
  int min_act_bits = 0;
  bool ranking = true;
  bool bias_correction = true;
  // Stage after the search (ours, not in the paper; method ptq only): GPTQ error-feedback
  // rounding of every linear layer's weights at the searched deltas (gptq.h).
  bool gptq = true;
  GptqOptions gptq_options;
  // Stage (ours, with gptq): GPTQ rounds toward the weights that best reproduce the fp32 model's
  // output of each layer from its quantized inputs (gptq.h output_matched_weights).
  bool fp32_target = true;
  double fp32_target_damp = 1.0;
  // Stage (ours, method ptq only, below 8 bits): the softmax output may take the two-range grid
  // (ActGrid::twin_shift) where it scores better than the uniform one.
  bool twin_softmax = true;
  // Stage (ours, method ptq only, below 8 bits): LayerNorm and GELU outputs may take chosen levels
  // (Lloyd-Max on a fine grid, quantizer/codebook.h) where they score better than the uniform grid.
  bool codebook = true;
  // Stage (ours, after RepQ-ViT; method ptq only), before everything else: LayerNorm outputs
  // rescaled per channel to one common range, the inverse folded into qkv and fc1 (reparam.cpp).
  bool reparam = true;
  int edge_bits = 8;  // patch embedding and classifier head (PTQ.md: 8 by default)
  double percentile = 0.9999;
  // The tool's search: SearchOptions' defaults with the coarse-to-fine scan (stride 4), measured
  // to cost nothing on accuracy (docs/quantization.md) for about a third of the products.
  SearchOptions search = [] {
    SearchOptions s;
    s.coarse_stride = 4;
    return s;
  }();
  // Sensitivity estimation for mixed precision only needs the error's order of magnitude per
  // module and bit-width, so it uses a coarser search (ours): 10 candidates, one round (20 gave
  // the same accuracy over 3 seeds on both test models, docs/quantization.md).
  SearchOptions sensitivity_search = [] {
    SearchOptions s;
    s.candidates = 10;
    s.rounds = 1;
    s.refine_channels = false;
    s.coarse_stride = 4;
    return s;
  }();
  // Mixed precision's sensitivity analysis (every candidate search and trial forward) runs on the
  // first this many calibration images (ours; 0 = all). It only has to rank the modules' errors,
  // and it costs one coarse search and one forward per module and candidate bit-width (about half
  // of a mixed-precision run at 8); docs/quantization.md measures what fewer images change.
  int sensitivity_images = 8;
  int calib_batch = 32;
  // Where a module's quantization error is measured for its mixed-precision sensitivity:
  // "module": its own output (PTQ.md, the paper); "output" (ours): the network's output feature
  // (the pre-logit LayerNorm output), so an error that later blocks amplify or wash out counts
  // as it reaches the classifier. See docs/quantization.md for the measured difference.
  std::string sensitivity_at = "output";
  // Uniform bits only: also measure the mixed-precision sensitivity (Omega per module and
  // bit-width) and the Pareto frontier for the report, without changing the bits. Costs one
  // coarse search per module and candidate bit-width, as mixed precision does.
  bool measure_sensitivity = false;
};

// Activation bits of a module at `bits` (PtqOptions::min_act_bits, resolved by quantize: > 0).
inline int act_bits(const PtqOptions &o, int bits) {
  return bits > o.min_act_bits ? bits : o.min_act_bits;
}

struct LayerReport {
  std::string name;  // e.g. "blocks.3.attn.qkv" or "blocks.3.attn.q@k"
  std::string kind;  // "linear" or "matmul"
  int w_bits = 0, x_bits = 0;
  float x_delta = 0;
  int x_zero_point = 0;
  int x_twin_shift = 0;           // the softmax output's two-range grid, if chosen
  std::vector<uint8_t> x_levels;  // the input's chosen levels (codes of x_delta), if chosen
  float b_delta = 0;              // matmul: second operand
  int b_zero_point = 0;
  double similarity_init = 0, similarity = 0;
  double rank_loss_init = 0, rank_loss = 0;
  std::vector<std::pair<float, double>> curve;
  // Linear layers with the GPTQ stage: its output error energy over nearest rounding's (< 1).
  double gptq_error_ratio = 0;
};

struct ModuleReport {
  std::string name;  // "blocks.3.attn" / "blocks.3.mlp"
  int bits = 0;
  int64_t params = 0;
  double nuclear_norm = 0;
  std::map<int, double> sensitivity;  // bits -> Omega (mixed precision only)
};

struct PtqReport {
  std::vector<LayerReport> layers;
  std::vector<ModuleReport> modules;
  std::vector<std::pair<double, double>> frontier;  // (bits of block weights, predicted error)
  double seconds = 0;
  double avg_bits = 0;  // parameter-weighted over the block weights
  // The optional stages that ran, named as their switches (--no-<stage>): "ranking",
  // "bias-correction", "reparam", "gptq", "fp32-target", "twin-softmax".
  std::vector<std::string> stages;
  std::string stages_text() const;  // "ranking, ..., twin-softmax", or "none"
  nlohmann::json to_json() const;
};

// stage, done, total: called as work progresses (for progress bars).
using Progress = std::function<void(const std::string &, int, int)>;

// Quantizes the fp32 model in `fp32` and returns the quantized .vqm, ready to write.
// Throws vqm::Error on bad options or an already-quantized input.
VqmWriter quantize(const VqmFile &fp32, const CalibrationSet &calib, const PtqOptions &opt,
                   PtqReport *report, const Progress &progress = nullptr);

}  // namespace vqm::quant
