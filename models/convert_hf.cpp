// Hugging Face transformers checkpoints -> Checkpoint under timm's names. The renaming is the
// inverse of transformers' own conversion scripts (convert_vit_timm_to_pytorch.py,
// convert_deit_timm_to_pytorch.py, convert_dinov2_to_hf.py) and of modeling_clip.py's module
// names; config.json and preprocessor_config.json become timm-style metadata.
#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "models/convert.h"
#include "models/convert_util.h"
#include "runtime/io/error.h"

namespace vqm {

using nlohmann::json;

namespace {

using convert_util::dim;
using convert_util::starts_with;

namespace fs = std::filesystem;

// A small text file (a JSON config): io errors name it, a size bound stops a hostile one.
std::string read_text_file(const std::string &path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) fail(ErrorCode::io, "cannot open '" + path + "': no such file");
  if (!fs::is_regular_file(st)) fail(ErrorCode::io, "cannot read '" + path + "': not a file");
  const uint64_t size = fs::file_size(path, ec);
  if (ec) fail(ErrorCode::io, "cannot determine the size of '" + path + "'");
  if (size > default_limits().max_json_bytes)
    fail(ErrorCode::limit, "'" + path + "' is " + std::to_string(size) +
                               " bytes, over max_json_bytes " +
                               std::to_string(default_limits().max_json_bytes));
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(ErrorCode::io, "cannot open '" + path + "'");
  std::string text(static_cast<size_t>(size), '\0');
  if (size > 0 && !f.read(&text[0], static_cast<std::streamsize>(size)))
    fail(ErrorCode::io, "short read on '" + path + "'");
  return text;
}

json parse_object(const std::string &text, const std::string &name) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) fail(ErrorCode::format, name + " is not a JSON object");
  return j;
}

// What transformers' config classes default to, per model_type (a saved config.json omits
// nothing in practice, but CLIPModel's nested vision_config may).
struct ModelType {
  const char *name;
  const char *processor;  // the image processor class AutoImageProcessor picks
  double ln_eps;
  const char *act;
  int heads;
};
constexpr ModelType kModelTypes[] = {
    {"vit", "ViTImageProcessor", 1e-12, "gelu", 12},
    {"deit", "DeiTImageProcessor", 1e-12, "gelu", 12},
    {"dinov2", "BitImageProcessor", 1e-6, "gelu", 12},
    {"dinov2_with_registers", "BitImageProcessor", 1e-6, "gelu", 12},
    {"clip_vision_model", "CLIPImageProcessor", 1e-5, "quick_gelu", 12},
};

// The image processors' own defaults (transformers' *ImageProcessor __init__ arguments).
struct Processor {
  const char *name;
  bool int_size_is_square;  // legacy integer "size": {height, width} (else shortest_edge)
  bool square_resize;       // default size {height, width} = resize (else shortest_edge)
  int resize;
  int resample;  // PIL code
  bool center_crop;
  int crop;
  float mean[3], std[3];
};
constexpr float kImagenetMean[3] = {0.485f, 0.456f, 0.406f},
                kImagenetStd[3] = {0.229f, 0.224f, 0.225f};
constexpr Processor kProcessors[] = {
    {"ViTImageProcessor", true, true, 224, 2, false, 224, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}},
    {"DeiTImageProcessor",
     true,
     true,
     256,
     3,
     true,
     224,
     {kImagenetMean[0], kImagenetMean[1], kImagenetMean[2]},
     {kImagenetStd[0], kImagenetStd[1], kImagenetStd[2]}},
    {"CLIPImageProcessor",
     false,
     false,
     224,
     3,
     true,
     224,
     {0.48145466f, 0.4578275f, 0.40821073f},
     {0.26862954f, 0.26130258f, 0.27577711f}},
    {"BitImageProcessor",
     false,
     false,
     224,
     3,
     true,
     224,
     {0.48145466f, 0.4578275f, 0.40821073f},
     {0.26862954f, 0.26130258f, 0.27577711f}},
};

const Processor *find_processor(std::string name) {
  // Older files name the feature extractor; newer transformers add "...Fast" twins.
  for (const char *suffix : {"Fast", "FeatureExtractor"}) {
    const std::string s(suffix);
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
      name.resize(name.size() - s.size());
      if (s == "FeatureExtractor") name += "ImageProcessor";
    }
  }
  for (const auto &p : kProcessors)
    if (name == p.name) return &p;
  return nullptr;
}

const Processor &processor_named(const char *name) {
  return *find_processor(name);
}

