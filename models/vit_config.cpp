#include "models/vit_config.h"

#include <cmath>

#include "models/layer_table.h"

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
    {"num_classes", &VitConfig::num_classes, 0, 1000000},
    {"reg_tokens", &VitConfig::reg_tokens, 0, 64},
};
// The boolean variations; a key absent from a file keeps the plain ViT's default.
struct BoolField {
  const char *key;
  bool VitConfig::*field;
};
constexpr BoolField kBoolFields[] = {
    {"class_token", &VitConfig::class_token},
    {"distilled", &VitConfig::distilled},
    {"pos_embed_prefix", &VitConfig::pos_embed_prefix},
    {"patch_bias", &VitConfig::patch_bias},
    {"norm_pre", &VitConfig::norm_pre},
    {"qkv_bias", &VitConfig::qkv_bias},
    {"fc_norm", &VitConfig::fc_norm},
    {"head_bias", &VitConfig::head_bias},
};
// Fields added after version 1's first files: optional in from_json.
bool optional_int(const char *key) {
  return std::string(key) == "reg_tokens";
}

// Reads j[key], one of `names`, into its index; absent keeps `*out`.
template <typename E, size_t N>
void get_name(const json &j, const char *key, const char *const (&names)[N], E *out) {
  if (!j.contains(key)) return;
  const json &v = j.at(key);
  for (size_t i = 0; i < N; ++i)
    if (v.is_string() && v.get<std::string>() == names[i]) {
      *out = static_cast<E>(i);
      return;
    }
  std::string all;
  for (const char *n : names) all += std::string(all.empty() ? "" : ", ") + n;
  fail(ErrorCode::format,
       std::string("model config: '") + key + "' = " + v.dump() + " is not one of " + all);
}
constexpr const char *kActivationNames[] = {"gelu", "quick_gelu"};  // Activation's order
constexpr const char *kPoolNames[] = {"token", "avg"};              // Pool's order
}  // namespace

const char *activation_name(Activation a) {
  return kActivationNames[static_cast<int>(a)];
}
const char *pool_name(Pool p) {
  return kPoolNames[static_cast<int>(p)];
}

json VitConfig::to_json() const {
  json j{
      {"arch", arch}, {"ln_eps", ln_eps}, {"act", activation_name(act)}, {"pool", pool_name(pool)}};
  for (const IntField &f : kIntFields) j[f.key] = this->*f.field;
  for (const BoolField &f : kBoolFields) j[f.key] = this->*f.field;
  return j;
}

VitConfig VitConfig::from_json(const json &j) {
  if (!j.is_object()) fail(ErrorCode::format, "model config: 'model' must be a JSON object");
  VitConfig c;
  if (j.contains("arch")) {
    if (!j["arch"].is_string()) fail(ErrorCode::format, "model config: 'arch' must be a string");
    c.arch = j["arch"].get<std::string>();
  }
  for (const IntField &f : kIntFields)
    if (!optional_int(f.key) || j.contains(f.key)) c.*f.field = get_int(j, f.key, f.lo, f.hi);
  if (j.contains("ln_eps")) {
    if (!j["ln_eps"].is_number())
      fail(ErrorCode::format, "model config: 'ln_eps' must be a number");
    c.ln_eps = j["ln_eps"].get<float>();
  }
  for (const BoolField &f : kBoolFields) {
    if (!j.contains(f.key)) continue;
    if (!j[f.key].is_boolean())
      fail(ErrorCode::format, std::string("model config: '") + f.key + "' must be true or false");
    c.*f.field = j[f.key].get<bool>();
  }
  get_name(j, "act", kActivationNames, &c.act);
  get_name(j, "pool", kPoolNames, &c.pool);
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
  // Combinations no member of the family has, which the forward does not implement.
  if (pool == Pool::token && !class_token) bad("pool 'token' needs a class token");
  if (distilled && !class_token) bad("a distilled model needs a class token");
  if (distilled && (pool != Pool::token || num_classes == 0 || fc_norm))
    bad("a distilled model pools the class token into two heads");
  if (pool == Pool::avg && num_patches() < 1) bad("pool 'avg' needs patches");
  if (!(ln_eps > 0.f && ln_eps < 1.f)) bad("ln_eps must be in (0, 1)");
}

json preprocess_to_json(const PreprocessConfig &p) {
  json j{{"channels", p.channels}, {"resize", p.resize},
         {"crop", p.crop},         {"interpolation", interpolation_name(p.interpolation)},
         {"mean", p.mean},         {"std", p.std}};
  // Optional: absent is "shorter_side", so files from before the key existed read unchanged.
  if (p.resize_mode != ResizeMode::shorter_side) j["resize_mode"] = resize_mode_name(p.resize_mode);
  if (p.crop_offset != CropOffset::round_half_even)
    j["crop_offset"] = crop_offset_name(p.crop_offset);
  return j;
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
  if (j.contains("resize_mode") &&
      (!j["resize_mode"].is_string() ||
       !resize_mode_from_name(j["resize_mode"].get<std::string>(), &p.resize_mode)))
    fail(ErrorCode::format, "preprocess: 'resize_mode' must be shorter_side or squash");
  if (j.contains("crop_offset") &&
      (!j["crop_offset"].is_string() ||
       !crop_offset_from_name(j["crop_offset"].get<std::string>(), &p.crop_offset)))
    fail(ErrorCode::format, "preprocess: 'crop_offset' must be round_half_even or floor");
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
  const int64_t d = c.embed_dim, p = c.patch_size;
  std::vector<ExpectedTensor> t;
  if (c.class_token) t.push_back({"cls_token", {1, 1, d}});
  if (c.distilled) t.push_back({"dist_token", {1, 1, d}});
  if (c.reg_tokens > 0) t.push_back({"reg_token", {1, c.reg_tokens, d}});
  t.push_back({"pos_embed", {1, c.pos_tokens(), d}});
  t.push_back({"patch_embed.proj.weight", {d, c.in_chans, p, p}});
  if (c.patch_bias) t.push_back({"patch_embed.proj.bias", {d}});
  if (c.norm_pre) {
    t.push_back({"norm_pre.weight", {d}});
    t.push_back({"norm_pre.bias", {d}});
  }
  for (int b = 0; b < c.depth; ++b) {
    const std::string pre = block_prefix(b);
    for (const char *norm : {"norm1", "norm2"}) {
      t.push_back({pre + norm + ".weight", {d}});
      t.push_back({pre + norm + ".bias", {d}});
    }
    for (const LinearSpec &l : block_linears()) {
      t.push_back({pre + l.name + ".weight", {linear_out(c, l.id), linear_in(c, l.id)}});
      if (linear_has_bias(c, l.id)) t.push_back({pre + l.name + ".bias", {linear_out(c, l.id)}});
    }
  }
  const char *final_norm = c.fc_norm ? "fc_norm" : "norm";
  t.push_back({std::string(final_norm) + ".weight", {d}});
  t.push_back({std::string(final_norm) + ".bias", {d}});
  for (const char *head : {"head", "head_dist"}) {
    if (c.num_classes == 0 || (!c.distilled && std::string(head) == "head_dist")) continue;
    t.push_back({std::string(head) + ".weight", {c.num_classes, d}});
    if (c.head_bias) t.push_back({std::string(head) + ".bias", {c.num_classes}});
  }
  return t;
}

}  // namespace vqm
