#include "models/convert.h"

#include <cmath>
#include <map>
#include <set>

#include "models/labels.h"
#include "models/vit_config.h"
#include "runtime/io/error.h"

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

const Preset *find_preset(const std::string &name) {
  for (const auto &p : presets())
    if (name == p.name) return &p;
  return nullptr;
}

int dim_of(const TensorInfo &t, size_t i) {
  return static_cast<int>(t.shape.at(i));
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

VitConfig infer_config(const SafetensorsFile &in, const ConvertOptions &opt, const Preset *preset,
                       std::vector<std::string> *notes) {
  VitConfig c;
  const auto &meta = in.metadata();
  const TensorInfo &cls = in.get("cls_token");
  const TensorInfo &pos = in.get("pos_embed");
  const TensorInfo &pw = in.get("patch_embed.proj.weight");
  const TensorInfo &head = in.get("head.weight");
  expect_rank(cls, 3);
  expect_rank(pos, 3);
  expect_rank(pw, 4);
  expect_rank(head, 2);
  c.embed_dim = dim_of(cls, 2);
  c.in_chans = dim_of(pw, 1);
  c.patch_size = dim_of(pw, 2);
  if (dim_of(pw, 3) != c.patch_size || dim_of(pw, 0) != c.embed_dim)
    fail(ErrorCode::unsupported, "patch_embed.proj.weight " + shape_str(pw.shape) +
                                     ": expected [embed_dim, C, p, p] with square patches");
  c.distilled = in.find("dist_token") != nullptr;
  const int patches = dim_of(pos, 1) - c.num_prefix_tokens();
  const int grid = static_cast<int>(std::lround(std::sqrt(std::max(patches, 0))));
  if (patches <= 0 || grid * grid != patches)
    fail(ErrorCode::unsupported, "pos_embed " + shape_str(pos.shape) +
                                     " does not hold a square grid of patches after " +
                                     std::to_string(c.num_prefix_tokens()) + " prefix token(s)");
  c.image_size = grid * c.patch_size;
  c.depth = 0;
  while (in.find("blocks." + std::to_string(c.depth) + ".norm1.weight")) ++c.depth;
  if (c.depth == 0)
    fail(ErrorCode::format, "no transformer blocks (blocks.0.norm1.weight missing)");
  c.mlp_hidden = dim_of(in.get("blocks.0.mlp.fc1.weight"), 0);
  c.num_classes = dim_of(head, 0);

  if (opt.num_heads > 0) {
    c.num_heads = opt.num_heads;
  } else if (auto h = meta_number(meta, "num_heads")) {
    c.num_heads = static_cast<int>(*h);
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
  c.arch = preset ? preset->name : meta.count("arch") ? meta.at("arch") : "vit";
  c.validate();
  return c;
}

}  // namespace

VqmWriter convert_timm(const SafetensorsFile &in, const ConvertOptions &opt,
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
  const VitConfig c = infer_config(in, opt, preset, notes);
  const auto &meta = in.metadata();

  // Preprocessing: preset, else metadata, else timm's generic defaults; then overrides.
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
  if (auto m = meta_vector(meta, "mean", c.in_chans)) p.mean = *m;
  if (auto s = meta_vector(meta, "std", c.in_chans)) p.std = *s;
  const bool fmnist = meta.count("dataset") && meta.at("dataset") == "fashion-mnist";
  if (fmnist) crop_pct = 1.0f;  // trained on raw 28x28 images: no resize, no crop
  if (auto v = meta_number(meta, "crop_pct")) crop_pct = static_cast<float>(*v);
  if (opt.mean) p.mean = *opt.mean;
  if (opt.std) p.std = *opt.std;
  if (opt.crop_pct) crop_pct = *opt.crop_pct;
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
  p.resize = static_cast<int>(std::floor(c.image_size / crop_pct));  // timm's scale_size

  std::vector<std::string> labels;
  if (!opt.labels_file.empty()) {
    labels = read_labels_file(opt.labels_file);
  } else if (fmnist && c.num_classes == 10) {
    labels = fashion_mnist_labels();
  } else if (preset || c.num_classes == 1000) {
    labels = imagenet1k_labels();
  }
  if (!labels.empty() && labels.size() != static_cast<size_t>(c.num_classes))
    fail(ErrorCode::invalid_argument, std::to_string(labels.size()) + " labels for a model with " +
                                          std::to_string(c.num_classes) + " classes");

  // Every tensor must be one the runtime uses: a checkpoint with extra parts (fc_norm, pre-norm,
  // relative position tables ...) is a different architecture, and dropping them silently would
  // give wrong answers.
  const auto expected = expected_tensors(c);
  std::set<std::string> wanted;
  for (const auto &e : expected) wanted.insert(e.name);
  for (const auto &t : in.tensors())
    if (!wanted.count(t.name))
      fail(ErrorCode::unsupported,
           "tensor '" + t.name +
               "' is not part of a plain ViT/DeiT; this architecture is not supported");

  VqmWriter w;
  json doc;
  doc["model"] = c.to_json();
  doc["preprocess"] = preprocess_to_json(p);
  doc["preprocess"]["crop_pct"] = crop_pct;
  if (!labels.empty()) doc["labels"] = labels;
  doc["producer"] = {{"name", "vqm"},
                     {"version", VQM_VERSION_STRING},
                     {"tool", "vit-convert"},
                     {"source", opt.source_name}};
  if (!meta.empty()) doc["source_metadata"] = meta;
  w.set_meta(doc);
  for (const auto &e : expected) {
    const TensorInfo &t = in.get(e.name);
    if (t.shape != e.shape)
      fail(ErrorCode::format, "tensor '" + e.name + "': expected shape " + shape_str(e.shape) +
                                  ", found " + shape_str(t.shape));
    const std::vector<float> data = to_f32(t);
    w.add_f32(e.name, e.shape, data.data());
  }
  return w;
}

}  // namespace vqm
