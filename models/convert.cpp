#include "models/convert.h"
#include "models/convert_util.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "models/labels.h"
#include "models/layer_table.h"
#include "models/vit_config.h"
#include "runtime/io/error.h"
#include "runtime/io/pth.h"

namespace vqm {

using nlohmann::json;

const std::vector<Preset> &presets() {
  // timm's default_cfg values: crop_pct, interpolation, mean/std (IMAGENET_DEFAULT for DeiT,
  // 0.5/0.5 "inception" normalisation for the augreg ViTs).
  static const std::vector<Preset> p = {
      {"deit_tiny_patch16_224",
       3,
       224,
       0.875f,
       "bicubic",
       {0.485f, 0.456f, 0.406f},
       {0.229f, 0.224f, 0.225f},
       false},
      {"deit_small_patch16_224",
       6,
       224,
       0.875f,
       "bicubic",
       {0.485f, 0.456f, 0.406f},
       {0.229f, 0.224f, 0.225f},
       false},
      {"deit_base_patch16_224",
       12,
       224,
       0.875f,
       "bicubic",
       {0.485f, 0.456f, 0.406f},
       {0.229f, 0.224f, 0.225f},
       false},
      {"deit_base_patch16_384",
       12,
       384,
       1.0f,
       "bicubic",
       {0.485f, 0.456f, 0.406f},
       {0.229f, 0.224f, 0.225f},
       false},
      {"deit_tiny_distilled_patch16_224",
       3,
       224,
       0.875f,
       "bicubic",
       {0.485f, 0.456f, 0.406f},
       {0.229f, 0.224f, 0.225f},
       true},
      {"deit_small_distilled_patch16_224",
       6,
       224,
       0.875f,
       "bicubic",
       {0.485f, 0.456f, 0.406f},
       {0.229f, 0.224f, 0.225f},
       true},
      {"deit_base_distilled_patch16_224",
       12,
       224,
       0.875f,
       "bicubic",
       {0.485f, 0.456f, 0.406f},
       {0.229f, 0.224f, 0.225f},
       true},
      {"vit_tiny_patch16_224",
       3,
       224,
       0.9f,
       "bicubic",
       {0.5f, 0.5f, 0.5f},
       {0.5f, 0.5f, 0.5f},
       false},
      {"vit_small_patch16_224",
       6,
       224,
       0.9f,
       "bicubic",
       {0.5f, 0.5f, 0.5f},
       {0.5f, 0.5f, 0.5f},
       false},
      {"vit_base_patch16_224",
       12,
       224,
       0.9f,
       "bicubic",
       {0.5f, 0.5f, 0.5f},
       {0.5f, 0.5f, 0.5f},
       false},
      {"vit_base_patch16_384",
       12,
       384,
       1.0f,
       "bicubic",
       {0.5f, 0.5f, 0.5f},
       {0.5f, 0.5f, 0.5f},
       false},
      {"vit_large_patch16_224",
       16,
       224,
       0.9f,
       "bicubic",
       {0.5f, 0.5f, 0.5f},
       {0.5f, 0.5f, 0.5f},
       false},
  };
  return p;
}

namespace {

using convert_util::dim;

const Preset *find_preset(const std::string &name) {
  for (const auto &p : presets())
    if (name == p.name) return &p;
  return nullptr;
}

void expect_rank(const TensorInfo &t, size_t rank) {
  if (t.shape.size() != rank)
    fail(ErrorCode::format, "tensor '" + t.name + "' has shape " + shape_str(t.shape) +
                                ", expected rank " + std::to_string(rank));
}

// Metadata numbers are strings in safetensors; parse strictly.
std::optional<double> meta_number(const std::map<std::string, std::string> &meta,
                                  const std::string &key) {
  auto it = meta.find(key);
  if (it == meta.end()) return std::nullopt;
  try {
    size_t used = 0;
    double v = std::stod(it->second, &used);
    if (used != it->second.size()) throw std::invalid_argument("trailing");
    return v;
  } catch (const std::exception &) {
    fail(ErrorCode::format, "metadata '" + key + "' = '" + it->second + "' is not a number");
  }
}

// "0.286" or "0.485,0.456,0.406": one value per channel (a single value is broadcast).
std::optional<std::vector<float>> meta_vector(const std::map<std::string, std::string> &meta,
                                              const std::string &key, int channels) {
  auto it = meta.find(key);
  if (it == meta.end()) return std::nullopt;
  std::vector<float> out;
  std::string s = it->second;
  for (char &ch : s)
    if (ch == '[' || ch == ']' || ch == '(' || ch == ')') ch = ' ';
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    try {
      out.push_back(std::stof(s.substr(pos, end - pos)));
    } catch (const std::exception &) {
      fail(ErrorCode::format,
           "metadata '" + key + "' = '" + it->second + "' is not a list of numbers");
    }
    pos = end + 1;
  }
  if (out.size() == 1) out.assign(channels, out[0]);
  if (out.size() != static_cast<size_t>(channels))
    fail(ErrorCode::format, "metadata '" + key + "' has " + std::to_string(out.size()) +
                                " values for " + std::to_string(channels) + " channels");
  return out;
}

// The JSON object a metadata key holds (timm's "pretrained_cfg", "overrides"), or null.
json meta_json(const std::map<std::string, std::string> &meta, const std::string &key) {
  auto it = meta.find(key);
  if (it == meta.end()) return json();
  json j = json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    fail(ErrorCode::format, "metadata '" + key + "' is not a JSON object");
  return j;
}

// The head count: the flag, the metadata (timm overrides too), the preset, else head_dim 64.
void infer_heads(const Checkpoint &in, const ConvertOptions &opt, const Preset *preset,
                 std::vector<std::string> *notes, VitConfig *cfg) {
  VitConfig &c = *cfg;
  const auto &meta = in.metadata;
  const json overrides = meta_json(meta, "overrides");
  if (opt.num_heads > 0) {
    c.num_heads = opt.num_heads;
  } else if (auto h = meta_number(meta, "num_heads")) {
    c.num_heads = static_cast<int>(*h);
  } else if (overrides.contains("num_heads") && overrides["num_heads"].is_number_integer()) {
    c.num_heads = overrides["num_heads"].get<int>();
  } else if (preset) {
    c.num_heads = preset->num_heads;
  } else if (c.embed_dim % 64 == 0) {
    c.num_heads = c.embed_dim / 64;
    if (notes)
      notes->push_back("head count is not stored in the checkpoint: assuming head_dim 64, " +
                       std::to_string(c.num_heads) + " heads (override with --heads)");
  } else {
    fail(ErrorCode::invalid_argument, "cannot infer the head count (embed_dim " +
                                          std::to_string(c.embed_dim) +
                                          " is not a multiple of 64): pass --heads or --preset");
  }
}

// A string setting from the metadata key itself or from timm's "overrides" (create_model kwargs).
std::optional<std::string> meta_setting(const std::map<std::string, std::string> &meta,
                                        const json &overrides, const std::string &key) {
  if (auto it = meta.find(key); it != meta.end()) return it->second;
  if (overrides.contains(key) && overrides[key].is_string())
    return overrides[key].get<std::string>();
  return std::nullopt;
}

// Settings that no tensor shows, by timm architecture family: CLIP towers use torch's LayerNorm
// (eps 1e-5) and the "_quickgelu" ones QuickGELU (timm's model_args for those names).
void arch_defaults(const std::string &arch, VitConfig *c) {
  if (arch.find("clip") != std::string::npos) c->ln_eps = 1e-5f;
  if (arch.find("quickgelu") != std::string::npos) c->act = Activation::quick_gelu;
}

// Rows of pos_embed that belong to prefix tokens, and so the image size: timm's default has a row
// for every prefix token, no_embed_class (DeiT III, DINOv2 with registers) none. The input size
// of pretrained_cfg decides where both readings give a square grid.
void infer_grid(const Checkpoint &in, const json &cfg, VitConfig *c) {
  const TensorInfo &pos = in.get("pos_embed");
  expect_rank(pos, 3);
  const int rows = dim(pos, 1), prefix = c->num_prefix_tokens();
  auto square = [](int n) {
    const int g = static_cast<int>(std::lround(std::sqrt(std::max(n, 0))));
    return n > 0 && g * g == n ? g : 0;
  };
  int want = 0;  // grid side pretrained_cfg implies
  if (cfg.contains("input_size") && cfg["input_size"].is_array() && cfg["input_size"].size() == 3 &&
      cfg["input_size"][2].is_number_integer())
    want = cfg["input_size"][2].get<int>() / c->patch_size;
  const int with_prefix = square(rows - prefix), patches_only = square(rows);
  if (with_prefix && (with_prefix == want || !want || patches_only != want)) {
    c->pos_embed_prefix = true;
    c->image_size = with_prefix * c->patch_size;
  } else if (patches_only) {
    c->pos_embed_prefix = false;
    c->image_size = patches_only * c->patch_size;
  } else {
    fail(ErrorCode::unsupported, "pos_embed " + shape_str(pos.shape) +
                                     " does not hold a square grid of patches, with or without " +
                                     std::to_string(prefix) + " prefix token(s)");
  }
}

VitConfig infer_config(const Checkpoint &in, const ConvertOptions &opt, const Preset *preset,
                       std::vector<std::string> *notes) {
  VitConfig c;
  const auto &meta = in.metadata;
  const json cfg = meta_json(meta, "pretrained_cfg"), overrides = meta_json(meta, "overrides");
  const TensorInfo &pw = in.get("patch_embed.proj.weight");
  expect_rank(pw, 4);
  c.embed_dim = dim(pw, 0);
  c.in_chans = dim(pw, 1);
  c.patch_size = dim(pw, 2);
  if (dim(pw, 3) != c.patch_size)
    fail(ErrorCode::unsupported, "patch_embed.proj.weight " + shape_str(pw.shape) +
                                     ": expected [embed_dim, C, p, p] with square patches");
  // The variant, from which tensors exist.
  c.class_token = in.find("cls_token") != nullptr;
  c.distilled = in.find("dist_token") != nullptr;
  if (const TensorInfo *reg = in.find("reg_token")) {
    expect_rank(*reg, 3);
    c.reg_tokens = dim(*reg, 1);
  }
  c.patch_bias = in.find("patch_embed.proj.bias") != nullptr;
  c.norm_pre = in.find("norm_pre.weight") != nullptr;
  c.qkv_bias = in.find("blocks.0.attn.qkv.bias") != nullptr;
  c.fc_norm = in.find("fc_norm.weight") != nullptr;
  const TensorInfo *head = in.find("head.weight");
  if (head) {
    expect_rank(*head, 2);
    c.num_classes = dim(*head, 0);
  } else {
    c.num_classes = 0;  // no classifier: the model outputs its embedding
  }
  c.head_bias = in.find("head.bias") != nullptr;
  // What no tensor shows: pooling, activation, LayerNorm eps.
  c.arch = preset ? preset->name : meta.count("arch") ? meta.at("arch") : "vit";
  arch_defaults(c.arch, &c);
  const auto pool = meta_setting(meta, overrides, "global_pool");
  c.pool = !c.class_token || c.fc_norm || (pool && *pool == "avg") ? Pool::avg : Pool::token;
  if (pool && *pool != "avg" && *pool != "token")
    fail(ErrorCode::unsupported, "global_pool '" + *pool + "' is not supported (token, avg)");
  if (auto act = meta_setting(meta, overrides, "act_layer")) {
    if (*act == "quick_gelu")
      c.act = Activation::quick_gelu;
    else if (*act == "gelu")
      c.act = Activation::gelu;
    else
      fail(ErrorCode::unsupported, "act_layer '" + *act + "' is not supported (gelu, quick_gelu)");
  }
  if (auto eps = meta_number(meta, "ln_eps")) c.ln_eps = static_cast<float>(*eps);
  infer_grid(in, cfg, &c);
  c.depth = 0;
  while (in.find(block_prefix(c.depth) + "norm1.weight")) ++c.depth;
  if (c.depth == 0)
    fail(ErrorCode::format, "no transformer blocks (blocks.0.norm1.weight missing)");
  c.mlp_hidden = dim(in.get("blocks.0.mlp.fc1.weight"), 0);
  infer_heads(in, opt, preset, notes, &c);
  if (preset && preset->distilled != c.distilled)
    fail(ErrorCode::invalid_argument, std::string("preset ") + preset->name +
                                          (preset->distilled ? " expects" : " does not expect") +
                                          " a distilled checkpoint (dist_token)");
  // Cross-check whatever geometry the metadata states against the shapes.
  const std::pair<const char *, int> checks[] = {
      {"img_size", c.image_size},     {"patch_size", c.patch_size}, {"in_chans", c.in_chans},
      {"num_classes", c.num_classes}, {"embed_dim", c.embed_dim},   {"depth", c.depth}};
  for (const auto &[key, value] : checks)
    if (auto v = meta_number(meta, key); v && static_cast<int>(*v) != value)
      fail(ErrorCode::format, std::string("metadata ") + key + " = " +
                                  std::to_string(static_cast<int>(*v)) +
                                  " contradicts the tensor shapes (" + std::to_string(value) + ")");
  c.validate();
  return c;
}

// timm's pretrained_cfg (the data config its eval transform is built from): mean, std,
// interpolation, crop_pct, crop_mode "center" (resize the shorter side, then crop) or "squash"
// (resize both sides, then crop); and vqm's extensions "resize_size": the resize side itself, for
// sources that state it (Hugging Face, torchvision) rather than timm's floor(crop / crop_pct),
// and "crop_offset" (CropOffset's name: Hugging Face's processors crop at the floor half).
void apply_pretrained_cfg(const json &cfg, int channels, PreprocessConfig *p, float *crop_pct,
                          int *resize_size) {
  if (cfg.is_null()) return;
  auto floats = [&](const char *key) -> std::optional<std::vector<float>> {
    if (!cfg.contains(key)) return std::nullopt;
    const json &v = cfg[key];
    std::vector<float> out;
    if (v.is_array())
      for (const auto &x : v)
        if (x.is_number()) out.push_back(x.get<float>());
    if (out.size() == 1) out.assign(channels, out[0]);
    if (out.size() != static_cast<size_t>(channels))
      fail(ErrorCode::format, std::string("pretrained_cfg '") + key + "' must hold " +
                                  std::to_string(channels) + " numbers");
    return out;
  };
  if (auto m = floats("mean")) p->mean = *m;
  if (auto s = floats("std")) p->std = *s;
  if (cfg.contains("crop_pct") && cfg["crop_pct"].is_number())
    *crop_pct = cfg["crop_pct"].get<float>();
  if (cfg.contains("interpolation") && cfg["interpolation"].is_string() &&
      !interpolation_from_name(cfg["interpolation"].get<std::string>(), &p->interpolation))
    fail(ErrorCode::unsupported, "pretrained_cfg interpolation '" +
                                     cfg["interpolation"].get<std::string>() +
                                     "' is not supported");
  if (cfg.contains("crop_mode")) {
    if (cfg["crop_mode"] == "center")
      p->resize_mode = ResizeMode::shorter_side;
    else if (cfg["crop_mode"] == "squash")
      p->resize_mode = ResizeMode::squash;
    else
      fail(ErrorCode::unsupported, "pretrained_cfg crop_mode " + cfg["crop_mode"].dump() +
                                       " is not supported (center, squash)");
  }
  if (cfg.contains("crop_offset") &&
      (!cfg["crop_offset"].is_string() ||
       !crop_offset_from_name(cfg["crop_offset"].get<std::string>(), &p->crop_offset)))
    fail(ErrorCode::format, "pretrained_cfg crop_offset " + cfg["crop_offset"].dump() +
                                " is not round_half_even or floor");
  if (cfg.contains("resize_size")) {
    const json &r = cfg["resize_size"];
    if (!r.is_number_integer() || r.get<int64_t>() < 1 || r.get<int64_t>() > 16384)
      fail(ErrorCode::format,
           "pretrained_cfg resize_size " + r.dump() + " is not an integer in [1, 16384]");
    *resize_size = r.get<int>();
  }
}

// The class names a checkpoint's metadata carries: a JSON array of strings.
std::vector<std::string> meta_labels(const std::string &text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  std::vector<std::string> out;
  if (!j.is_array()) fail(ErrorCode::format, "metadata 'labels' is not a JSON array");
  for (const auto &l : j) {
    if (!l.is_string()) fail(ErrorCode::format, "metadata 'labels' holds a non-string");
    out.push_back(l.get<std::string>());
  }
  return out;
}

// LayerScale (x + gamma * f(x)) folded into the layer that computes f's last step: row i of
// attn.proj / mlp.fc2 (weight and bias) times gamma[i].
void fold_layer_scale(const Checkpoint &in, const std::string &name, std::vector<float> *data) {
  for (const auto &[layer, gamma] :
       {std::pair<const char *, const char *>{"attn.proj", "ls1.gamma"},
        {"mlp.fc2", "ls2.gamma"}}) {
    const size_t dot = name.find(layer);
    if (name.rfind("blocks.", 0) != 0 || dot == std::string::npos) continue;
    const std::vector<float> g = to_f32(in.get(name.substr(0, dot) + gamma));
    const size_t per_row = data->size() / g.size();
    if (per_row * g.size() != data->size())
      fail(ErrorCode::format, "'" + name.substr(0, dot) + gamma + "' has " +
                                  std::to_string(g.size()) + " values for '" + name + "'");
    for (size_t i = 0; i < data->size(); ++i) (*data)[i] *= g[i / per_row];
  }
}

}  // namespace