// A size entry of preprocessor_config.json: {"height", "width"} (square only), {"shortest_edge"}
// or a legacy integer. Returns the side; *squash says which resize it is.
int parse_size(const json &v, bool int_is_square, const std::string &what, bool *squash) {
  auto side = [&](const json &x) {
    if (!x.is_number_integer() || x.get<int64_t>() < 1 || x.get<int64_t>() > 16384)
      fail(ErrorCode::format, what + " " + v.dump() + " is not a positive integer size");
    return x.get<int>();
  };
  if (v.is_number_integer()) {
    *squash = int_is_square;
    return side(v);
  }
  if (v.is_object() && v.contains("height") && v.contains("width")) {
    const int h = side(v["height"]), w = side(v["width"]);
    if (h != w)
      fail(ErrorCode::unsupported,
           what + " " + v.dump() + " is not square (the model's input is square)");
    *squash = true;
    return h;
  }
  if (v.is_object() && v.contains("shortest_edge") && !v.contains("longest_edge")) {
    *squash = false;
    return side(v["shortest_edge"]);
  }
  fail(ErrorCode::unsupported,
       what + " " + v.dump() + " is not supported ({height, width} or {shortest_edge})");
}

std::vector<float> float_list(const json &v, const std::string &what) {
  std::vector<float> out;
  if (v.is_number()) out.push_back(v.get<float>());
  if (v.is_array())
    for (const auto &x : v) {
      if (!x.is_number()) fail(ErrorCode::format, what + " " + v.dump() + " holds a non-number");
      out.push_back(x.get<float>());
    }
  if (out.empty()) fail(ErrorCode::format, what + " " + v.dump() + " is not a list of numbers");
  return out;
}

// preprocessor_config.json (or the processor's defaults) as a timm-style pretrained_cfg for a
// model of `image_size`: resize (shortest edge or squash), center crop, resample, rescale 1/255,
// normalize.
json pretrained_cfg_from_processor(const json &pp, const std::string &pp_name,
                                   const ModelType &type, int channels, int image_size,
                                   std::vector<std::string> *notes) {
  const Processor *proc = &processor_named(type.processor);
  if (pp.is_null()) {
    notes->push_back("no preprocessor_config.json: using " + std::string(proc->name) +
                     "'s defaults");
  } else {
    std::string cls;
    for (const char *key : {"image_processor_type", "feature_extractor_type"})
      if (cls.empty() && pp.contains(key) && pp[key].is_string()) cls = pp[key].get<std::string>();
    if (const Processor *p = find_processor(cls)) {
      proc = p;
    } else if (!cls.empty()) {
      notes->push_back(pp_name + ": image processor '" + cls + "' is unknown to vqm: reading " +
                       "its keys with " + proc->name + "'s defaults");
    }
  }
  auto get = [&](const char *key, const json &def) {
    return pp.is_object() && pp.contains(key) && !pp[key].is_null() ? pp[key] : def;
  };
  auto flag = [&](const char *key, bool def) {
    const json v = get(key, def);
    if (!v.is_boolean()) fail(ErrorCode::format, pp_name + ": '" + key + "' must be true or false");
    return v.get<bool>();
  };
  const std::string what = pp_name + ":";
  if (!flag("do_resize", true))
    fail(ErrorCode::unsupported,
         what + " do_resize false is not supported (vqm resizes every image to the model's size)");
  bool squash = false;
  const json default_size = proc->square_resize
                                ? json{{"height", proc->resize}, {"width", proc->resize}}
                                : json{{"shortest_edge", proc->resize}};
  const int resize =
      parse_size(get("size", default_size), proc->int_size_is_square, what + " size", &squash);
  int crop = squash ? resize : 0;
  if (flag("do_center_crop", proc->center_crop)) {
    bool crop_square = false;
    crop = parse_size(get("crop_size", json{{"height", proc->crop}, {"width", proc->crop}}), true,
                      what + " crop_size", &crop_square);
    if (!crop_square)
      fail(ErrorCode::unsupported, what + " crop_size must be {height, width} or an integer");
  }
  if (crop == 0)
    fail(ErrorCode::unsupported,
         what +
             " a shortest_edge resize without center crop gives images of any aspect ratio; "
             "the model needs square ones");
  const json resample = get("resample", proc->resample);
  std::string interp;
  if (resample == 0) {
    interp = "nearest";
  } else if (resample == 2) {
    interp = "bilinear";
  } else if (resample == 3) {
    interp = "bicubic";
  } else {
    fail(ErrorCode::unsupported, what + " resample " + resample.dump() +
                                     " is not supported (PIL codes 0 nearest, 2 bilinear, "
                                     "3 bicubic)");
  }
  if (!flag("do_rescale", true))
    fail(ErrorCode::unsupported, what + " do_rescale false is not supported (pixels are x/255)");
  const json factor = get("rescale_factor", 1.0 / 255.0);
  if (!factor.is_number() || std::fabs(factor.get<double>() * 255.0 - 1.0) > 1e-6)
    fail(ErrorCode::unsupported,
         what + " rescale_factor " + factor.dump() + " is not supported (only 1/255)");
  std::vector<float> mean(proc->mean, proc->mean + 3), std(proc->std, proc->std + 3);
  if (channels != 3) {
    mean.assign(channels, 0.5f);
    std.assign(channels, 0.5f);
  }
  if (flag("do_normalize", true)) {
    if (pp.is_object() && pp.contains("image_mean"))
      mean = float_list(pp["image_mean"], what + " image_mean");
    if (pp.is_object() && pp.contains("image_std"))
      std = float_list(pp["image_std"], what + " image_std");
  } else {
    mean.assign(channels, 0.f);
    std.assign(channels, 1.f);
  }
  // The processor's crop is what the model sees; a position table for another size (DINOv2:
  // 518 in the weights, 224 in the processor, which transformers bridges by interpolating the
  // table at run time) keeps its own size and the processor's crop fraction, unless
  // vit-convert --image-size resamples the table.
  int64_t resize_size = resize;
  if (crop != image_size) {
    resize_size = int64_t{image_size} * resize / crop;
    notes->push_back(what + " crops to " + std::to_string(crop) +
                     " but the position embeddings are for " + std::to_string(image_size) +
                     " (transformers interpolates them): using " + std::to_string(image_size) +
                     " with the same crop fraction (resize " + std::to_string(resize_size) +
                     "; --image-size resamples them instead)");
  }
  return json{{"input_size", {channels, image_size, image_size}},
              {"interpolation", interp},
              {"crop_pct", static_cast<double>(crop) / resize},
              {"crop_mode", squash ? "squash" : "center"},
              {"crop_offset", "floor"},  // transformers' center_crop: (size - crop) // 2
              {"mean", mean},
              {"std", std},
              {"resize_size", resize_size}};
}

