// vit-convert's core (convert_timm) and the model loader: geometry inference, presets, metadata,
// dtypes, and every way a checkpoint or .vqm can be wrong for a ViT.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>

#include "models/convert.h"
#include "models/random_model.h"
#include "runtime/engine/vit.h"
#include "test_util.h"

namespace vqm::test {
namespace {

// The tensors of a random model of `cfg`, as a timm checkpoint would hold them (dtype F32).
std::vector<StTensor> timm_tensors(const VitConfig &cfg) {
  const auto bytes = make_random_vit(cfg, 7).to_bytes();
  const VqmFile f = VqmFile::from_memory(bytes.data(), bytes.size());
  std::vector<StTensor> out;
  for (const auto &t : f.tensors())
    out.push_back({t.name, "F32", t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)});
  return out;
}

SafetensorsFile st(const std::vector<StTensor> &t,
                   const std::vector<std::pair<std::string, std::string>> &meta = {}) {
  const auto b = make_safetensors(t, meta);
  return SafetensorsFile::from_memory(b.data(), b.size());
}

std::shared_ptr<const VitModel> load(const VqmWriter &w) {
  const auto b = w.to_bytes();
  return VitModel::load(VqmFile::from_memory(b.data(), b.size()));
}

TEST(Convert, FashionMnistUsesItsMetadata) {
  const auto in = SafetensorsFile::from_file(data_path("models/fmnist_deit_tiny.safetensors"));
  const auto m = load(convert_timm(in, {}));
  const auto &c = m->config();
  EXPECT_EQ(c.image_size, 28);
  EXPECT_EQ(c.patch_size, 4);
  EXPECT_EQ(c.in_chans, 1);
  EXPECT_EQ(c.embed_dim, 192);
  EXPECT_EQ(c.depth, 12);
  EXPECT_EQ(c.num_heads, 3);
  EXPECT_EQ(c.mlp_hidden, 768);
  EXPECT_EQ(c.num_classes, 10);
  EXPECT_FALSE(c.distilled);
  EXPECT_FLOAT_EQ(m->preprocess().mean[0], 0.286f);
  EXPECT_FLOAT_EQ(m->preprocess().std[0], 0.353f);
  EXPECT_EQ(m->preprocess().resize, 28);  // raw 28x28 images: no resize, no crop
  EXPECT_EQ(m->labels()[9], "Ankle boot");
}

TEST(Convert, PresetFillsTimmPreprocessingAndImagenetLabels) {
  const auto in = SafetensorsFile::from_file(
      data_path("models/deit_small_patch16_224_depth1_random.safetensors"));
  ConvertOptions opt;
  opt.preset = "deit_small_patch16_224";
  const auto m = load(convert_timm(in, opt));
  EXPECT_EQ(m->config().num_heads, 6);
  EXPECT_EQ(m->config().depth, 1);
  EXPECT_EQ(m->preprocess().resize, 256);
  EXPECT_EQ(m->preprocess().crop, 224);
  EXPECT_EQ(m->preprocess().interpolation, Interpolation::bicubic);
  EXPECT_FLOAT_EQ(m->preprocess().mean[1], 0.456f);
  ASSERT_EQ(m->labels().size(), 1000u);
  EXPECT_EQ(m->labels()[0], "tench, Tinca tinca");
  EXPECT_EQ(m->labels()[999], "toilet tissue, toilet paper, bathroom tissue");

  // Without a preset the head count is inferred (head_dim 64) and said so.
  std::vector<std::string> notes;
  const auto m2 = load(convert_timm(in, {}, &notes));
  EXPECT_EQ(m2->config().num_heads, 6);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("--heads"), std::string::npos);

  // Overrides win over the preset.
  opt.mean = std::vector<float>{0.5f, 0.5f, 0.5f};
  opt.crop_pct = 1.0f;
  opt.interpolation = "bilinear";
  const auto m3 = load(convert_timm(in, opt));
  EXPECT_FLOAT_EQ(m3->preprocess().mean[0], 0.5f);
  EXPECT_EQ(m3->preprocess().resize, 224);
  EXPECT_EQ(m3->preprocess().interpolation, Interpolation::bilinear);
}