namespace {

// Preprocessing: preset, else the checkpoint's metadata, else timm's generic defaults; then the
// flags. *crop_pct_out: the crop fraction it implies (recorded in the .vqm for information).
PreprocessConfig make_preprocess(const Checkpoint &in, const VitConfig &c,
                                 const ConvertOptions &opt, const Preset *preset, int source_size,
                                 float *crop_pct_out) {
  const auto &meta = in.metadata;
  PreprocessConfig p;
  p.channels = c.in_chans;
  p.crop = c.image_size;
  float crop_pct = preset ? preset->crop_pct : 0.875f;
  p.interpolation = Interpolation::bicubic;
  if (preset) {
    p.mean.assign(preset->mean, preset->mean + 3);
    p.std.assign(preset->std, preset->std + 3);
  } else if (c.in_chans == 3) {
    p.mean = {0.485f, 0.456f, 0.406f};
    p.std = {0.229f, 0.224f, 0.225f};
  } else {
    p.mean.assign(c.in_chans, 0.5f);
    p.std.assign(c.in_chans, 0.5f);
  }
  int resize_size = 0;  // stated by the source (0: not); a crop_pct given later replaces it
  apply_pretrained_cfg(meta_json(meta, "pretrained_cfg"), c.in_chans, &p, &crop_pct, &resize_size);
  if (auto m = meta_vector(meta, "mean", c.in_chans)) p.mean = *m;
  if (auto s = meta_vector(meta, "std", c.in_chans)) p.std = *s;
  const bool fmnist = meta.count("dataset") && meta.at("dataset") == "fashion-mnist";
  if (fmnist) crop_pct = 1.0f;  // trained on raw 28x28 images: no resize, no crop
  if (auto v = meta_number(meta, "crop_pct")) crop_pct = static_cast<float>(*v);
  if (fmnist || meta.count("crop_pct")) resize_size = 0;
  if (opt.mean) p.mean = *opt.mean;
  if (opt.std) p.std = *opt.std;
  if (opt.crop_pct) {
    crop_pct = *opt.crop_pct;
    resize_size = 0;
  }
  // A resize the source states (Hugging Face, torchvision) is for its own input size; for
  // another (--image-size) it keeps its ratio to the crop, as timm's floor(crop / crop_pct) does
  // for the new crop. In integers, so that a resize equal to the crop (Hugging Face's squash
  // without crop) stays equal to it. Without one, floor(image_size / crop_pct) below already is
  // timm's transform for the new size.
  if (resize_size > 0 && c.image_size != source_size)
    resize_size = std::max(1, static_cast<int>(int64_t{resize_size} * c.image_size / source_size));
  if (opt.crop && *opt.crop != c.image_size)
    fail(ErrorCode::invalid_argument, "--crop " + std::to_string(*opt.crop) +
                                          " differs from the model's input size " +
                                          std::to_string(c.image_size));
  if (opt.interpolation && !interpolation_from_name(*opt.interpolation, &p.interpolation))
    fail(ErrorCode::invalid_argument,
         "unknown interpolation '" + *opt.interpolation + "' (bicubic, bilinear, nearest)");
  if (!(crop_pct > 0.f && crop_pct <= 1.f))
    fail(ErrorCode::invalid_argument,
         "crop_pct must be in (0, 1], got " + std::to_string(crop_pct));
  if (p.mean.size() != static_cast<size_t>(c.in_chans) ||
      p.std.size() != static_cast<size_t>(c.in_chans))
    fail(ErrorCode::invalid_argument,
         "mean/std need " + std::to_string(c.in_chans) + " values (one per channel)");
  for (float s : p.std)
    if (!(s > 0.f)) fail(ErrorCode::invalid_argument, "std values must be > 0");
  p.resize = resize_size > 0 ? resize_size
                             : static_cast<int>(std::floor(c.image_size / crop_pct));  // scale_size

  *crop_pct_out = crop_pct;
  return p;
}

// Class names: the flag's file, the checkpoint's metadata, else Fashion-MNIST's or ImageNet-1k's
// where the source or the preset says so; none for an embedding model.
std::vector<std::string> make_labels(const Checkpoint &in, const VitConfig &c,
                                     const ConvertOptions &opt, const Preset *preset) {
  const auto &meta = in.metadata;
  const bool fmnist = meta.count("dataset") && meta.at("dataset") == "fashion-mnist";
  std::vector<std::string> labels;
  if (!opt.labels_file.empty()) {
    labels = read_labels_file(opt.labels_file);
  } else if (meta.count("labels")) {
    labels = meta_labels(meta.at("labels"));
  } else if (c.num_classes == 0) {
    // an embedding model: no classes to name
  } else if (fmnist && c.num_classes == 10) {
    labels = fashion_mnist_labels();
  } else if (preset || c.num_classes == 1000) {
    labels = imagenet1k_labels();
  }
  if (!labels.empty() && labels.size() != static_cast<size_t>(c.num_classes))
    fail(ErrorCode::invalid_argument, std::to_string(labels.size()) + " labels for a model with " +
                                          std::to_string(c.num_classes) + " classes");
  return labels;
}

// The input size the .vqm is for: the checkpoint's (read from pos_embed), or opt.image_size, a
// whole patch grid within VitConfig's bounds (at most 512 patches per side, sides up to 4096),
// with a note in `log` of the resampling that follows.
void apply_image_size(const ConvertOptions &opt, VitConfig *c, std::vector<std::string> *log) {
  if (!opt.image_size || *opt.image_size == c->image_size) return;
  const int n = *opt.image_size, p = c->patch_size, from = c->grid();
  const int max = std::min(512, 4096 / p) * p;
  if (n < p || n % p != 0 || n > max)
    fail(ErrorCode::invalid_argument,
         "--image-size " + std::to_string(n) + " must be a multiple of the patch size " +
             std::to_string(p) + " from " + std::to_string(p) + " to " + std::to_string(max));
  c->image_size = n;
  c->validate();
  auto square = [](int s) { return std::to_string(s) + "x" + std::to_string(s); };
  log->push_back("pos_embed resampled from " + square(from) + " to " + square(c->grid()) +
                 " (bicubic, antialias) for " + square(n) + " input");
}

// timm's resample_abs_pos_embed: the prefix rows (class/dist/register tokens, where pos_embed has
// them) as they are, the patch rows as a from_grid x from_grid image of embed_dim channels
// resampled to the config's grid, bicubic with antialiasing (F.interpolate's, which is PIL's
// float resampling: resample_grid_f32).
std::vector<float> resample_pos_embed(const std::vector<float> &pos, const VitConfig &c,
                                      int from_grid) {
  const size_t prefix = static_cast<size_t>(c.pos_embed_prefix ? c.num_prefix_tokens() : 0);
  const auto patches = pos.begin() + static_cast<std::ptrdiff_t>(prefix * c.embed_dim);
  std::vector<float> out(pos.begin(), patches);
  const std::vector<float> grid =
      resample_grid_f32(std::vector<float>(patches, pos.end()), c.embed_dim, from_grid, from_grid,
                        c.grid(), c.grid(), Interpolation::bicubic);
  out.insert(out.end(), grid.begin(), grid.end());
  return out;
}

}  // namespace