// How a block's tensors are named in each layout (after "encoder.layer.N." / "encoder.layers.N.").
struct Rename {
  const char *from;
  const char *to;
};
constexpr Rename kVitBlock[] = {
    {"layernorm_before.", "norm1."},
    {"layernorm_after.", "norm2."},
    {"norm1.", "norm1."},
    {"norm2.", "norm2."},
    {"attention.output.dense.", "attn.proj."},
    {"intermediate.dense.", "mlp.fc1."},
    {"output.dense.", "mlp.fc2."},
    {"mlp.fc1.", "mlp.fc1."},
    {"mlp.fc2.", "mlp.fc2."},
    {"layer_scale1.lambda1", "ls1.gamma"},
    {"layer_scale2.lambda1", "ls2.gamma"},
};
constexpr const char *kVitQkv[3] = {"attention.attention.query.", "attention.attention.key.",
                                    "attention.attention.value."};
constexpr Rename kClipBlock[] = {
    {"layer_norm1.", "norm1."}, {"layer_norm2.", "norm2."}, {"self_attn.out_proj.", "attn.proj."},
    {"mlp.fc1.", "mlp.fc1."},   {"mlp.fc2.", "mlp.fc2."},
};
constexpr const char *kClipQkv[3] = {"self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj."};

// "encoder.layer.12.rest" with layer_prefix "encoder.layer.": block 12, "rest".
bool split_block(const std::string &name, const std::string &layer_prefix, int *block,
                 std::string *rest) {
  if (!starts_with(name, layer_prefix)) return false;
  size_t pos = layer_prefix.size(), end = pos;
  while (end < name.size() && end - pos < 6 && std::isdigit(static_cast<unsigned char>(name[end])))
    ++end;
  if (end == pos || end >= name.size() || name[end] != '.') return false;
  *block = std::stoi(name.substr(pos, end - pos));
  *rest = name.substr(end + 1);
  return true;
}

// A renamed tensor: the same bytes under another name (and, for CLIP's embeddings, shape).
TensorInfo renamed(const TensorInfo &t, const std::string &name, std::vector<int64_t> shape = {}) {
  TensorInfo r = t;
  r.name = name;
  if (!shape.empty()) r.shape = std::move(shape);
  return r;
}

class HfMapper {
 public:
  HfMapper(Checkpoint *out, const std::string &model_type) : out_(*out), type_(model_type) {}

