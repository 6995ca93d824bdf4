// The one description of the ViT family's network (DESIGN.md; the shape of gemma.cpp's
// LayerWeightsPtrs::ForEachTensor): the points of the forward that can be observed (taps), a
// block's linear layers in execution order with their module, shapes, input tap and input grid,
// and the names of their tensors. The converter's expected-tensor check, the quantization spec,
// the PTQ driver, both engines, vqm-inspect and the report read it instead of spelling layer
// names themselves.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "models/quant_spec.h"
#include "models/vit_config.h"

namespace vqm {

// Points of the forward that can be observed (engine taps). Data is valid only during the
// callback; every tap sees the data as the next op will (after fake quantization when the model
// has it).
enum class Tap {
  embed,     // [B*T, D] tokens after position embedding (and norm_pre)
  patch_in,  // [B*P, C*p*p] flattened patches (input of the patch-embedding matmul)
  qkv_in,    // [B*T, D] input of qkv (after norm1)
  q,
  k,
  v,              // [B*H*T, dh] head-major, before their products
  proj_in,        // [B*T, D] input of proj (merged heads)
  attn_residual,  // [B*T, D] residual stream after the attention branch was added
  fc1_in,         // [B*T, D] input of fc1 (after norm2)
  fc2_in,         // [B*T, hidden] input of fc2 (after the activation)
  attn_probs,     // [B*H*T, T] softmax output of block `block`
  block_out,      // [B*T, D] residual stream after block `block`
  prelogits,      // [B, D] the pooled, normalised embedding (the head's input, or the output)
};

// A block's linear layers, in execution order.
enum class Linear : uint8_t { qkv, proj, fc1, fc2 };
constexpr int kBlockLinears = 4;

struct LinearSpec {
  Linear id;
  const char *name;    // "attn.qkv": tensors "blocks.N.attn.qkv.weight" and ".bias"
  const char *module;  // "attn" or "mlp": the unit that mixed precision gives one bit-width
  Tap input;           // the tap that sees its input
  ActQuant BlockQuant::*input_grid;  // the grid its input is quantized on
  // Its input may take a chosen-level grid (ActQuant::levels): the engines quantize it with the
  // LayerNorm or GELU kernel into u8 codes, which one byte lookup maps (kernels.h CodeMap).
  // proj's input comes out of A·V as int8 levels, which have no such pass.
  bool chosen_levels;
};
const std::array<LinearSpec, kBlockLinears> &block_linears();
const LinearSpec &linear_spec(Linear id);

// Shapes [out, in] of a block's linear weight and whether it has a bias (qkv: qkv_bias).
int64_t linear_out(const VitConfig &c, Linear id);
int64_t linear_in(const VitConfig &c, Linear id);
bool linear_has_bias(const VitConfig &c, Linear id);

// The two modules of a block, in order ("attn", "mlp"), and the block's name prefix.
constexpr std::array<const char *, 2> kBlockModules = {"attn", "mlp"};
std::string block_prefix(int block);                // "blocks.3."
std::string layer_name(int block, Linear id);       // "blocks.3.attn.qkv"
std::string module_name(int block, const char *m);  // "blocks.3.attn"
// The two attention products, as the quantizer's reports name them: "blocks.3.attn.q@k",
// "blocks.3.attn.a@v".
std::string qk_name(int block);
std::string av_name(int block);

}  // namespace vqm