VqmWriter convert_checkpoint(const Checkpoint &in, const ConvertOptions &opt,
                             std::vector<std::string> *notes) {
  const Preset *preset = nullptr;
  if (!opt.preset.empty()) {
    preset = find_preset(opt.preset);
    if (!preset) {
      std::string names;
      for (const auto &p : presets()) names += std::string(names.empty() ? "" : ", ") + p.name;
      fail(ErrorCode::invalid_argument,
           "unknown preset '" + opt.preset + "' (known: " + names + ")");
    }
  }
  // Every note also goes into the .vqm ("producer"), so the file says what was assumed or done.
  std::vector<std::string> log = in.notes;
  VitConfig c = infer_config(in, opt, preset, &log);
  const auto &meta = in.metadata;
  const int source_grid = c.grid(), source_size = c.image_size;
  apply_image_size(opt, &c, &log);

  float crop_pct = 0;
  const PreprocessConfig p = make_preprocess(in, c, opt, preset, source_size, &crop_pct);
  const std::vector<std::string> labels = make_labels(in, c, opt, preset);

  // Every tensor must be one the runtime uses: a checkpoint with extra parts (relative position
  // tables, attention pooling ...) is a different architecture, and dropping them silently would
  // give wrong answers. LayerScale gammas are used: folded below.
  const auto expected = expected_tensors(c);
  std::set<std::string> wanted;
  for (const auto &e : expected) wanted.insert(e.name);
  const bool layer_scale = in.find("blocks.0.ls1.gamma") != nullptr;
  for (int b = 0; layer_scale && b < c.depth; ++b)
    for (const char *ls : {"ls1.gamma", "ls2.gamma"}) wanted.insert(block_prefix(b) + ls);
  for (const auto &t : in.tensors)
    if (!wanted.count(t.name))
      fail(ErrorCode::unsupported,
           "tensor '" + t.name + "' is not part of a supported ViT-family architecture");
  if (layer_scale)
    log.push_back("LayerScale folded into attn.proj and mlp.fc2 (exact up to float rounding)");
  if (notes) notes->insert(notes->end(), log.begin(), log.end());

  VqmWriter w;
  json doc;
  doc["model"] = c.to_json();
  doc["preprocess"] = preprocess_to_json(p);
  doc["preprocess"]["crop_pct"] = crop_pct;
  if (!labels.empty()) doc["labels"] = labels;
  doc["producer"] = {{"name", "vqm"},
                     {"version", VQM_VERSION_STRING},
                     {"tool", "vit-convert"},
                     {"source", opt.source_name},
                     {"source_format", source_format_name(in.format)}};
  if (!log.empty()) doc["producer"]["notes"] = log;
  if (!meta.empty()) doc["source_metadata"] = meta;
  w.set_meta(doc);
  for (const auto &e : expected) {
    const TensorInfo &t = in.get(e.name);
    // pos_embed is read at the checkpoint's grid, then resampled to the new one.
    const bool resample = e.name == "pos_embed" && c.image_size != source_size;
    std::vector<int64_t> want = e.shape;
    if (resample) want[1] += int64_t{source_grid} * source_grid - c.num_patches();
    if (t.shape != want)
      fail(ErrorCode::format, "tensor '" + e.name + "': expected shape " + shape_str(want) +
                                  ", found " + shape_str(t.shape));
    std::vector<float> data = to_f32(t);
    if (resample) data = resample_pos_embed(data, c, source_grid);
    if (layer_scale) fold_layer_scale(in, e.name, &data);
    w.add_f32(e.name, e.shape, data.data());
  }
  return w;
}