  // Maps every tensor; throws on a name without a timm counterpart.
  void map(const std::vector<TensorInfo> &tensors);

 private:
  void map_block(const TensorInfo &t, int block, const std::string &rest);
  void unknown(const TensorInfo &t) const {
    fail(ErrorCode::unsupported, "tensor '" + t.name + "' in " + out_.source +
                                     " has no timm counterpart (Hugging Face " + type_ +
                                     " layout)");
  }
  void add(const TensorInfo &t) { mapped_.push_back(t); }
  void finish();

  Checkpoint &out_;
  std::string type_;
  bool clip_ = false;
  std::vector<TensorInfo> mapped_;
  // Per block: q, k, v weights and biases in that order.
  std::map<int, std::array<const TensorInfo *, 3>> qkv_w_, qkv_b_;
  const TensorInfo *dist_ = nullptr, *registers_ = nullptr;
  bool dropped_pooler_ = false, dropped_mask_ = false, dropped_text_ = false;
  bool classifier_ = false, cls_classifier_ = false, dist_classifier_ = false;
};

void HfMapper::map(const std::vector<TensorInfo> &tensors) {
  clip_ = type_ == "clip_vision_model";
  std::string base;  // the base model's prefix: "vit.", "deit.", "dinov2.", "vision_model." or ""
  for (const char *p : {"vit.", "deit.", "dinov2.", "vision_model."})
    for (const auto &t : tensors)
      if (base.empty() && starts_with(t.name, p)) base = p;
  const std::string layers = clip_ ? "encoder.layers." : "encoder.layer.";
  for (const auto &t : tensors) {
    const std::string &n = t.name;
    // The heads and other towers sit outside the base model.
    if (starts_with(n, "classifier.")) {
      classifier_ = true;
      add(renamed(t, "head." + n.substr(11)));
      continue;
    }
    if (starts_with(n, "cls_classifier.")) {
      cls_classifier_ = true;
      add(renamed(t, "head." + n.substr(15)));
      continue;
    }
    if (starts_with(n, "distillation_classifier.")) {
      dist_classifier_ = true;
      add(renamed(t, "head_dist." + n.substr(24)));
      continue;
    }
    if (clip_ && n == "visual_projection.weight") {
      add(renamed(t, "head.weight"));  // no bias: head_bias false
      continue;
    }
    if (clip_ &&
        (starts_with(n, "text_model.") || n == "text_projection.weight" || n == "logit_scale")) {
      dropped_text_ = true;
      continue;
    }
    if (!base.empty() && !starts_with(n, base)) unknown(t);
    const std::string s = n.substr(base.size());
    int block = 0;
    std::string rest;
    if (split_block(s, layers, &block, &rest)) {
      map_block(t, block, rest);
    } else if (clip_) {
      if (s == "embeddings.class_embedding" && t.shape.size() == 1) {
        add(renamed(t, "cls_token", {1, 1, t.shape[0]}));
      } else if (s == "embeddings.patch_embedding.weight") {
        add(renamed(t, "patch_embed.proj.weight"));
      } else if (s == "embeddings.position_embedding.weight" && t.shape.size() == 2) {
        add(renamed(t, "pos_embed", {1, t.shape[0], t.shape[1]}));
      } else if (s == "embeddings.position_ids") {
        // an index buffer (arange), not a weight
      } else if (starts_with(s, "pre_layrnorm.")) {
        add(renamed(t, "norm_pre." + s.substr(13)));
      } else if (starts_with(s, "post_layernorm.")) {
        add(renamed(t, "norm." + s.substr(15)));
      } else {
        unknown(t);
      }
    } else if (s == "embeddings.cls_token") {
      add(renamed(t, "cls_token"));
    } else if (s == "embeddings.distillation_token") {
      dist_ = &t;
    } else if (s == "embeddings.register_tokens") {
      registers_ = &t;
    } else if (s == "embeddings.mask_token") {
      dropped_mask_ = true;
    } else if (s == "embeddings.position_embeddings") {
      add(renamed(t, "pos_embed"));
    } else if (starts_with(s, "embeddings.patch_embeddings.projection.")) {
      add(renamed(t, "patch_embed.proj." + s.substr(39)));
    } else if (starts_with(s, "layernorm.")) {
      add(renamed(t, "norm." + s.substr(10)));
    } else if (starts_with(s, "pooler.")) {
      dropped_pooler_ = true;
    } else {
      unknown(t);
    }
  }
  finish();
}