TEST(Convert, HalfPrecisionCheckpointsWidenExactly) {
  // bf16: the top half of each f32; f16: 1.0 (0x3c00) everywhere. Either way the converter must
  // produce exactly the widened values.
  auto tensors = timm_tensors(tiny_config());
  auto bf16 = tensors, f16 = tensors;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const size_t n = tensors[i].data.size() / 4;
    bf16[i].dtype = "BF16";
    f16[i].dtype = "F16";
    bf16[i].data.resize(2 * n);
    f16[i].data.resize(2 * n);
    for (size_t k = 0; k < n; ++k) {
      uint32_t bits;
      std::memcpy(&bits, tensors[i].data.data() + 4 * k, 4);
      const uint16_t b = static_cast<uint16_t>(bits >> 16), h = 0x3c00;
      std::memcpy(bf16[i].data.data() + 2 * k, &b, 2);
      std::memcpy(f16[i].data.data() + 2 * k, &h, 2);
    }
  }
  ConvertOptions opt;
  opt.num_heads = 2;
  const auto mb = load(convert_timm(st(bf16), opt));
  const auto mh = load(convert_timm(st(f16), opt));
  for (const auto &t : bf16) {
    const float *w = mb->weight(t.name);
    for (size_t k = 0; k < t.data.size() / 2; ++k) {
      uint16_t b;
      std::memcpy(&b, t.data.data() + 2 * k, 2);
      ASSERT_EQ(w[k], bf16_to_f32(b)) << t.name << "[" << k << "]";
    }
    EXPECT_EQ(mh->weight(t.name)[0], 1.0f) << t.name;
  }
}

TEST(Convert, MissingExtraAndContradictoryTensors) {
  const VitConfig cfg = tiny_config();
  auto base = timm_tensors(cfg);
  ConvertOptions opt;
  opt.num_heads = 2;

  auto missing = base;
  missing.erase(std::find_if(missing.begin(), missing.end(),
                             [](const StTensor &t) { return t.name == "blocks.1.mlp.fc1.bias"; }));
  EXPECT_VQM_ERROR(convert_timm(st(missing), opt), format, "blocks.1.mlp.fc1.bias");

  // Without its class token, the 5 rows of pos_embed are neither 1 + 2x2 nor a square.
  auto no_cls = base;
  no_cls.erase(no_cls.begin());  // cls_token comes first
  EXPECT_VQM_ERROR(convert_timm(st(no_cls), opt), unsupported, "with or without 0 prefix");

  auto extra = base;
  extra.push_back(
      {"blocks.0.attn.relative_position_bias_table", "F32", {32}, std::vector<uint8_t>(128)});
  EXPECT_VQM_ERROR(convert_timm(st(extra), opt), unsupported,
                   "'blocks.0.attn.relative_position_bias_table' is not part of a supported");

  auto wrong_shape = base;
  for (auto &t : wrong_shape)
    if (t.name == "blocks.0.attn.proj.weight") t.shape = {16, 64};
  EXPECT_VQM_ERROR(convert_timm(st(wrong_shape), opt), format, "blocks.0.attn.proj.weight");

  auto odd_pos = base;
  for (auto &t : odd_pos)
    if (t.name == "pos_embed") {
      t.shape = {1, 6, 32};
      t.data.resize(6 * 32 * 4);
    }
  EXPECT_VQM_ERROR(convert_timm(st(odd_pos), opt), unsupported, "square grid");

  EXPECT_VQM_ERROR(convert_timm(st(base, {{"img_size", "16"}}), opt), format, "img_size");
  EXPECT_VQM_ERROR(convert_timm(st(base, {{"num_heads", "two"}}), {}), format, "num_heads");
  // Fuzzer finding (tests/fuzz/regressions/safetensors/metadata-num-heads-0): a 0 from the
  // metadata reached the divisibility check (embed_dim % num_heads) before any range check.
  EXPECT_VQM_ERROR(convert_timm(st(base, {{"num_heads", "0"}}), {}), format,
                   "'num_heads' = 0 is outside [1, 1024]");
  EXPECT_VQM_ERROR(convert_timm(st(base), {}), invalid_argument,
                   "--heads");  // 32 is not a multiple of 64

  ConvertOptions bad = opt;
  bad.preset = "resnet50";
  EXPECT_VQM_ERROR(convert_timm(st(base), bad), invalid_argument, "unknown preset");
  bad.preset = "deit_tiny_distilled_patch16_224";
  EXPECT_VQM_ERROR(convert_timm(st(base), bad), invalid_argument, "distilled");
  bad = opt;
  bad.std = std::vector<float>{1.f, 0.f, 1.f};
  EXPECT_VQM_ERROR(convert_timm(st(base), bad), invalid_argument, "std");
  bad = opt;
  bad.labels_file = "/nonexistent/labels.txt";
  EXPECT_VQM_ERROR(convert_timm(st(base), bad), io, "labels.txt");

  auto i8 = base;
  i8[3].dtype = "I8";
  i8[3].data.resize(i8[3].data.size() / 4);
  EXPECT_VQM_ERROR(convert_timm(st(i8), opt), unsupported, i8[3].name);
}

