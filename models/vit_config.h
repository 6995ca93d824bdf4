// ViT/DeiT geometry and the .vqm JSON that carries it ("model", "preprocess", "labels").
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/io/image.h"

namespace vqm {

struct VitConfig {
  std::string arch = "vit";  // free text: timm architecture name when known
  int image_size = 224;
  int patch_size = 16;
  int in_chans = 3;
  int embed_dim = 384;
  int depth = 12;
  int num_heads = 6;
  int mlp_hidden = 1536;
  int num_classes = 1000;
  float ln_eps = 1e-6f;
  bool distilled = false;  // DeiT distilled: dist_token + head_dist, eval output = mean of heads

  int grid() const { return image_size / patch_size; }
  int num_patches() const { return grid() * grid(); }
  int num_prefix_tokens() const { return distilled ? 2 : 1; }
  int tokens() const { return num_patches() + num_prefix_tokens(); }
  int head_dim() const { return embed_dim / num_heads; }
  int patch_dim() const { return in_chans * patch_size * patch_size; }
  int64_t input_size() const { return int64_t{in_chans} * image_size * image_size; }

  nlohmann::json to_json() const;
  // Range-checks every field (positive, divisible, below sane maxima); throws vqm::Error(format)
  // naming the field and value.
  static VitConfig from_json(const nlohmann::json &j);
  void validate() const;
};

nlohmann::json preprocess_to_json(const PreprocessConfig &p);
PreprocessConfig preprocess_from_json(const nlohmann::json &j, int expected_channels, int crop);

// The tensors a model of this geometry must have, with their shapes (timm names).
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<ExpectedTensor> expected_tensors(const VitConfig &cfg);

}  // namespace vqm