void HfMapper::map_block(const TensorInfo &t, int block, const std::string &rest) {
  const std::string pre = "blocks." + std::to_string(block) + ".";
  const auto *qkv = clip_ ? kClipQkv : kVitQkv;
  for (int i = 0; i < 3; ++i)
    if (starts_with(rest, qkv[i])) {
      const std::string leaf = rest.substr(std::string(qkv[i]).size());
      if (leaf == "weight") {
        qkv_w_[block][i] = &t;
      } else if (leaf == "bias") {
        qkv_b_[block][i] = &t;
      } else {
        unknown(t);
      }
      return;
    }
  if (!clip_ && (starts_with(rest, "mlp.weights_in.") || starts_with(rest, "mlp.w12.")))
    fail(ErrorCode::unsupported, "tensor '" + t.name + "' in " + out_.source +
                                     ": a SwiGLU MLP (DINOv2 giant) is not supported");
  const auto *table = clip_ ? kClipBlock : kVitBlock;
  const size_t n = clip_ ? std::size(kClipBlock) : std::size(kVitBlock);
  for (size_t i = 0; i < n; ++i) {
    const std::string from = table[i].from;
    if (from.back() == '.' ? starts_with(rest, from) : rest == from) {
      const std::string leaf = from.back() == '.' ? rest.substr(from.size()) : "";
      if (from.back() == '.' && leaf != "weight" && leaf != "bias") unknown(t);
      add(renamed(t, pre + table[i].to + leaf));
      return;
    }
  }
  unknown(t);
}

void HfMapper::finish() {
  const std::string &src = out_.source;
  // q, k, v -> one qkv, in that order (timm's layout, which transformers' scripts split).
  for (const auto &[block, w] : qkv_w_) {
    const std::string name = "blocks." + std::to_string(block) + ".attn.qkv";
    const char *which[3] = {"query", "key", "value"};
    for (int i = 0; i < 3; ++i)
      if (!w[i])
        fail(ErrorCode::format,
             "layer " + std::to_string(block) + " of " + src + " has no " + which[i] + " weight");
    for (int i = 1; i < 3; ++i)
      if (w[i]->shape != w[0]->shape || w[0]->shape.size() != 2)
        fail(ErrorCode::format, "layer " + std::to_string(block) + " of " + src +
                                    ": query, key and value weights have shapes " +
                                    shape_str(w[0]->shape) + ", " + shape_str(w[1]->shape) + ", " +
                                    shape_str(w[2]->shape) + " (expected three equal [D, D])");
    std::vector<float> data;
    for (int i = 0; i < 3; ++i) {
      const std::vector<float> part = to_f32(*w[i]);
      data.insert(data.end(), part.begin(), part.end());
    }
    out_.add_f32(name + ".weight", {3 * w[0]->shape[0], w[0]->shape[1]}, std::move(data));
    auto b = qkv_b_.find(block);
    if (b == qkv_b_.end()) continue;
    std::vector<float> bias;
    for (int i = 0; i < 3; ++i) {
      const TensorInfo *t = b->second[i];
      if (!t || t->shape != std::vector<int64_t>{w[0]->shape[0]})
        fail(ErrorCode::format, "layer " + std::to_string(block) + " of " + src + ": the " +
                                    which[i] + " bias is " +
                                    (t ? shape_str(t->shape) : std::string("missing")) +
                                    ", expected [" + std::to_string(w[0]->shape[0]) + "]");
      const std::vector<float> part = to_f32(*t);
      bias.insert(bias.end(), part.begin(), part.end());
    }
    out_.add_f32(name + ".bias", {3 * w[0]->shape[0]}, std::move(bias));
  }
  for (const auto &[block, b] : qkv_b_)
    if (!qkv_w_.count(block))
      fail(ErrorCode::format,
           "layer " + std::to_string(block) + " of " + src + " has q/k/v biases but no weights");

  if (classifier_ && type_ == "dinov2")
    fail(ErrorCode::unsupported,
         "Dinov2ForImageClassification is not supported: its classifier reads the class token "
         "and the mean patch token together; convert the Dinov2Model without classifier.*");
  if (cls_classifier_ != dist_classifier_)
    fail(ErrorCode::format,
         src + " has " +
             (cls_classifier_ ? "cls_classifier but no distillation_classifier"
                              : "distillation_classifier but no cls_classifier"));
  if (dist_ && dist_classifier_) {
    add(renamed(*dist_, "dist_token"));
  } else if (dist_) {
    // DeiTForImageClassification / DeiTModel: the distillation token is in the sequence but no
    // head reads it, which is what a prefix token without a head of its own is.
    add(renamed(*dist_, "reg_token"));
    out_.notes.push_back(
        "DeiT without the distillation classifier: the distillation token stays in the sequence "
        "as a prefix token no head reads (stored as reg_token)");
  } else if (dist_classifier_) {
    fail(ErrorCode::format, src + " has a distillation_classifier but no distillation_token");
  }
  if (registers_) {
    if (dist_) fail(ErrorCode::unsupported, src + ": distillation and register tokens together");
    // transformers adds the position table to [class, patches], then inserts the registers:
    // the class token's row is folded into the class token (exactly the addition transformers
    // makes) and the table keeps the patch rows, timm's no_embed_class layout.
    add(renamed(*registers_, "reg_token"));
    TensorInfo *cls = nullptr, *pos = nullptr;
    for (auto &t : mapped_) {
      if (t.name == "cls_token") cls = &t;
      if (t.name == "pos_embed") pos = &t;
    }
    if (!cls || !pos || pos->shape.size() != 3 || pos->shape[1] < 2 || cls->shape.size() != 3 ||
        cls->shape[2] != pos->shape[2])
      fail(ErrorCode::format, src +
                                  ": register tokens need a class token and a position table "
                                  "with its row");
    const int64_t d = pos->shape[2], rows = pos->shape[1];
    std::vector<float> c = to_f32(*cls), p = to_f32(*pos);
    for (int64_t k = 0; k < d; ++k) c[k] += p[k];
    const std::vector<float> patches(p.begin() + d, p.end());
    const std::vector<int64_t> cls_shape = cls->shape;
    mapped_.erase(std::remove_if(mapped_.begin(), mapped_.end(),
                                 [](const TensorInfo &t) {
                                   return t.name == "cls_token" || t.name == "pos_embed";
                                 }),
                  mapped_.end());
    out_.add_f32("cls_token", cls_shape, std::move(c));
    out_.add_f32("pos_embed", {1, rows - 1, d}, patches);
  }
  if (dropped_pooler_)
    out_.notes.push_back(
        "pooler.* ignored: transformers' pooler (dense + tanh) is not the embedding; the output "
        "is the final-norm class token, as timm's");
  if (dropped_mask_)
    out_.notes.push_back("embeddings.mask_token dropped (masked-image pretraining only)");
  if (dropped_text_)
    out_.notes.push_back(
        "CLIPModel: the text tower (text_model.*, text_projection, logit_scale) is dropped; the "
        "output is the projected image embedding");
  // add_f32 appended to out_.tensors already; the renamed ones follow.
  out_.tensors.insert(out_.tensors.end(), mapped_.begin(), mapped_.end());
}