TEST(ModelLoad, RejectsVqmFilesThatDoNotDescribeAViT) {
  const VitConfig cfg = tiny_config();
  VqmWriter good = make_random_vit(cfg, 1);
  ASSERT_NO_THROW(load(good));
  const auto bytes = good.to_bytes();
  const VqmFile f = VqmFile::from_memory(bytes.data(), bytes.size());

  // Rebuild with one change at a time.
  auto rebuild = [&](const std::function<void(nlohmann::json &)> &edit_meta,
                     const std::string &drop, const std::string &rename_from = "",
                     const std::string &rename_to = "") {
    VqmWriter w;
    nlohmann::json meta = f.meta();
    edit_meta(meta);
    w.set_meta(meta);
    for (const auto &t : f.tensors()) {
      if (t.name == drop) continue;
      w.add_tensor(t.name == rename_from ? rename_to : t.name, t.dtype, t.shape, t.data, t.nbytes);
    }
    return w;
  };
  auto none = [](nlohmann::json &) {};
  EXPECT_VQM_ERROR(load(rebuild(none, "blocks.1.norm2.bias")), format, "blocks.1.norm2.bias");
  EXPECT_VQM_ERROR(load(rebuild(none, "", "head.bias", "head.bais")), format, "head.bias");
  EXPECT_VQM_ERROR(load(rebuild([](nlohmann::json &m) { m["model"]["num_heads"] = 3; }, "")),
                   format, "num_heads");
  EXPECT_VQM_ERROR(load(rebuild([](nlohmann::json &m) { m["model"]["depth"] = 1; }, "")), format,
                   "unexpected tensor 'blocks.1");
  EXPECT_VQM_ERROR(load(rebuild([](nlohmann::json &m) { m["model"]["depth"] = 3; }, "")), format,
                   "blocks.2");
  EXPECT_VQM_ERROR(load(rebuild([](nlohmann::json &m) { m["model"]["embed_dim"] = -32; }, "")),
                   format, "embed_dim");
  EXPECT_VQM_ERROR(load(rebuild([](nlohmann::json &m) { m["model"]["depth"] = "2"; }, "")), format,
                   "depth");
  EXPECT_VQM_ERROR(load(rebuild([](nlohmann::json &m) { m.erase("model"); }, "")), format, "model");
  EXPECT_VQM_ERROR(load(rebuild(
                       [](nlohmann::json &m) {
                         m["labels"] = {"a", "b"};
                       },
                       "")),
                   format, "labels");
  EXPECT_VQM_ERROR(load(rebuild(
                       [](nlohmann::json &m) {
                         m["preprocess"]["std"] = {1, 0, 1};
                       },
                       "")),
                   format, "std");
  EXPECT_VQM_ERROR(
      load(rebuild([](nlohmann::json &m) { m["preprocess"]["interpolation"] = "lanczos"; }, "")),
      format, "interpolation");

  // A tensor of the right shape but a dtype the fp32 engine cannot use.
  VqmWriter wrong_dtype;
  wrong_dtype.set_meta(f.meta());
  for (const auto &t : f.tensors()) {
    if (t.name == "head.bias") {
      std::vector<uint8_t> i32(t.nbytes);
      wrong_dtype.add_tensor(t.name, DType::i32, t.shape, i32.data(), i32.size());
    } else {
      wrong_dtype.add_tensor(t.name, t.dtype, t.shape, t.data, t.nbytes);
    }
  }
  EXPECT_VQM_ERROR(load(wrong_dtype), unsupported, "head.bias");
}

}  // namespace
}  // namespace vqm::test
