// The source layouts vit-convert reads besides timm's (models/convert_hf.cpp,
// models/convert_torchvision.cpp), on small synthetic checkpoints: a random timm model renamed
// into each Hugging Face model type and into torchvision's layout must come back under timm's
// names and shapes (q, k, v concatenated in that order; CLIP's class and position embeddings
// reshaped), with the settings its config states, and run to exactly the timm model's outputs.
// Then the layout detection, the resize modes, and bad inputs (each a one-line error).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "models/convert.h"
#include "models/random_model.h"
#include "models/vit_config.h"
#include "runtime/engine/vit.h"
#include "runtime/io/image.h"
#include "test_util.h"

namespace vqm::test {
namespace {

using nlohmann::json;

std::vector<uint8_t> f32_bytes(const std::vector<float> &v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<float> floats(const StTensor &t) {
  std::vector<float> v(t.data.size() / 4);
  std::memcpy(v.data(), t.data.data(), t.data.size());
  return v;
}

// A random timm model's tensors (F32); LayerScale gammas added when asked (DINOv2).
std::vector<StTensor> timm_tensors(const VitConfig &cfg, bool layer_scale = false) {
  const auto bytes = make_random_vit(cfg, 11).to_bytes();
  const VqmFile f = VqmFile::from_memory(bytes.data(), bytes.size());
  std::vector<StTensor> out;
  for (const auto &t : f.tensors())
    out.push_back({t.name, "F32", t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)});
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  for (int b = 0; layer_scale && b < cfg.depth; ++b)
    for (const char *g : {"ls1.gamma", "ls2.gamma"}) {
      std::vector<float> v(cfg.embed_dim);
      for (auto &x : v) x = u(rng);
      out.push_back(
          {"blocks." + std::to_string(b) + "." + g, "F32", {cfg.embed_dim}, f32_bytes(v)});
    }
  return out;
}

const StTensor &named(const std::vector<StTensor> &ts, const std::string &name) {
  for (const auto &t : ts)
    if (t.name == name) return t;
  throw std::runtime_error("no tensor " + name);
}

enum class Hf { vit, vit_model, deit_teacher, deit_plain, dinov2, clip };

// timm -> transformers names, as transformers' conversion scripts write them.
std::vector<StTensor> to_hf(const std::vector<StTensor> &timm, Hf kind) {
  const bool clip = kind == Hf::clip, dino = kind == Hf::dinov2;
  const std::string base = kind == Hf::vit                                      ? "vit."
                           : kind == Hf::deit_teacher || kind == Hf::deit_plain ? "deit."
                           : clip                                               ? "vision_model."
                                                                                : "";
  std::vector<StTensor> out;
  auto put = [&](StTensor t, const std::string &name) {
    t.name = name;
    out.push_back(std::move(t));
  };
  for (const StTensor &t : timm) {
    const std::string &n = t.name;
    auto after = [&](const std::string &p) { return n.substr(p.size()); };
    if (n == "cls_token") {
      if (clip) {
        StTensor c = t;
        c.shape = {t.shape[2]};
        put(c, base + "embeddings.class_embedding");
      } else {
        put(t, base + "embeddings.cls_token");
      }
    } else if (n == "dist_token" || n == "reg_token") {
      put(t, base + "embeddings.distillation_token");
    } else if (n == "pos_embed") {
      if (clip) {
        StTensor p = t;
        p.shape = {t.shape[1], t.shape[2]};
        put(p, base + "embeddings.position_embedding.weight");
      } else {
        put(t, base + "embeddings.position_embeddings");
      }
    } else if (n.rfind("patch_embed.proj.", 0) == 0) {
      put(t,
          base +
              (clip ? "embeddings.patch_embedding." : "embeddings.patch_embeddings.projection.") +
              after("patch_embed.proj."));
    } else if (n.rfind("norm_pre.", 0) == 0) {
      put(t, base + "pre_layrnorm." + after("norm_pre."));
    } else if (n.rfind("norm.", 0) == 0) {
      put(t, base + (clip ? "post_layernorm." : "layernorm.") + after("norm."));
    } else if (n.rfind("head_dist.", 0) == 0) {
      put(t, "distillation_classifier." + after("head_dist."));
    } else if (n.rfind("head.", 0) == 0) {
      put(t, clip
                 ? "visual_projection." + after("head.")
                 : (kind == Hf::deit_teacher ? "cls_classifier." : "classifier.") + after("head."));
    } else if (n.rfind("blocks.", 0) == 0) {
      const size_t dot = n.find('.', 7);
      const std::string block = n.substr(7, dot - 7), rest = n.substr(dot + 1);
      const std::string pre = base + (clip ? "encoder.layers." : "encoder.layer.") + block + ".";
      if (rest.rfind("attn.qkv.", 0) == 0) {
        const std::string leaf = rest.substr(9);
        const char *parts[3][2] = {{"attention.attention.query.", "self_attn.q_proj."},
                                   {"attention.attention.key.", "self_attn.k_proj."},
                                   {"attention.attention.value.", "self_attn.v_proj."}};
        const size_t third = t.data.size() / 3;
        for (int i = 0; i < 3; ++i) {
          StTensor p = t;
          p.shape[0] /= 3;
          p.data.assign(t.data.begin() + i * third, t.data.begin() + (i + 1) * third);
          put(p, pre + parts[i][clip ? 1 : 0] + leaf);
        }
        continue;
      }
      const std::pair<const char *, const char *> vit[] = {
          {"norm1.", dino ? "norm1." : "layernorm_before."},
          {"norm2.", dino ? "norm2." : "layernorm_after."},
          {"attn.proj.", "attention.output.dense."},
          {"mlp.fc1.", dino ? "mlp.fc1." : "intermediate.dense."},
          {"mlp.fc2.", dino ? "mlp.fc2." : "output.dense."},
          {"ls1.gamma", "layer_scale1.lambda1"},
          {"ls2.gamma", "layer_scale2.lambda1"}};
      const std::pair<const char *, const char *> clipb[] = {{"norm1.", "layer_norm1."},
                                                             {"norm2.", "layer_norm2."},
                                                             {"attn.proj.", "self_attn.out_proj."},
                                                             {"mlp.fc1.", "mlp.fc1."},
                                                             {"mlp.fc2.", "mlp.fc2."}};
      bool done = false;
      for (const auto &[from, to] : clip ? std::vector<std::pair<const char *, const char *>>(
                                               std::begin(clipb), std::end(clipb))
                                         : std::vector<std::pair<const char *, const char *>>(
                                               std::begin(vit), std::end(vit)))
        if (!done && rest.rfind(from, 0) == 0) {
          put(t, pre + to + rest.substr(std::strlen(from)));
          done = true;
        }
      if (!done) throw std::runtime_error("test mapping lacks " + n);
    } else {
      throw std::runtime_error("test mapping lacks " + n);
    }
  }
  return out;
}

json hf_config(const VitConfig &c, const std::string &model_type, const std::string &act,
               double eps) {
  json j{{"model_type", model_type},
         {"hidden_size", c.embed_dim},
         {"num_hidden_layers", c.depth},
         {"num_attention_heads", c.num_heads},
         {"intermediate_size", c.mlp_hidden},
         {"hidden_act", act},
         {"layer_norm_eps", eps},
         {"image_size", c.image_size},
         {"patch_size", c.patch_size},
         {"num_channels", c.in_chans}};
  json labels = json::object();
  for (int i = 0; i < std::max(c.num_classes, 2); ++i)
    labels[std::to_string(i)] = "label_" + std::to_string(i);
  j["id2label"] = labels;
  return j;
}

// A safetensors built in memory, shared: a checkpoint keeps it alive.
std::shared_ptr<SafetensorsFile> st_file(
    const std::vector<StTensor> &t,
    const std::vector<std::pair<std::string, std::string>> &meta = {}) {
  const auto b = make_safetensors(t, meta);
  return std::make_shared<SafetensorsFile>(SafetensorsFile::from_memory(b.data(), b.size()));
}

Checkpoint hf(const std::vector<StTensor> &t, const json &config, const json &pp = json()) {
  auto f = st_file(t);
  return hf_checkpoint(f->tensors(), "test.safetensors", f, config.dump(), "config.json",
                       pp.is_null() ? "" : pp.dump(), "preprocessor_config.json");
}

std::shared_ptr<const VitModel> load(const VqmWriter &w) {
  const auto b = w.to_bytes();
  return VitModel::load(VqmFile::from_memory(b.data(), b.size()));
}

std::vector<float> run(const std::shared_ptr<const VitModel> &m) {
  const VitConfig &c = m->config();
  std::vector<float> in(2 * c.input_size());
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0.f, 1.f);
  for (auto &x : in) x = n(rng);
  SessionOptions so;
  so.max_batch = 2;
  VitSession s(m, so);
  std::vector<float> out(2 * c.n_outputs());
  s.run(in.data(), 2, out.data());
  return out;
}

// The timm model of the same tensors with the settings the Hugging Face config states.
std::shared_ptr<const VitModel> timm_model(const std::vector<StTensor> &t, const VitConfig &c,
                                           const std::string &act, const std::string &eps) {
  auto f =
      st_file(t, {{"num_heads", std::to_string(c.num_heads)}, {"act_layer", act}, {"ln_eps", eps}});
  return load(convert_timm(*f, {}));
}

std::vector<std::string> names(const Checkpoint &c) {
  std::vector<std::string> n;
  for (const auto &t : c.tensors) n.push_back(t.name);
  std::sort(n.begin(), n.end());
  return n;
}
std::vector<std::string> names(const std::vector<StTensor> &ts) {
  std::vector<std::string> n;
  for (const auto &t : ts) n.push_back(t.name);
  std::sort(n.begin(), n.end());
  return n;
}

bool has_note(const std::vector<std::string> &notes, const std::string &s) {
  for (const auto &n : notes)
    if (n.find(s) != std::string::npos) return true;
  return false;
}

// Every message vit-convert prints is one line.
template <class F>
void expect_one_line_error(F &&f, ErrorCode code, const std::string &substr) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing \"" << substr << "\"";
  } catch (const Error &e) {
    const std::string msg = e.what();
    EXPECT_EQ(static_cast<int>(e.code()), static_cast<int>(code)) << msg;
    EXPECT_NE(msg.find(substr), std::string::npos) << msg << "\nexpected: " << substr;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(ConvertHf, VitForImageClassification) {
  const VitConfig c = tiny_config();
  const auto timm = timm_tensors(c);
  json config = hf_config(c, "vit", "gelu", 1e-12);
  config["architectures"] = {"ViTForImageClassification"};
  const json pp = {{"image_processor_type", "ViTImageProcessor"},
                   {"do_resize", true},
                   {"size", {{"height", 8}, {"width", 8}}},
                   {"resample", 2},
                   {"do_rescale", true},
                   {"rescale_factor", 1.0 / 255},
                   {"do_normalize", true},
                   {"image_mean", {0.5, 0.5, 0.5}},
                   {"image_std", {0.5, 0.5, 0.5}}};
  const Checkpoint in = hf(to_hf(timm, Hf::vit), config, pp);
  EXPECT_EQ(in.format, SourceFormat::huggingface);
  EXPECT_EQ(names(in), names(timm));
  // q, k, v concatenated in that order: exactly timm's qkv.
  for (const char *qkv : {"blocks.1.attn.qkv.weight", "blocks.1.attn.qkv.bias"}) {
    const TensorInfo &t = in.get(qkv);
    EXPECT_EQ(t.shape, named(timm, qkv).shape);
    EXPECT_EQ(to_f32(t), floats(named(timm, qkv))) << qkv;
  }
  EXPECT_EQ(in.metadata.at("num_heads"), "2");
  EXPECT_EQ(in.metadata.at("act_layer"), "gelu");
  EXPECT_EQ(in.metadata.at("arch"), "ViTForImageClassification");

  const auto m = load(convert_checkpoint(in, {}));
  EXPECT_EQ(m->config().num_heads, 2);
  EXPECT_FLOAT_EQ(m->config().ln_eps, 1e-12f);
  ASSERT_EQ(m->labels().size(), 5u);
  EXPECT_EQ(m->labels()[4], "label_4");
  const PreprocessConfig &p = m->preprocess();
  EXPECT_EQ(p.resize_mode, ResizeMode::squash);
  EXPECT_EQ(p.resize, 8);
  EXPECT_EQ(p.crop, 8);
  EXPECT_EQ(p.interpolation, Interpolation::bilinear);
  EXPECT_FLOAT_EQ(p.mean[0], 0.5f);
  EXPECT_EQ(run(m), run(timm_model(timm, c, "gelu", "1e-12")));
}

TEST(ConvertHf, VitModelIsAnEmbeddingModelAndItsPoolerIsIgnored) {
  VitConfig c = tiny_config();
  c.num_classes = 0;
  const auto timm = timm_tensors(c);
  auto t = to_hf(timm, Hf::vit_model);
  t.push_back({"pooler.dense.weight", "F32", {32, 32}, std::vector<uint8_t>(32 * 32 * 4)});
  t.push_back({"pooler.dense.bias", "F32", {32}, std::vector<uint8_t>(32 * 4)});
  t.push_back({"embeddings.mask_token", "F32", {1, 1, 32}, std::vector<uint8_t>(32 * 4)});
  const Checkpoint in = hf(t, hf_config(c, "vit", "gelu", 1e-12));
  EXPECT_EQ(names(in), names(timm));
  EXPECT_TRUE(has_note(in.notes, "pooler"));
  EXPECT_TRUE(has_note(in.notes, "mask_token"));
  EXPECT_TRUE(has_note(in.notes, "ViTImageProcessor's defaults"));  // no preprocessor config
  EXPECT_EQ(in.metadata.count("labels"), 0u);                       // no classifier
  const auto m = load(convert_checkpoint(in, {}));
  EXPECT_EQ(m->config().num_classes, 0);
  EXPECT_EQ(m->config().pool, Pool::token);
  EXPECT_TRUE(m->labels().empty());
  EXPECT_EQ(m->preprocess().resize_mode, ResizeMode::squash);  // ViTImageProcessor: 224x224
  EXPECT_EQ(run(m), run(timm_model(timm, c, "gelu", "1e-12")));
}

TEST(ConvertHf, DeitWithTeacherAndWithout) {
  VitConfig c = tiny_config();
  c.distilled = true;
  const auto timm = timm_tensors(c);
  json config = hf_config(c, "deit", "gelu", 1e-12);
  // DeiTImageProcessor's defaults: size 256x256 (squash), crop 224, bicubic, ImageNet mean.
  const json pp = {{"image_processor_type", "DeiTImageProcessor"},
                   {"size", {{"height", 10}, {"width", 10}}},
                   {"crop_size", {{"height", 8}, {"width", 8}}}};
  const Checkpoint in = hf(to_hf(timm, Hf::deit_teacher), config, pp);
  EXPECT_EQ(names(in), names(timm));
  EXPECT_EQ(in.get("dist_token").shape, (std::vector<int64_t>{1, 1, 32}));
  const auto m = load(convert_checkpoint(in, {}));
  EXPECT_TRUE(m->config().distilled);
  const PreprocessConfig &p = m->preprocess();
  EXPECT_EQ(p.resize_mode, ResizeMode::squash);
  EXPECT_EQ(p.resize, 10);
  EXPECT_EQ(p.crop, 8);
  EXPECT_EQ(p.interpolation, Interpolation::bicubic);
  EXPECT_FLOAT_EQ(p.mean[0], 0.485f);
  EXPECT_EQ(run(m), run(timm_model(timm, c, "gelu", "1e-12")));

  // DeiTForImageClassification: one classifier on the class token; the distillation token
  // stays in the sequence, a prefix token no head reads (a register token with a position row).
  VitConfig r = tiny_config();
  r.reg_tokens = 1;
  const auto timm_r = timm_tensors(r);
  const Checkpoint plain = hf(to_hf(timm_r, Hf::deit_plain), config, pp);
  EXPECT_TRUE(has_note(plain.notes, "distillation token"));
  const auto mr = load(convert_checkpoint(plain, {}));
  EXPECT_FALSE(mr->config().distilled);
  EXPECT_EQ(mr->config().reg_tokens, 1);
  EXPECT_TRUE(mr->config().pos_embed_prefix);
  EXPECT_EQ(run(mr), run(timm_model(timm_r, r, "gelu", "1e-12")));
}

TEST(ConvertHf, Dinov2LayerScaleAndRegisters) {
  VitConfig c = tiny_config();
  c.num_classes = 0;
  const auto timm = timm_tensors(c, /*layer_scale=*/true);
  auto t = to_hf(timm, Hf::dinov2);
  t.push_back({"embeddings.mask_token", "F32", {1, 32}, std::vector<uint8_t>(32 * 4)});
  // BitImageProcessor: shortest edge 10, crop 8, bicubic.
  const json pp = {{"image_processor_type", "BitImageProcessor"},
                   {"size", {{"shortest_edge", 10}}},
                   {"crop_size", {{"height", 8}, {"width", 8}}},
                   {"do_center_crop", true},
                   {"resample", 3},
                   {"image_mean", {0.485, 0.456, 0.406}},
                   {"image_std", {0.229, 0.224, 0.225}}};
  const Checkpoint in = hf(t, hf_config(c, "dinov2", "gelu", 1e-6), pp);
  EXPECT_EQ(names(in), names(timm));
  EXPECT_EQ(to_f32(in.get("blocks.1.ls2.gamma")), floats(named(timm, "blocks.1.ls2.gamma")));
  const auto m = load(convert_checkpoint(in, {}));
  EXPECT_EQ(m->config().num_classes, 0);
  EXPECT_FLOAT_EQ(m->config().ln_eps, 1e-6f);
  EXPECT_EQ(m->preprocess().resize_mode, ResizeMode::shorter_side);
  EXPECT_EQ(m->preprocess().resize, 10);
  EXPECT_EQ(m->preprocess().interpolation, Interpolation::bicubic);
  EXPECT_EQ(m->preprocess().crop_offset, CropOffset::floor);  // transformers' center_crop
  EXPECT_EQ(run(m), run(timm_model(timm, c, "gelu", "1e-06")));

  // The processor crops to 4 while the position table is for 8: the model keeps 8 and the
  // processor's crop fraction (resize 8 * 10 / 4 = 20), with a note.
  json small = pp;
  small["crop_size"] = {{"height", 4}, {"width", 4}};
  const Checkpoint in4 = hf(t, hf_config(c, "dinov2", "gelu", 1e-6), small);
  EXPECT_TRUE(has_note(in4.notes, "crops to 4"));
  EXPECT_EQ(load(convert_checkpoint(in4, {}))->preprocess().resize, 20);

  // Dinov2 with registers: transformers adds the position table to [class, patches] and then
  // inserts the registers; the class row is folded into the class token.
  auto reg = t;
  reg.push_back(
      {"embeddings.register_tokens", "F32", {1, 2, 32}, std::vector<uint8_t>(2 * 32 * 4)});
  const Checkpoint inr = hf(reg, hf_config(c, "dinov2_with_registers", "gelu", 1e-6), pp);
  const std::vector<float> cls = floats(named(timm, "cls_token")),
                           pos = floats(named(timm, "pos_embed"));
  const std::vector<float> got_cls = to_f32(inr.get("cls_token")),
                           got_pos = to_f32(inr.get("pos_embed"));
  EXPECT_EQ(inr.get("pos_embed").shape, (std::vector<int64_t>{1, 4, 32}));
  for (int k = 0; k < 32; ++k) EXPECT_EQ(got_cls[k], cls[k] + pos[k]);
  EXPECT_EQ(got_pos, std::vector<float>(pos.begin() + 32, pos.end()));
  const auto mr = load(convert_checkpoint(inr, {}));
  EXPECT_EQ(mr->config().reg_tokens, 2);
  EXPECT_FALSE(mr->config().pos_embed_prefix);
}

TEST(ConvertHf, ClipVisionWithProjection) {
  VitConfig c = tiny_config();
  c.norm_pre = true;
  c.patch_bias = false;
  c.head_bias = false;
  c.num_classes = 6;  // projection_dim
  const auto timm = timm_tensors(c);
  auto t = to_hf(timm, Hf::clip);
  t.push_back({"vision_model.embeddings.position_ids", "I64", {1, 5}, std::vector<uint8_t>(5 * 8)});
  json config = hf_config(c, "clip_vision_model", "quick_gelu", 1e-5);
  config["projection_dim"] = 6;
  config["architectures"] = {"CLIPVisionModelWithProjection"};
  const json pp = {{"image_processor_type", "CLIPImageProcessor"},
                   {"size", {{"shortest_edge", 8}}},
                   {"crop_size", {{"height", 8}, {"width", 8}}}};
  const Checkpoint in = hf(t, config, pp);
  EXPECT_EQ(names(in), names(timm));
  EXPECT_EQ(in.get("cls_token").shape, (std::vector<int64_t>{1, 1, 32}));
  EXPECT_EQ(in.get("pos_embed").shape, (std::vector<int64_t>{1, 5, 32}));
  EXPECT_EQ(in.find("head.bias"), nullptr);
  const auto m = load(convert_checkpoint(in, {}));
  const VitConfig &g = m->config();
  EXPECT_TRUE(g.norm_pre);
  EXPECT_FALSE(g.patch_bias);
  EXPECT_FALSE(g.head_bias);
  EXPECT_EQ(g.num_classes, 6);
  EXPECT_EQ(g.act, Activation::quick_gelu);
  EXPECT_FLOAT_EQ(g.ln_eps, 1e-5f);
  EXPECT_EQ(in.metadata.count("labels"), 0u);             // a projection, not classes
  EXPECT_FLOAT_EQ(m->preprocess().mean[0], 0.48145466f);  // CLIPImageProcessor's default
  EXPECT_EQ(run(m), run(timm_model(timm, c, "quick_gelu", "1e-05")));

  // CLIPModel: the vision settings nest in vision_config; the text tower is dropped.
  auto full = t;
  full.push_back({"text_model.embeddings.token_embedding.weight",
                  "F32",
                  {4, 8},
                  std::vector<uint8_t>(4 * 8 * 4)});
  full.push_back({"text_projection.weight", "F32", {6, 8}, std::vector<uint8_t>(6 * 8 * 4)});
  full.push_back({"logit_scale", "F32", {}, std::vector<uint8_t>(4)});
  json vision = config;
  vision.erase("projection_dim");
  const json clip = {{"model_type", "clip"}, {"projection_dim", 6}, {"vision_config", vision}};
  const Checkpoint in2 = hf(full, clip, pp);
  EXPECT_EQ(names(in2), names(timm));
  EXPECT_TRUE(has_note(in2.notes, "text tower"));
}

std::vector<StTensor> to_torchvision(const std::vector<StTensor> &timm) {
  std::vector<StTensor> out;
  for (StTensor t : timm) {
    std::string &n = t.name;
    const std::pair<const char *, const char *> top[] = {{"cls_token", "class_token"},
                                                         {"patch_embed.proj.", "conv_proj."},
                                                         {"pos_embed", "encoder.pos_embedding"},
                                                         {"norm.", "encoder.ln."},
                                                         {"head.", "heads.head."}};
    const std::pair<const char *, const char *> block[] = {
        {"norm1.", "ln_1."},
        {"norm2.", "ln_2."},
        {"attn.qkv.weight", "self_attention.in_proj_weight"},
        {"attn.qkv.bias", "self_attention.in_proj_bias"},
        {"attn.proj.", "self_attention.out_proj."},
        {"mlp.fc1.", "mlp.0."},
        {"mlp.fc2.", "mlp.3."}};
    for (const auto &[from, to] : top)
      if (n.rfind(from, 0) == 0) n = to + n.substr(std::strlen(from));
    if (n.rfind("blocks.", 0) == 0) {
      const size_t dot = n.find('.', 7);
      const std::string rest = n.substr(dot + 1);
      for (const auto &[from, to] : block)
        if (rest.rfind(from, 0) == 0)
          n = "encoder.layers.encoder_layer_" + n.substr(7, dot - 7) + "." + to +
              rest.substr(std::strlen(from));
    }
    out.push_back(std::move(t));
  }
  return out;
}

TEST(ConvertTorchvision, NamesHeadsAndTransform) {
  const VitConfig c = tiny_config();
  const auto timm = timm_tensors(c);
  auto f = st_file(to_torchvision(timm));
  EXPECT_EQ(detect_source_format(f->tensors(), "x"), SourceFormat::torchvision);
  const Checkpoint in = torchvision_checkpoint(*f);
  EXPECT_EQ(in.format, SourceFormat::torchvision);
  EXPECT_EQ(names(in), names(timm));
  EXPECT_TRUE(has_note(in.notes, "torchvision's ViT eval transform"));
  ConvertOptions opt;
  opt.num_heads = 2;  // a torchvision file does not say
  const auto m = load(convert_checkpoint(in, opt));
  EXPECT_EQ(m->preprocess().resize, 9);  // 8 * 256 / 224
  EXPECT_EQ(m->preprocess().interpolation, Interpolation::bilinear);
  EXPECT_FLOAT_EQ(m->preprocess().std[1], 0.224f);
  EXPECT_EQ(run(m), run(timm_model(timm, c, "gelu", "1e-06")));
  // Without --heads: 32 is no multiple of 64, so the converter asks for it.
  EXPECT_VQM_ERROR(convert_checkpoint(in, {}), invalid_argument, "--heads");
  // torchvision's kwargs in the metadata give the head count; --crop-pct replaces the resize.
  auto fo = st_file(to_torchvision(timm), {{"overrides", R"({"num_heads": 2, "hidden_dim": 32})"}});
  ConvertOptions pct;
  pct.crop_pct = 1.0f;
  const auto mo = load(convert_checkpoint(torchvision_checkpoint(*fo), pct));
  EXPECT_EQ(mo->config().num_heads, 2);
  EXPECT_EQ(mo->preprocess().resize, 8);
}

TEST(ConvertSources, DetectsLayouts) {
  const VitConfig c = tiny_config();
  const auto timm = timm_tensors(c);
  EXPECT_EQ(detect_source_format(st_file(timm)->tensors(), "x"), SourceFormat::timm);
  for (Hf kind : {Hf::vit, Hf::vit_model, Hf::deit_plain, Hf::clip})
    EXPECT_EQ(detect_source_format(st_file(to_hf(timm, kind))->tensors(), "x"),
              SourceFormat::huggingface);
  const std::vector<StTensor> other = {{"conv1.weight", "F32", {1}, std::vector<uint8_t>(4)},
                                       {"bn1.weight", "F32", {1}, std::vector<uint8_t>(4)},
                                       {"fc.weight", "F32", {1}, std::vector<uint8_t>(4)}};
  expect_one_line_error([&] { detect_source_format(st_file(other)->tensors(), "resnet.st"); },
                        ErrorCode::unsupported, "resnet.st (3 tensors: conv1.weight, bn1.weight");
}

TEST(ConvertSources, LoadCheckpointFromDisk) {
  const VitConfig c = tiny_config();
  const auto timm = timm_tensors(c);
  const std::string dir = scratch_dir();
  write_bytes(dir + "/model.safetensors", make_safetensors(to_hf(timm, Hf::vit)));
  // A Hugging Face model.safetensors without its config.json: the error names the file.
  expect_one_line_error([&] { load_checkpoint(dir + "/model.safetensors"); }, ErrorCode::io,
                        dir + "/config.json not found");
  expect_one_line_error([&] { load_checkpoint(dir); }, ErrorCode::io, "config.json");
  const std::string cfg = hf_config(c, "vit", "gelu", 1e-12).dump();
  write_bytes(dir + "/config.json", std::vector<uint8_t>(cfg.begin(), cfg.end()));
  for (const std::string &path : {dir, dir + "/model.safetensors"}) {
    const Checkpoint in = load_checkpoint(path);
    EXPECT_EQ(in.format, SourceFormat::huggingface);
    EXPECT_EQ(names(in), names(timm));
  }
  // A folder without weights.
  const std::string empty = dir + "/empty";
  std::filesystem::create_directories(empty);
  expect_one_line_error([&] { load_checkpoint(empty); }, ErrorCode::io, "directory");
  write_bytes(dir + "/timm.safetensors", make_safetensors(timm));
  EXPECT_EQ(load_checkpoint(dir + "/timm.safetensors").format, SourceFormat::timm);

  // A timm repository from the Hub: timm names in model.safetensors, and config.json with
  // "architecture", "pretrained_cfg" and "label_names" filling what the file's metadata lacks.
  const std::string hub = dir + "/hub";
  std::filesystem::create_directories(hub);
  write_bytes(hub + "/model.safetensors", make_safetensors(timm));
  const std::string hub_cfg = json{
      {"architecture", "vit_tiny_test"},
      {"pretrained_cfg", {{"crop_pct", 1.0}, {"interpolation", "bilinear"}}},
      {"label_names",
       {"a", "b", "c", "d", "e"}}}.dump();
  write_bytes(hub + "/config.json", std::vector<uint8_t>(hub_cfg.begin(), hub_cfg.end()));
  const Checkpoint h = load_checkpoint(hub);
  EXPECT_EQ(h.format, SourceFormat::timm);
  EXPECT_EQ(h.metadata.at("arch"), "vit_tiny_test");
  ConvertOptions opt;
  opt.num_heads = 2;
  const auto m = load(convert_checkpoint(h, opt));
  EXPECT_EQ(m->labels().at(4), "e");
  EXPECT_EQ(m->preprocess().resize, 8);
  EXPECT_EQ(m->preprocess().interpolation, Interpolation::bilinear);
}

TEST(ConvertSources, BadInputsAreOneLineErrors) {
  const VitConfig c = tiny_config();
  const auto timm = timm_tensors(c);
  const auto t = to_hf(timm, Hf::vit);
  const json config = hf_config(c, "vit", "gelu", 1e-12);

  json relu = config;
  relu["hidden_act"] = "relu";
  expect_one_line_error([&] { hf(t, relu); }, ErrorCode::unsupported,
                        "hidden_act 'relu' is not supported (gelu, quick_gelu)");
  json beit = config;
  beit["model_type"] = "beit";
  expect_one_line_error([&] { hf(t, beit); }, ErrorCode::unsupported, "model_type 'beit'");
  json wide = config;
  wide["hidden_size"] = 64;
  expect_one_line_error([&] { hf(t, wide); }, ErrorCode::format, "hidden_size = 64 contradicts");
  json big = config;
  big["image_size"] = 16;
  expect_one_line_error([&] { hf(t, big); }, ErrorCode::format, "image_size = 16 contradicts");
  json few = config;
  few["id2label"] = {{"0", "a"}, {"1", "b"}};
  expect_one_line_error([&] { hf(t, few); }, ErrorCode::format, "id2label names 2 classes");
  expect_one_line_error([&] { hf(t, json::array()); }, ErrorCode::format,
                        "config.json is not a JSON object");

  // Inconsistent shapes: a key weight that is not [D, D] like query's.
  auto odd = t;
  for (auto &x : odd)
    if (x.name == "vit.encoder.layer.1.attention.attention.key.weight") {
      x.shape = {16, 32};
      x.data.resize(16 * 32 * 4);
    }
  expect_one_line_error([&] { hf(odd, config); }, ErrorCode::format,
                        "query, key and value weights have shapes [32, 32], [16, 32], [32, 32]");
  auto no_value = t;
  no_value.erase(std::remove_if(no_value.begin(), no_value.end(),
                                [](const StTensor &x) {
                                  return x.name ==
                                         "vit.encoder.layer.0.attention.attention.value.weight";
                                }),
                 no_value.end());
  expect_one_line_error([&] { hf(no_value, config); }, ErrorCode::format, "no value weight");
  auto extra = t;
  extra.push_back({"vit.encoder.layer.0.attention.attention.relative_position_bias.weight",
                   "F32",
                   {4},
                   std::vector<uint8_t>(16)});
  expect_one_line_error([&] { hf(extra, config); }, ErrorCode::unsupported,
                        "has no timm counterpart (Hugging Face vit layout)");

  // Dinov2ForImageClassification's classifier reads [class, mean patch]: not timm's head.
  VitConfig d = tiny_config();
  d.num_classes = 0;
  auto dino = to_hf(timm_tensors(d), Hf::dinov2);
  for (auto &x : dino) x.name = "dinov2." + x.name;
  dino.push_back({"classifier.weight", "F32", {5, 64}, std::vector<uint8_t>(5 * 64 * 4)});
  expect_one_line_error([&] { hf(dino, hf_config(d, "dinov2", "gelu", 1e-6)); },
                        ErrorCode::unsupported, "Dinov2ForImageClassification");

  // Preprocessing a square model cannot take.
  const json oblong = {{"size", {{"height", 8}, {"width", 12}}}};
  expect_one_line_error([&] { hf(t, config, oblong); }, ErrorCode::unsupported, "not square");
  const json lanczos = {{"resample", 1}};
  expect_one_line_error([&] { hf(t, config, lanczos); }, ErrorCode::unsupported, "resample 1");
  const json rescale = {{"rescale_factor", 1.0}};
  expect_one_line_error([&] { hf(t, config, rescale); }, ErrorCode::unsupported,
                        "rescale_factor 1.0");

  // torchvision with representation_size: heads.pre_logits before the head.
  auto tv = to_torchvision(timm);
  tv.push_back({"heads.pre_logits.weight", "F32", {32, 32}, std::vector<uint8_t>(32 * 32 * 4)});
  expect_one_line_error([&] { torchvision_checkpoint(*st_file(tv)); }, ErrorCode::unsupported,
                        "representation_size (heads.pre_logits");
  auto tv_wrong = st_file(to_torchvision(timm), {{"overrides", R"({"num_layers": 3})"}});
  expect_one_line_error([&] { torchvision_checkpoint(*tv_wrong); }, ErrorCode::format,
                        "overrides num_layers = 3 contradicts the tensors (2)");
}

TEST(ConvertSources, SquashResizeMode) {
  // timm's crop_mode "squash": Resize((s, s)) then the center crop.
  const VitConfig c = tiny_config();
  const json cfg = {{"crop_mode", "squash"}, {"crop_pct", 0.875}, {"interpolation", "bilinear"}};
  auto f = st_file(timm_tensors(c), {{"num_heads", "2"}, {"pretrained_cfg", cfg.dump()}});
  const auto m = load(convert_timm(*f, {}));
  EXPECT_EQ(m->preprocess().resize_mode, ResizeMode::squash);
  EXPECT_EQ(m->preprocess().resize, 9);  // floor(8 / 0.875)
  json border = cfg;
  border["crop_mode"] = "border";
  auto fb = st_file(timm_tensors(c), {{"num_heads", "2"}, {"pretrained_cfg", border.dump()}});
  EXPECT_VQM_ERROR(convert_timm(*fb, {}), unsupported, "crop_mode \"border\"");

  // preprocess_image: both sides to `resize`, whatever the aspect ratio, then the crop.
  Image img;
  img.width = 30;
  img.height = 12;
  img.channels = 3;
  img.pixels.resize(30 * 12 * 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 37);
  PreprocessConfig p;
  p.resize = 10;
  p.crop = 8;
  p.interpolation = Interpolation::bilinear;
  p.resize_mode = ResizeMode::squash;
  p.mean = {0.f, 0.f, 0.f};
  p.std = {1.f, 1.f, 1.f};
  std::vector<float> got(3 * 8 * 8);
  preprocess_image(img, p, got.data());
  const Image r = resize_image(img, 10, 10, Interpolation::bilinear);
  for (int ch = 0; ch < 3; ++ch)
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 8; ++x)
        ASSERT_EQ(got[(ch * 8 + y) * 8 + x],
                  static_cast<float>(r.pixels[((y + 1) * 10 + x + 1) * 3 + ch]) / 255.0f);

  // The .vqm key is optional: absent reads as shorter_side, an unknown value is an error.
  const json j = preprocess_to_json(p);
  EXPECT_EQ(j.at("resize_mode"), "squash");
  EXPECT_EQ(preprocess_from_json(j, 3, 8).resize_mode, ResizeMode::squash);
  json old = j;
  old.erase("resize_mode");
  EXPECT_EQ(preprocess_from_json(old, 3, 8).resize_mode, ResizeMode::shorter_side);
  PreprocessConfig plain = p;
  plain.resize_mode = ResizeMode::shorter_side;
  EXPECT_FALSE(preprocess_to_json(plain).contains("resize_mode"));
  json bad = j;
  bad["resize_mode"] = "stretch";
  EXPECT_VQM_ERROR(preprocess_from_json(bad, 3, 8), format, "resize_mode");

  // crop_offset likewise: written only when floor, absent reads as round_half_even.
  EXPECT_FALSE(j.contains("crop_offset"));
  EXPECT_EQ(preprocess_from_json(j, 3, 8).crop_offset, CropOffset::round_half_even);
  PreprocessConfig hf = p;
  hf.crop_offset = CropOffset::floor;
  const json jf = preprocess_to_json(hf);
  EXPECT_EQ(jf.at("crop_offset"), "floor");
  EXPECT_EQ(preprocess_from_json(jf, 3, 8).crop_offset, CropOffset::floor);
  json bad_offset = jf;
  bad_offset["crop_offset"] = 1;
  EXPECT_VQM_ERROR(preprocess_from_json(bad_offset, 3, 8), format, "crop_offset");
}

}  // namespace
}  // namespace vqm::test