const TensorInfo *find_tensor(const Checkpoint &c, const std::string &name) {
  return c.find(name);
}

// config.json's int at `key`, or nullopt; a non-integer is a format error.
std::optional<int64_t> config_int(const json &cfg, const char *key, const std::string &name) {
  if (!cfg.contains(key) || cfg[key].is_null()) return std::nullopt;
  const json &v = cfg[key];
  if (v.is_array() && v.size() == 2 && v[0] == v[1])
    return config_int(json{{key, v[0]}}, key, name);
  if (!v.is_number_integer())
    fail(ErrorCode::format, name + ": '" + key + "' = " + v.dump() + " is not an integer");
  return v.get<int64_t>();
}

}  // namespace

Checkpoint hf_checkpoint(std::vector<TensorInfo> tensors, const std::string &source,
                         std::shared_ptr<const void> keep, const std::string &config_json,
                         const std::string &config_name, const std::string &preprocessor_json,
                         const std::string &preprocessor_name) {
  Checkpoint out;
  out.format = SourceFormat::huggingface;
  out.source = source;
  out.keep = std::move(keep);
  const json top = parse_object(config_json, config_name);
  // CLIPModel nests the vision tower's settings.
  json cfg = top;
  std::string model_type = top.value("model_type", "");
  if (model_type == "clip") {
    if (!top.contains("vision_config") || !top["vision_config"].is_object())
      fail(ErrorCode::format, config_name + ": a CLIPModel config needs 'vision_config'");
    cfg = top["vision_config"];
    model_type = "clip_vision_model";
  }
  if (model_type.empty()) {  // older configs: from the tensor names
    for (const auto &t : tensors) {
      if (starts_with(t.name, "vision_model.")) model_type = "clip_vision_model";
      if (starts_with(t.name, "deit.")) model_type = "deit";
      if (starts_with(t.name, "dinov2.") || t.name.find("layer_scale1") != std::string::npos)
        model_type = "dinov2";
    }
    if (model_type.empty()) model_type = "vit";
  }
  const ModelType *type = nullptr;
  for (const auto &m : kModelTypes)
    if (model_type == m.name) type = &m;
  if (!type)
    fail(ErrorCode::unsupported, config_name + ": model_type '" + model_type +
                                     "' is not supported (vit, deit, dinov2, "
                                     "dinov2_with_registers, clip, clip_vision_model)");

  HfMapper(&out, model_type).map(tensors);

  // Settings no tensor shows, and the geometry cross-checked against the shapes.
  const std::string act = cfg.value("hidden_act", type->act);
  if (act != "gelu" && act != "quick_gelu")
    fail(ErrorCode::unsupported,
         config_name + ": hidden_act '" + act + "' is not supported (gelu, quick_gelu)");
  const int64_t heads = config_int(cfg, "num_attention_heads", config_name).value_or(type->heads);
  double eps = type->ln_eps;
  if (cfg.contains("layer_norm_eps")) {
    if (!cfg["layer_norm_eps"].is_number())
      fail(ErrorCode::format, config_name + ": 'layer_norm_eps' is not a number");
    eps = cfg["layer_norm_eps"].get<double>();
  }
  const TensorInfo &pw = out.get("patch_embed.proj.weight");
  if (pw.shape.size() != 4)
    fail(ErrorCode::format, "the patch embedding of " + source + " has shape " +
                                shape_str(pw.shape) + ", expected [D, C, p, p]");
  const TensorInfo &pos = out.get("pos_embed");
  if (pos.shape.size() != 3)
    fail(ErrorCode::format, "the position embeddings of " + source + " have shape " +
                                shape_str(pos.shape) + ", expected [1, T, D]");
  int depth = 0;
  while (find_tensor(out, "blocks." + std::to_string(depth) + ".norm1.weight")) ++depth;
  const TensorInfo *fc1 = find_tensor(out, "blocks.0.mlp.fc1.weight");
  // Rows of the position table before the patches: the class token's, the distillation
  // token's (DeiT), none once register tokens had the class row folded out.
  const bool has_reg = find_tensor(out, "reg_token") != nullptr;
  const bool deit_token =
      find_tensor(out, "dist_token") != nullptr || (has_reg && model_type == "deit");
  const int prefix_rows = deit_token ? 2 : has_reg ? 0 : 1;
  const int pos_rows = dim(pos, 1) - prefix_rows;
  const int grid = static_cast<int>(std::lround(std::sqrt(std::max(pos_rows, 0))));
  if (grid * grid != pos_rows || grid == 0)
    fail(ErrorCode::format, "the position embeddings of " + source + " (" + shape_str(pos.shape) +
                                ") do not hold a square grid of patches");
  const int image_size = grid * dim(pw, 2);
  const std::pair<const char *, int> checks[] = {
      {"hidden_size", dim(pw, 0)},  {"num_channels", dim(pw, 1)},
      {"patch_size", dim(pw, 2)},   {"image_size", image_size},
      {"num_hidden_layers", depth}, {"intermediate_size", fc1 ? dim(*fc1, 0) : -1}};
  for (const auto &[key, value] : checks)
    if (auto v = config_int(cfg, key, config_name); v && *v != value)
      fail(ErrorCode::format, config_name + ": " + key + " = " + std::to_string(*v) +
                                  " contradicts the tensors of " + source + " (" +
                                  std::to_string(value) + ")");
  const TensorInfo *head = find_tensor(out, "head.weight");
  if (model_type == "clip_vision_model" && head)
    if (auto v = config_int(top, "projection_dim", config_name); v && *v != dim(*head, 0))
      fail(ErrorCode::format, config_name + ": projection_dim = " + std::to_string(*v) +
                                  " contradicts visual_projection.weight " +
                                  shape_str(head->shape));
  if (heads < 1 || dim(pw, 0) % heads != 0)
    fail(ErrorCode::format, config_name + ": num_attention_heads " + std::to_string(heads) +
                                " does not divide hidden_size " + std::to_string(dim(pw, 0)));

  auto &meta = out.metadata;
  std::string arch = model_type;
  if (top.contains("architectures") && top["architectures"].is_array() &&
      !top["architectures"].empty() && top["architectures"][0].is_string())
    arch = top["architectures"][0].get<std::string>();
  meta["arch"] = arch;
  meta["hf_model_type"] = model_type;
  meta["num_heads"] = std::to_string(heads);
  meta["ln_eps"] = json(eps).dump();
  meta["act_layer"] = act;
  meta["global_pool"] = "token";
  // Class names, for a classifier (a projection has none).
  if (head && model_type != "clip_vision_model" && cfg.contains("id2label") &&
      cfg["id2label"].is_object()) {
    const json &ids = cfg["id2label"];
    json labels = json::array();
    for (size_t i = 0; i < ids.size(); ++i) {
      const std::string key = std::to_string(i);
      if (!ids.contains(key) || !ids[key].is_string())
        fail(ErrorCode::format, config_name + ": id2label has no string for class " + key);
      labels.push_back(ids[key]);
    }
    if (static_cast<int>(labels.size()) != dim(*head, 0))
      fail(ErrorCode::format, config_name + ": id2label names " + std::to_string(labels.size()) +
                                  " classes, the classifier has " + std::to_string(dim(*head, 0)));
    meta["labels"] = labels.dump();
  }
  const json pp =
      preprocessor_json.empty() ? json() : parse_object(preprocessor_json, preprocessor_name);
  meta["pretrained_cfg"] = pretrained_cfg_from_processor(pp, preprocessor_name, *type, dim(pw, 1),
                                                         image_size, &out.notes)
                               .dump();
  return out;
}

