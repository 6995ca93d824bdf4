#include "models/quant_spec.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "models/layer_table.h"
#include "runtime/io/error.h"

namespace vqm {

using nlohmann::json;

const std::vector<BlockPoint> &block_points() {
  static const std::vector<BlockPoint> points = {
      {"attn.qkv.input", &BlockQuant::qkv_in},
      {"attn.q", &BlockQuant::q},
      {"attn.k", &BlockQuant::k},
      {"attn.softmax", &BlockQuant::attn},
      {"attn.v", &BlockQuant::v},
      {"attn.proj.input", &BlockQuant::proj_in},
      {"mlp.fc1.input", &BlockQuant::fc1_in},
      {"mlp.fc2.input", &BlockQuant::fc2_in},
  };
  return points;
}

namespace {

// Optional "levels" (ActQuant::levels): 2^bits strictly increasing byte codes.
std::vector<uint8_t> levels_from_json(const json &j, int bits,
                                      const std::function<void(const std::string &)> &bad) {
  const json &l = j["levels"];
  if (!l.is_array() || l.size() != (size_t{1} << bits) || bits > 7)
    bad("has levels that are not 2^bits codes of a grid of at most 7 bits");
  std::vector<uint8_t> out;
  for (const json &v : l) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 255 ||
        (!out.empty() && v.get<int64_t>() <= out.back()))
      bad("has levels that are not increasing codes in [0, 255]");
    out.push_back(static_cast<uint8_t>(v.get<int64_t>()));
  }
  return out;
}

// twin_allowed / levels_allowed: the points that may hold a two-range or chosen-level grid.
ActQuant act_from_json(const json &acts, const std::string &name, bool twin_allowed = false,
                       bool levels_allowed = false) {
  auto bad = [&](const std::string &why) {
    fail(ErrorCode::format, "quantization: activation '" + name + "' " + why);
  };
  if (!acts.contains(name)) bad("is missing");
  const json &j = acts.at(name);
  if (!j.is_object()) bad("must be an object");
  for (const char *key : {"bits", "delta", "zero_point"})
    if (!j.contains(key) || !j[key].is_number()) bad(std::string("needs a numeric '") + key + "'");
  if (!j["bits"].is_number_integer() || !j["zero_point"].is_number_integer())
    bad("bits and zero_point must be integers");
  ActQuant a;
  a.enabled = true;
  const int64_t bits = j["bits"].get<int64_t>(), zp = j["zero_point"].get<int64_t>();
  const double delta = j["delta"].get<double>();
  if (bits < 2 || bits > 8) bad("has bits " + std::to_string(bits) + ", expected 2..8");
  a.bits = static_cast<int>(bits);
  if (j.contains("levels")) {
    if (!levels_allowed) bad("has levels, which only LayerNorm and GELU outputs may have");
    a.levels = levels_from_json(j, a.bits, bad);
  }
  if (zp < 0 || zp > a.code_max())
    bad("has zero_point " + std::to_string(zp) + " outside [0, " + std::to_string(a.code_max()) +
        "]");
  if (!(delta > 0 && std::isfinite(delta) && delta < 1e30))
    bad("has delta " + std::to_string(delta) + ", expected > 0");
  a.zero_point = static_cast<int>(zp);
  a.delta = static_cast<float>(delta);
  if (j.contains("twin_shift")) {  // optional: the two-range grid, softmax output only
    if (!j["twin_shift"].is_number_integer()) bad("has a non-integer twin_shift");
    const int64_t shift = j["twin_shift"].get<int64_t>();
    if (!twin_allowed || !a.levels.empty())
      bad("has twin_shift, which only the softmax output may have");
    a.twin_shift = static_cast<int>(std::clamp<int64_t>(shift, 0, 16));
    if (shift != a.twin_shift || (shift != 0 && !a.twin_valid()))
      bad("has twin_shift " + std::to_string(shift) + ", which a " + std::to_string(bits) +
          "-bit grid with zero point " + std::to_string(zp) + " cannot have");
  }
  return a;
}

json act_to_json(const ActQuant &a) {
  json j{{"bits", a.bits}, {"delta", a.delta}, {"zero_point", a.zero_point}};
  if (a.twin_shift > 0) j["twin_shift"] = a.twin_shift;
  if (!a.levels.empty()) j["levels"] = a.levels;
  return j;
}

bool chosen_levels_allowed(ActQuant BlockQuant::*member) {
  for (const LinearSpec &ls : block_linears())
    if (ls.input_grid == member) return ls.chosen_levels;
  return false;
}

int module_bits(const json &modules, const std::string &name) {
  if (!modules.contains(name) || !modules[name].is_object() || !modules[name].contains("bits") ||
      !modules[name]["bits"].is_number_integer())
    fail(ErrorCode::format, "quantization: module '" + name + "' needs integer 'bits'");
  const int64_t b = modules[name]["bits"].get<int64_t>();
  if (b < 2 || b > 8)
    fail(ErrorCode::format, "quantization: module '" + name + "' has bits " + std::to_string(b));
  return static_cast<int>(b);
}

}  // namespace

ModelQuant quant_from_json(const json &q, int depth, bool has_head) {
  if (!q.is_object() || !q.contains("activations") || !q["activations"].is_object() ||
      !q.contains("modules") || !q["modules"].is_object())
    fail(ErrorCode::format, "quantization: needs 'activations' and 'modules' objects");
  const json &acts = q["activations"];
  ModelQuant m;
  m.patch_in = act_from_json(acts, "patch_embed.input");
  if (has_head) {
    m.head_in = act_from_json(acts, "head.input");
  } else if (acts.contains("head.input")) {
    fail(ErrorCode::format, "quantization: 'head.input' for a model without a head");
  }
  for (int b = 0; b < depth; ++b) {
    const std::string pre = block_prefix(static_cast<int>(b));
    BlockQuant bq;
    for (const auto &p : block_points())
      bq.*p.member = act_from_json(acts, pre + p.key, p.member == &BlockQuant::attn,
                                   chosen_levels_allowed(p.member));
    bq.attn_bits = module_bits(q["modules"], pre + "attn");
    bq.mlp_bits = module_bits(q["modules"], pre + "mlp");
    m.blocks.push_back(bq);
  }
  return m;
}

void quant_to_json(const ModelQuant &m, json &q) {
  json acts = json::object(), modules = json::object();
  acts["patch_embed.input"] = act_to_json(m.patch_in);
  if (m.head_in.enabled) acts["head.input"] = act_to_json(m.head_in);  // models with a head
  for (size_t b = 0; b < m.blocks.size(); ++b) {
    const std::string pre = block_prefix(static_cast<int>(b));
    for (const auto &p : block_points()) acts[pre + p.key] = act_to_json(m.blocks[b].*p.member);
    modules[pre + "attn"] = {{"bits", m.blocks[b].attn_bits}};
    modules[pre + "mlp"] = {{"bits", m.blocks[b].mlp_bits}};
  }
  q["activations"] = acts;
  q["modules"] = modules;
}

}  // namespace vqm
