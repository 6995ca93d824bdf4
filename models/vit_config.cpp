#include "models/vit_config.h"

#include <cmath>

#include "runtime/io/error.h"

namespace vqm {

using nlohmann::json;

namespace {
// Reads j[key] as an integer in [lo, hi]; missing, wrong type or out of range is a format error.
int get_int(const json &j, const char *key, int lo, int hi) {
  if (!j.contains(key)) fail(ErrorCode::format, std::string("model config: missing '") + key + "'");
  const json &v = j.at(key);
  if (!v.is_number_integer())
    fail(ErrorCode::format,
         std::string("model config: '") + key + "' must be an integer, got " + v.dump());
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    fail(ErrorCode::format, std::string("model config: '") + key + "' = " + std::to_string(x) +
                                " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                "]");
  return static_cast<int>(x);
}

// The integer fields and their ranges, shared by from_json (which also checks the JSON types)
// and validate (which also sees configs inferred from checkpoint shapes, where a 0 can appear).
struct IntField {
  const char *key;
  int VitConfig::*field;
  int lo, hi;
};
constexpr IntField kIntFields[] = {
    {"image_size", &VitConfig::image_size, 1, 4096},
    {"patch_size", &VitConfig::patch_size, 1, 1024},
    {"in_chans", &VitConfig::in_chans, 1, 4},
    {"embed_dim", &VitConfig::embed_dim, 1, 16384},
    {"depth", &VitConfig::depth, 1, 256},
    {"num_heads", &VitConfig::num_heads, 1, 1024},
    {"mlp_hidden", &VitConfig::mlp_hidden, 1, 65536},
    {"num_classes", &VitConfig::num_classes, 1, 1000000},
};
}  // namespace

json VitConfig::to_json() const {
  return json{{"arch", arch},           {"image_size", image_size}, {"patch_size", patch_size},
              {"in_chans", in_chans},   {"embed_dim", embed_dim},   {"depth", depth},
              {"num_heads", num_heads}, {"mlp_hidden", mlp_hidden}, {"num_classes", num_classes},
              {"ln_eps", ln_eps},       {"distilled", distilled},   {"class_token", true}};
}

VitConfig VitConfig::from_json(const json &j) {
  if (!j.is_object()) fail(ErrorCode::format, "model config: 'model' must be a JSON object");
  VitConfig c;
  if (j.contains("arch")) {
    if (!j["arch"].is_string()) fail(ErrorCode::format, "model config: 'arch' must be a string");
    c.arch = j["arch"].get<std::string>();
  }
  for (const IntField &f : kIntFields) c.*f.field = get_int(j, f.key, f.lo, f.hi);
  if (j.contains("ln_eps")) {
    if (!j["ln_eps"].is_number())
      fail(ErrorCode::format, "model config: 'ln_eps' must be a number");
    c.ln_eps = j["ln_eps"].get<float>();
  }
  if (j.contains("distilled")) {
    if (!j["distilled"].is_boolean())
      fail(ErrorCode::format, "model config: 'distilled' must be true or false");
    c.distilled = j["distilled"].get<bool>();
  }
  if (j.contains("class_token") && j["class_token"] != true)
    fail(ErrorCode::unsupported, "model config: models without a class token are not supported");
  c.validate();
  return c;
}

void VitConfig::validate() const {
  auto bad = [](const std::string &what) { fail(ErrorCode::format, "model config: " + what); };
  // Ranges first: the divisibility checks below divide by patch_size and num_heads.
  for (const IntField &f : kIntFields)
    if (this->*f.field < f.lo || this->*f.field > f.hi)
      bad(std::string("'") + f.key + "' = " + std::to_string(this->*f.field) + " is outside [" +
          std::to_string(f.lo) + ", " + std::to_string(f.hi) + "]");
  if (image_size % patch_size != 0)
    bad("image_size " + std::to_string(image_size) + " is not a multiple of patch_size " +
        std::to_string(patch_size));
  if (embed_dim % num_heads != 0)
    bad("embed_dim " + std::to_string(embed_dim) + " is not a multiple of num_heads " +
        std::to_string(num_heads));
  if (grid() > 512) bad("more than 512x512 patches");
  if (!(ln_eps > 0.f && ln_eps < 1.f)) bad("ln_eps must be in (0, 1)");
}

json preprocess_to_json(const PreprocessConfig &p) {
  return json{{"channels", p.channels}, {"resize", p.resize},
              {"crop", p.crop},         {"interpolation", interpolation_name(p.interpolation)},
              {"mean", p.mean},         {"std", p.std}};
}

PreprocessConfig preprocess_from_json(const json &j, int expected_channels, int crop) {
  if (!j.is_object()) fail(ErrorCode::format, "preprocess: must be a JSON object");
  PreprocessConfig p;
  p.channels = get_int(j, "channels", 1, 4);
  p.resize = get_int(j, "resize", 1, 16384);
  p.crop = get_int(j, "crop", 1, 16384);
  if (p.channels != expected_channels)
    fail(ErrorCode::format, "preprocess: channels " + std::to_string(p.channels) +
                                " differ from the model's in_chans " +
                                std::to_string(expected_channels));
  if (p.crop != crop)
    fail(ErrorCode::format, "preprocess: crop " + std::to_string(p.crop) +
                                " differs from the model's image_size " + std::to_string(crop));
  if (!j.contains("interpolation") || !j["interpolation"].is_string() ||
      !interpolation_from_name(j["interpolation"].get<std::string>(), &p.interpolation))
    fail(ErrorCode::format, "preprocess: 'interpolation' must be bicubic, bilinear or nearest");
  for (const char *key : {"mean", "std"}) {
    const json &v = j.contains(key) ? j[key] : json();
    if (!v.is_array() || v.size() != static_cast<size_t>(p.channels))
      fail(ErrorCode::format, std::string("preprocess: '") + key + "' must be an array of " +
                                  std::to_string(p.channels) + " numbers");
    std::vector<float> vals;
    for (const auto &x : v) {
      if (!x.is_number())
        fail(ErrorCode::format, std::string("preprocess: '") + key + "' holds a non-number");
      vals.push_back(x.get<float>());
    }
    if (std::string(key) == "mean") {
      p.mean = vals;
    } else {
      for (float s : vals)
        if (!(s > 0.f) || !std::isfinite(s))
          fail(ErrorCode::format, "preprocess: 'std' values must be > 0");
      p.std = vals;
    }
  }
  return p;
}

std::vector<ExpectedTensor> expected_tensors(const VitConfig &c) {
  const int64_t d = c.embed_dim, h = c.mlp_hidden, p = c.patch_size;
  std::vector<ExpectedTensor> t = {
      {"cls_token", {1, 1, d}},
      {"pos_embed", {1, c.tokens(), d}},
      {"patch_embed.proj.weight", {d, c.in_chans, p, p}},
      {"patch_embed.proj.bias", {d}},
  };
  if (c.distilled) t.push_back({"dist_token", {1, 1, d}});
  for (int b = 0; b < c.depth; ++b) {
    const std::string pre = "blocks." + std::to_string(b) + ".";
    t.push_back({pre + "norm1.weight", {d}});
    t.push_back({pre + "norm1.bias", {d}});
    t.push_back({pre + "attn.qkv.weight", {3 * d, d}});
    t.push_back({pre + "attn.qkv.bias", {3 * d}});
    t.push_back({pre + "attn.proj.weight", {d, d}});
    t.push_back({pre + "attn.proj.bias", {d}});
    t.push_back({pre + "norm2.weight", {d}});
    t.push_back({pre + "norm2.bias", {d}});
    t.push_back({pre + "mlp.fc1.weight", {h, d}});
    t.push_back({pre + "mlp.fc1.bias", {h}});
    t.push_back({pre + "mlp.fc2.weight", {d, h}});
    t.push_back({pre + "mlp.fc2.bias", {d}});
  }
  t.push_back({"norm.weight", {d}});
  t.push_back({"norm.bias", {d}});
  t.push_back({"head.weight", {c.num_classes, d}});
  t.push_back({"head.bias", {c.num_classes}});
  if (c.distilled) {
    t.push_back({"head_dist.weight", {c.num_classes, d}});
    t.push_back({"head_dist.bias", {c.num_classes}});
  }
  return t;
}

}  // namespace vqm