Checkpoint hf_checkpoint_beside(SafetensorsFile weights, const std::string &weights_path) {
  auto owner = std::make_shared<SafetensorsFile>(std::move(weights));
  return hf_checkpoint_beside(owner->tensors(), owner->source(), owner, weights_path);
}

Checkpoint hf_checkpoint_beside(std::vector<TensorInfo> tensors, const std::string &source,
                                std::shared_ptr<const void> keep, const std::string &weights_path) {
  const fs::path dir = fs::path(weights_path).parent_path();
  const std::string config = (dir / "config.json").string();
  const std::string pp = (dir / "preprocessor_config.json").string();
  std::error_code ec;
  if (!fs::exists(config, ec))
    fail(ErrorCode::io, "Hugging Face checkpoint " + weights_path +
                            " needs its config.json beside it: " + config + " not found");
  const std::string config_text = read_text_file(config);
  const std::string pp_text = fs::exists(pp, ec) ? read_text_file(pp) : "";
  return hf_checkpoint(std::move(tensors), source, std::move(keep), config_text, config, pp_text,
                       pp_text.empty() ? std::string("preprocessor_config.json") : pp);
}

Checkpoint hf_snapshot_checkpoint(const std::string &dir) {
  const fs::path d(dir);
  const std::string weights = (d / "model.safetensors").string();
  std::error_code ec;
  if (!fs::exists(weights, ec)) {
    if (fs::exists(d / "model.safetensors.index.json", ec))
      fail(ErrorCode::unsupported, "'" + dir + "' holds a sharded checkpoint " +
                                       "(model.safetensors.index.json): not supported");
    // Older snapshots hold torch.save's pickle only (load_checkpoint reads it safely).
    if (fs::exists(d / "pytorch_model.bin", ec))
      return load_checkpoint((d / "pytorch_model.bin").string());
    if (fs::exists(d / "pytorch_model.bin.index.json", ec))
      fail(ErrorCode::unsupported, "'" + dir + "' holds a sharded checkpoint " +
                                       "(pytorch_model.bin.index.json): not supported");
    fail(ErrorCode::io, "'" + dir + "' is a directory without model.safetensors or " +
                            "pytorch_model.bin (a Hugging Face snapshot folder holds one of " +
                            "them, config.json, preprocessor_config.json)");
  }
  SafetensorsFile file = SafetensorsFile::from_file(weights);
  const SourceFormat format = detect_source_format(file.tensors(), file.source());
  if (format == SourceFormat::huggingface) return hf_checkpoint_beside(std::move(file), weights);
  if (format == SourceFormat::torchvision) return torchvision_checkpoint(std::move(file));
  // A timm repository on the Hub: config.json holds "architecture", "pretrained_cfg" and maybe
  // "label_names", which fill what the safetensors' own metadata lacks.
  Checkpoint c = timm_checkpoint(std::move(file));
  const std::string config = (d / "config.json").string();
  if (fs::exists(config, ec)) {
    const json cfg = parse_object(read_text_file(config), config);
    if (cfg.contains("architecture") && cfg["architecture"].is_string() &&
        !c.metadata.count("arch"))
      c.metadata["arch"] = cfg["architecture"].get<std::string>();
    if (cfg.contains("pretrained_cfg") && cfg["pretrained_cfg"].is_object() &&
        !c.metadata.count("pretrained_cfg"))
      c.metadata["pretrained_cfg"] = cfg["pretrained_cfg"].dump();
    if (cfg.contains("label_names") && cfg["label_names"].is_array() && !c.metadata.count("labels"))
      c.metadata["labels"] = cfg["label_names"].dump();
  }
  return c;
}

}  // namespace vqm
