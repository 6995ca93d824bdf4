// Shared state and steps of the PTQ driver (ptq.cpp) and the mixed-precision sensitivity
// analysis (mixed_precision.cpp). Internal to quantizer/.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "quantizer/ptq.h"
#include "runtime/engine/vit.h"

namespace vqm::quant {

struct PtqContext {
  std::shared_ptr<VitModel> model;
  // The calibration images every capture and search sees (mixed precision's sensitivity analysis
  // points it at a prefix of them for its duration).
  const CalibrationSet *calib;
  const PtqOptions &opt;
  ModelQuant q;                                    // decided so far (undecided points disabled)
  std::map<std::string, std::vector<float>> fp32;  // original weights and biases
  // Results for the writer: integer weights, per-row deltas and bits, by weight name.
  struct IntWeight {
    std::vector<int8_t> values;
    std::vector<float> scale;
    int bits;
  };
  std::map<std::string, IntWeight> int_weights;
  PtqReport *report = nullptr;
  Progress progress;

  PtqContext(std::shared_ptr<VitModel> m, const CalibrationSet &c, const PtqOptions &o);
};

// Activations at several taps in one calibration pass (stopping after the last one), each as
// the concatenation over all calibration images, in image order. With `start`, the pass begins
// at that block from its cached input (the taps must all come after it).
using TapKey = std::pair<Tap, int>;  // (tap, block)
std::map<TapKey, std::vector<float>> capture(PtqContext &c, const std::vector<TapKey> &taps,
                                             const StartAt *start = nullptr);

// Zero point of a b-bit activation grid from the data's range (ours, see docs/quantization.md):
// 0 for non-negative data (softmax), about 2^(b-1) for symmetric data, in between for skewed
// data such as GELU outputs.
int choose_zero_point(const std::vector<float> &x, int bits);

// One linear layer `layer` ("blocks.3.mlp.fc1", "patch_embed.proj", "head"): search on input
// `x`, install fake-quant weights, corrected bias and the input grid in `point`. With `record`,
// keep integer weights for the writer and a report row. `x_fp32`, when given: the fp32 model's
// input of the layer on the same images, which GPTQ's target then reproduces.
void quantize_linear(PtqContext &c, const std::string &layer, const std::vector<float> &x,
                     ActQuant *point, int bits, const SearchOptions &so, bool record,
                     const std::vector<float> *x_fp32 = nullptr);
// The search of block linear `ls`: `so`, with chosen input levels where that stage runs and the
// engines allow them (LinearSpec::chosen_levels).
SearchOptions linear_search(const PtqContext &c, const SearchOptions &so, const LinearSpec &ls);
// Q·Kᵀ and A·V of block l (q, k, v: [n*H*T, dh]; a: [n*H*T, T]).
void quantize_qk(PtqContext &c, int l, const std::vector<float> &q, const std::vector<float> &k,
                 int bits, const SearchOptions &so, bool record);
void quantize_av(PtqContext &c, int l, const std::vector<float> &a, const std::vector<float> &v,
                 int bits, const SearchOptions &so, bool record);

// Back to fp32 for one module of block l (weights, biases, activation points).
void restore_module(PtqContext &c, int l, bool attn);

// Mixed precision: Omega_l(b) for every module and candidate, then the Pareto choice within
// `budget_bits` (bits of block weights). Returns (attn bits, mlp bits) per block.
std::vector<std::pair<int, int>> choose_mixed_bits(PtqContext &c, double budget_bits);

int64_t module_params(const VitConfig &cfg, bool attn);

// The post-LayerNorm reparameterization stage (reparam.cpp): rewrites norm1/norm2 and the qkv/
// fc1 weights of the fp32 model in `c` (model and originals) so that every channel of their
// output spans the same calibration range. The fp32 function is unchanged.
void reparam_post_layernorm(PtqContext &c);

}  // namespace vqm::quant