VqmWriter convert_timm(const SafetensorsFile &in, const ConvertOptions &opt,
                       std::vector<std::string> *notes) {
  return convert_checkpoint(timm_checkpoint(in), opt, notes);
}

const TensorInfo *Checkpoint::find(const std::string &name) const {
  for (const auto &t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const TensorInfo &Checkpoint::get(const std::string &name) const {
  if (const TensorInfo *t = find(name)) return *t;
  fail(ErrorCode::format, "missing tensor '" + name + "' in " + source);
}

void Checkpoint::add_f32(const std::string &name, std::vector<int64_t> shape,
                         std::vector<float> data) {
  owned.push_back(std::move(data));
  TensorInfo t;
  t.name = name;
  t.dtype = DType::f32;
  t.shape = std::move(shape);
  t.nbytes = owned.back().size() * sizeof(float);
  t.data = reinterpret_cast<const uint8_t *>(owned.back().data());
  tensors.push_back(std::move(t));
}

Checkpoint timm_checkpoint(SafetensorsFile file) {
  Checkpoint c;
  auto owner = std::make_shared<SafetensorsFile>(std::move(file));
  c.source = owner->source();
  c.tensors = owner->tensors();
  c.metadata = owner->metadata();
  c.keep = owner;
  return c;
}

const char *source_format_name(SourceFormat f) {
  switch (f) {
    case SourceFormat::timm:
      return "timm";
    case SourceFormat::huggingface:
      return "huggingface";
    case SourceFormat::torchvision:
      return "torchvision";
  }
  return "unknown";
}

SourceFormat detect_source_format(const std::vector<TensorInfo> &tensors,
                                  const std::string &source) {
  auto has = [&](const std::string &name) {
    for (const auto &t : tensors)
      if (t.name == name) return true;
    return false;
  };
  auto any_prefix = [&](const std::string &prefix) {
    for (const auto &t : tensors)
      if (t.name.rfind(prefix, 0) == 0) return true;
    return false;
  };
  if (has("patch_embed.proj.weight")) return SourceFormat::timm;
  if (any_prefix("conv_proj.") && any_prefix("encoder.layers.")) return SourceFormat::torchvision;
  for (const char *p : {"vit.", "deit.", "dinov2.", "vision_model.", "embeddings."})
    if (any_prefix(p)) return SourceFormat::huggingface;
  std::string found;
  for (size_t i = 0; i < tensors.size() && i < 4; ++i) found += (i ? ", " : "") + tensors[i].name;
  if (tensors.size() > 4) found += ", ...";
  fail(ErrorCode::unsupported,
       "unrecognised checkpoint layout in " + source + " (" + std::to_string(tensors.size()) +
           " tensors: " + (found.empty() ? "none" : found) +
           "): expected timm (patch_embed.proj.weight), Hugging Face (vit., deit., dinov2., "
           "vision_model., embeddings.) or torchvision (conv_proj., encoder.layers.) names");
}

Checkpoint load_checkpoint(const std::string &path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) return hf_snapshot_checkpoint(path);
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".pth" || ext == ".pt" || ext == ".bin") {
    // torch.save's zip of a pickle, read without executing anything (runtime/io/pth.h).
    auto owner = std::make_shared<PthFile>(PthFile::from_file(path));
    switch (detect_source_format(owner->tensors(), owner->source())) {
      case SourceFormat::torchvision:
        return torchvision_checkpoint(owner->tensors(), owner->source(), {}, owner);
      case SourceFormat::timm: {
        Checkpoint c;
        c.source = owner->source();
        c.tensors = owner->tensors();
        c.keep = owner;
        return c;
      }
      case SourceFormat::huggingface:  // pytorch_model.bin, with config.json beside it
        return hf_checkpoint_beside(owner->tensors(), owner->source(), owner, path);
    }
  }
  SafetensorsFile file = SafetensorsFile::from_file(path);
  switch (detect_source_format(file.tensors(), file.source())) {
    case SourceFormat::timm:
      return timm_checkpoint(std::move(file));
    case SourceFormat::torchvision:
      return torchvision_checkpoint(std::move(file));
    case SourceFormat::huggingface:
      return hf_checkpoint_beside(std::move(file), path);
  }
  fail(ErrorCode::internal, "load_checkpoint: unknown source format");
}

}  // namespace vqm
