// ViT/DeiT geometry and the .vqm JSON that carries it ("model", "preprocess", "labels").
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/io/image.h"

namespace vqm {

// The MLP's activation: GELU (erf form) or CLIP's QuickGELU, x * sigmoid(1.702 x).
enum class Activation : uint8_t { gelu, quick_gelu };
// What the head sees: the class token, or the mean of the patch tokens (prefix tokens excluded).
enum class Pool : uint8_t { token, avg };

struct VitConfig {
  std::string arch = "vit";  // free text: timm architecture name when known
  int image_size = 224;
  int patch_size = 16;
  int in_chans = 3;
  int embed_dim = 384;
  int depth = 12;
  int num_heads = 6;
  int mlp_hidden = 1536;
  int num_classes = 1000;  // 0: no head, the output is the pooled embedding (embed_dim values)
  float ln_eps = 1e-6f;
  // The family's variations. Each default is the plain timm ViT/DeiT, so files written before
  // these keys existed read unchanged. LayerScale is not among them: the converter folds its
  // gammas into the projections before it (attn.proj, mlp.fc2), exactly.
  bool class_token = true;  // a learned class token starts the sequence
  bool distilled = false;   // DeiT distilled: dist_token after the class token, head_dist
  int reg_tokens = 0;       // register tokens (DINOv2 "reg"), after class/dist, before patches
  // pos_embed has rows for the class/dist/register tokens too (timm's default); false: for the
  // patches only, and the prefix tokens get none (timm's no_embed_class: DeiT III, DINOv2-reg).
  bool pos_embed_prefix = true;
  bool patch_bias = true;  // the patch embedding has a bias (CLIP: none)
  bool norm_pre = false;   // a LayerNorm before the blocks (CLIP)
  bool qkv_bias = true;
  Activation act = Activation::gelu;
  Pool pool = Pool::token;
  // The final LayerNorm comes after pooling ("fc_norm") instead of over every token ("norm").
  bool fc_norm = false;
  bool head_bias = true;  // CLIP's projection has none

  int grid() const { return image_size / patch_size; }
  int num_patches() const { return grid() * grid(); }
  int num_prefix_tokens() const { return int{class_token} + int{distilled} + reg_tokens; }
  int tokens() const { return num_patches() + num_prefix_tokens(); }
  int pos_tokens() const { return num_patches() + (pos_embed_prefix ? num_prefix_tokens() : 0); }
  int head_dim() const { return embed_dim / num_heads; }
  int patch_dim() const { return in_chans * patch_size * patch_size; }
  int64_t input_size() const { return int64_t{in_chans} * image_size * image_size; }
  // Values per image the model outputs: logits, or the embedding of a model without a head.
  int n_outputs() const { return num_classes > 0 ? num_classes : embed_dim; }

  nlohmann::json to_json() const;
  // Range-checks every field (positive, divisible, below sane maxima); throws vqm::Error(format)
  // naming the field and value.
  static VitConfig from_json(const nlohmann::json &j);
  void validate() const;
};

const char *activation_name(Activation a);  // "gelu", "quick_gelu"
const char *pool_name(Pool p);              // "token", "avg"

nlohmann::json preprocess_to_json(const PreprocessConfig &p);
PreprocessConfig preprocess_from_json(const nlohmann::json &j, int expected_channels, int crop);

// The tensors a model of this geometry must have, with their shapes (timm names).
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<ExpectedTensor> expected_tensors(const VitConfig &cfg);

}  // namespace vqm
