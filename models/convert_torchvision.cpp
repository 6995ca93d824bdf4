// torchvision's VisionTransformer state dict -> Checkpoint under timm's names. torchvision's
// encoder block is timm's (pre-norm, nn.MultiheadAttention whose in_proj holds q, k, v stacked
// like timm's qkv, LayerNorm eps 1e-6, exact GELU) and its head reads the class token after the
// final LayerNorm, so the mapping is names only.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>

#include "models/convert.h"
#include "models/convert_util.h"
#include "runtime/io/error.h"

namespace vqm {

using nlohmann::json;

namespace {

using convert_util::dim;
using convert_util::starts_with;

// torchvision's names after "encoder.layers.encoder_layer_N." -> timm's after "blocks.N.".
// mlp.linear_1 / linear_2 are torchvision < 0.13's names of mlp.0 / mlp.3.
constexpr std::pair<const char *, const char *> kBlock[] = {
    {"ln_1.weight", "norm1.weight"},
    {"ln_1.bias", "norm1.bias"},
    {"self_attention.in_proj_weight", "attn.qkv.weight"},
    {"self_attention.in_proj_bias", "attn.qkv.bias"},
    {"self_attention.out_proj.weight", "attn.proj.weight"},
    {"self_attention.out_proj.bias", "attn.proj.bias"},
    {"ln_2.weight", "norm2.weight"},
    {"ln_2.bias", "norm2.bias"},
    {"mlp.0.weight", "mlp.fc1.weight"},
    {"mlp.0.bias", "mlp.fc1.bias"},
    {"mlp.3.weight", "mlp.fc2.weight"},
    {"mlp.3.bias", "mlp.fc2.bias"},
    {"mlp.linear_1.weight", "mlp.fc1.weight"},
    {"mlp.linear_1.bias", "mlp.fc1.bias"},
    {"mlp.linear_2.weight", "mlp.fc2.weight"},
    {"mlp.linear_2.bias", "mlp.fc2.bias"},
};
constexpr std::pair<const char *, const char *> kTop[] = {
    {"class_token", "cls_token"},
    {"conv_proj.weight", "patch_embed.proj.weight"},
    {"conv_proj.bias", "patch_embed.proj.bias"},
    {"encoder.pos_embedding", "pos_embed"},
    {"encoder.ln.weight", "norm.weight"},
    {"encoder.ln.bias", "norm.bias"},
    {"heads.head.weight", "head.weight"},
    {"heads.head.bias", "head.bias"},
};

std::string timm_name(const std::string &name, const std::string &source) {
  for (const auto &[from, to] : kTop)
    if (name == from) return to;
  if (starts_with(name, "heads.pre_logits."))
    fail(ErrorCode::unsupported,
         "tensor '" + name + "' in " + source +
             ": a torchvision ViT with representation_size (heads.pre_logits, a tanh layer "
             "before the head) is not supported");
  if (starts_with(name, "conv_proj."))
    fail(ErrorCode::unsupported, "tensor '" + name + "' in " + source +
                                     ": a torchvision ViT with a convolutional stem "
                                     "(conv_stem_configs) is not supported");
  const std::string layer = "encoder.layers.encoder_layer_";
  if (starts_with(name, layer)) {
    size_t end = layer.size();
    while (end < name.size() && end - layer.size() < 6 &&
           std::isdigit(static_cast<unsigned char>(name[end])))
      ++end;
    if (end > layer.size() && end < name.size() && name[end] == '.') {
      const std::string rest = name.substr(end + 1);
      for (const auto &[from, to] : kBlock)
        if (rest == from)
          return "blocks." + std::to_string(std::stoi(name.substr(layer.size()))) + "." + to;
    }
  }
  fail(ErrorCode::unsupported,
       "tensor '" + name + "' in " + source + " is not part of torchvision's VisionTransformer");
}

}  // namespace

Checkpoint torchvision_checkpoint(std::vector<TensorInfo> tensors, const std::string &source,
                                  std::map<std::string, std::string> metadata,
                                  std::shared_ptr<const void> keep) {
  Checkpoint c;
  c.format = SourceFormat::torchvision;
  c.source = source;
  c.keep = std::move(keep);
  c.metadata = std::move(metadata);
  for (auto &t : tensors) {
    t.name = timm_name(t.name, source);
    if (c.find(t.name))
      fail(ErrorCode::format, "tensor '" + t.name + "' appears twice in " + source +
                                  " (torchvision's old and new MLP names together)");
    c.tensors.push_back(std::move(t));
  }
  const TensorInfo &pw = c.get("patch_embed.proj.weight");
  const TensorInfo &pos = c.get("pos_embed");
  if (pw.shape.size() != 4 || pos.shape.size() != 3)
    fail(ErrorCode::format, source + ": conv_proj.weight " + shape_str(pw.shape) +
                                " / encoder.pos_embedding " + shape_str(pos.shape) +
                                ": expected [D, C, p, p] / [1, 1 + patches, D]");
  const int grid = static_cast<int>(std::lround(std::sqrt(std::max(dim(pos, 1) - 1, 0))));
  if (grid < 1 || grid * grid != dim(pos, 1) - 1)
    fail(ErrorCode::format, source + ": encoder.pos_embedding " + shape_str(pos.shape) +
                                " does not hold the class token's row and a square grid");
  const int image_size = grid * dim(pw, 2);
  int depth = 0;
  while (c.find("blocks." + std::to_string(depth) + ".norm1.weight")) ++depth;

  // The kwargs torchvision's constructor took, when the file records them ("overrides"): checked
  // against the shapes; num_heads is read by the converter from there.
  if (auto it = c.metadata.find("overrides"); it != c.metadata.end()) {
    const json o = json::parse(it->second, nullptr, /*allow_exceptions=*/false);
    const TensorInfo *head = c.find("head.weight");
    const TensorInfo *fc1 = c.find("blocks.0.mlp.fc1.weight");
    const std::pair<const char *, int> checks[] = {
        {"image_size", image_size},           {"patch_size", dim(pw, 2)},
        {"hidden_dim", dim(pw, 0)},           {"num_layers", depth},
        {"mlp_dim", fc1 ? dim(*fc1, 0) : -1}, {"num_classes", head ? dim(*head, 0) : -1}};
    if (o.is_object())
      for (const auto &[key, value] : checks)
        if (o.contains(key) && o[key].is_number_integer() && o[key].get<int>() != value)
          fail(ErrorCode::format, source + ": metadata overrides " + key + " = " + o[key].dump() +
                                      " contradicts the tensors (" + std::to_string(value) + ")");
  }
  c.metadata.emplace("arch", "torchvision_vit");
  c.metadata["ln_eps"] = "1e-06";  // torchvision's partial(nn.LayerNorm, eps=1e-6)
  c.metadata["global_pool"] = "token";
  c.metadata["act_layer"] = "gelu";
  // torchvision's ViT eval transform (ViT_*_Weights.IMAGENET1K_V1.transforms():
  // ImageClassification(crop_size=224), resize 256 bilinear, ImageNet mean/std); other input
  // sizes keep the 256/224 ratio.
  if (!c.metadata.count("pretrained_cfg")) {
    const int resize = image_size * 256 / 224;
    c.metadata["pretrained_cfg"] = json{
        {"input_size", {dim(pw, 1), image_size, image_size}},
        {"interpolation", "bilinear"},
        {"crop_pct", static_cast<double>(image_size) / resize},
        {"crop_mode", "center"},
        {"mean", {0.485, 0.456, 0.406}},
        {"std", {0.229, 0.224, 0.225}},
        {"resize_size", resize}}.dump();
    c.notes.push_back("torchvision checkpoint: using torchvision's ViT eval transform: resize " +
                      std::to_string(resize) + " bilinear, crop " + std::to_string(image_size) +
                      ", ImageNet mean/std; override with --crop-pct/--mean/--std/--interpolation");
  }
  return c;
}

Checkpoint torchvision_checkpoint(SafetensorsFile file) {
  auto owner = std::make_shared<SafetensorsFile>(std::move(file));
  return torchvision_checkpoint(owner->tensors(), owner->source(), owner->metadata(), owner);
}

}  // namespace vqm
