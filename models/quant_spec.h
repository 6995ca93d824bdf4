// What a quantized .vqm says about activations: for every point where the forward quantizes an
// activation (the inputs of every linear layer and of both attention products), the grid
// (bits, delta, zero point), plus the bits of each module. Stored in the JSON "quantization"
// section; the weights themselves are i8/q4/q6 tensors with f32 per-channel scales.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vqm {

// Affine grid inside [0, 2^bits - 1]: q = clamp(round(x / delta) + zero_point), x^ = (q - zp) *
// delta. zero_point = 2^(bits-1) is the symmetric signed grid; 0 the unsigned one (softmax output).
struct ActQuant {
  bool enabled = false;
  int bits = 8;
  int zero_point = 128;
  float delta = 1.f;
  // > 0: the two-range grid of the attention probabilities (kernels.h TwinCodes; zero point 0):
  // fine codes c * delta below 2^(bits-1), then multiples of 2^twin_shift up to twin_top(),
  // stored as fine codes. Valid only for the softmax output ("attn") and when twin_valid().
  int twin_shift = 0;
  // Non-empty: a chosen-level grid (kernels.h CodeMap): 2^bits strictly increasing codes of a
  // fine 8-bit grid of step delta and zero point zero_point (0..255). Only for the inputs the
  // layer table marks (LinearSpec::chosen_levels); bits <= 7.
  std::vector<uint8_t> levels{};
  int qmax() const { return (1 << bits) - 1; }
  // The largest code the grid's bytes hold: 255 for the two grids whose codes are fine codes.
  int code_max() const { return twin_shift > 0 || !levels.empty() ? 255 : qmax(); }
  // The lowest and highest code a value takes: the grid spans (code - zero_point) * delta over
  // them.
  int lowest_code() const { return levels.empty() ? 0 : levels.front(); }
  int highest_code() const {
    return !levels.empty() ? levels.back() : twin_shift > 0 ? twin_top() : qmax();
  }
  int twin_top() const { return 1 << (bits - 1 + twin_shift); }
  bool twin_valid() const {
    return twin_shift >= 1 && twin_shift <= bits - 1 && twin_top() <= 255 && zero_point == 0;
  }
};

struct BlockQuant {
  ActQuant qkv_in, q, k, attn, v, proj_in, fc1_in, fc2_in;
  int attn_bits = 8;  // all of the MSA module (weights and inputs)
  int mlp_bits = 8;   // all of the MLP module
};

struct ModelQuant {
  ActQuant patch_in, head_in;
  std::vector<BlockQuant> blocks;
};

// The per-block activation points: JSON key suffix ("blocks.N." + key) and member.
struct BlockPoint {
  const char *key;
  ActQuant BlockQuant::*member;
};
const std::vector<BlockPoint> &block_points();

// "quantization": {"activations": {name: {bits, delta, zero_point[, twin_shift | levels]}},
// "modules": {"blocks.N.attn": {"bits": b}, ...}, ...}. Throws vqm::Error(format) naming the
// entry on anything missing or out of range (bits 2..8, delta finite > 0, zero point in
// [0, 2^bits - 1], or [0, 255] with levels).
// A model without a head (num_classes 0) has no "head.input".
ModelQuant quant_from_json(const nlohmann::json &q, int depth, bool has_head);
// Writes "activations" and "modules" into `q` (other keys are left as they are); "head.input"
// only when head_in is enabled.
void quant_to_json(const ModelQuant &m, nlohmann::json &q);

}  // namespace vqm
