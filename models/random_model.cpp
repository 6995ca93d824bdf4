#include "models/random_model.h"

#include <random>

#include "runtime/io/error.h"

namespace vqm {

VitConfig arch_config(const std::string &arch) {
  struct Row {
    const char *name;
    int dim, heads;
  };
  static const Row rows[] = {{"deit_tiny", 192, 3}, {"deit_small", 384, 6}, {"deit_base", 768, 12}};
  for (const auto &r : rows) {
    if (arch == r.name || arch == std::string(r.name) + "_patch16_224") {
      VitConfig c;
      c.arch = std::string(r.name) + "_patch16_224";
      c.embed_dim = r.dim;
      c.num_heads = r.heads;
      c.mlp_hidden = 4 * r.dim;
      c.depth = 12;
      return c;
    }
  }
  fail(ErrorCode::invalid_argument,
       "unknown --arch '" + arch +
           "' (known: deit_tiny_patch16_224, deit_small_patch16_224, deit_base_patch16_224)");
}

VqmWriter make_random_vit(const VitConfig &cfg, uint32_t seed) {
  cfg.validate();
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 0.02f);
  VqmWriter w;
  nlohmann::json doc;
  doc["model"] = cfg.to_json();
  PreprocessConfig p;
  p.channels = cfg.in_chans;
  p.crop = cfg.image_size;
  p.resize = cfg.image_size * 8 / 7;
  p.mean.assign(cfg.in_chans, 0.5f);
  p.std.assign(cfg.in_chans, 0.5f);
  doc["preprocess"] = preprocess_to_json(p);
  doc["producer"] = {
      {"name", "vqm"}, {"version", VQM_VERSION_STRING}, {"tool", "random"}, {"seed", seed}};
  w.set_meta(doc);
  for (const auto &t : expected_tensors(cfg)) {
    int64_t n = 1;
    for (auto d : t.shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    const bool is_norm_weight =
        t.name.find("norm") != std::string::npos && t.name.find(".weight") != std::string::npos;
    const bool is_bias = t.name.size() > 5 && t.name.compare(t.name.size() - 5, 5, ".bias") == 0;
    for (auto &x : v)
      x = is_norm_weight ? 1.f : is_bias ? 0.f : std::max(-0.04f, std::min(0.04f, normal(rng)));
    w.add_f32(t.name, t.shape, v.data());
  }
  return w;
}

}  // namespace vqm
