// The ViT family from the two other source layouts (tests/data/models/family, copied from
// ../shared/models/family by scripts/trim-family-refs.py): a Hugging Face transformers snapshot
// folder (hf_vit_small/: ViTForImageClassification names, config.json, preprocessor_config.json
// with a 224x224 resize and no crop) and a torchvision VisionTransformer state dict. Each goes
// through vit-convert's code path (load_checkpoint: layout detection, then the mapping to timm's
// names; convert_checkpoint) with no flags but what the file cannot say (torchvision: none either,
// its metadata records torchvision's kwargs), and its fp32 forward matches the reference as
// family_golden_test.cpp asks: the two noise rows within 1e-3 of the outputs' scale, and the two
// photos, through our decode and the preprocessing the converter derived, to the same top-1.
#include <gtest/gtest.h>

#include <ostream>

#include <cstring>
#include <filesystem>

#include <algorithm>
#include <cmath>

#include "golden_util.h"
#include "models/convert.h"
#include "pth_files.h"
#include "runtime/io/image.h"
#include "test_util.h"

namespace vqm::test {
namespace {

struct Source {
  const char *name;
  const char *input;      // under tests/data/models/family
  const char *reference;  // under tests/data/models/family
  SourceFormat format;
  void (*check)(const VitModel &m);
};

// Names the parameter in test listings (gtest would print its bytes, pointers included, into
// the names CTest registers).
void PrintTo(const Source &p, std::ostream *os) {
  *os << p.name;
}

class FamilySourcesGolden : public ::testing::TestWithParam<Source> {};

TEST_P(FamilySourcesGolden, ConvertsAndMatchesReference) {
  const Source &s = GetParam();
  const Checkpoint in = load_checkpoint(data_path(std::string("models/family/") + s.input));
  EXPECT_EQ(in.format, s.format);
  std::vector<std::string> notes;
  const auto bytes = convert_checkpoint(in, {}, &notes).to_bytes();
  const auto model = VitModel::load(VqmFile::from_memory(bytes.data(), bytes.size()));
  for (const auto &n : notes) std::printf("[ note     ] %s: %s\n", s.name, n.c_str());
  s.check(*model);
  expect_matches_family_reference(model, std::string("models/family/") + s.reference, s.name);
}

const Source kSources[] = {
    {"hf_vit_small", "hf_vit_small", "hf_vit_small/reference.safetensors",
     SourceFormat::huggingface,
     [](const VitModel &m) {
       const VitConfig &c = m.config();
       EXPECT_EQ(c.num_heads, 3);               // config.json num_attention_heads
       EXPECT_FLOAT_EQ(c.ln_eps, 1e-12f);       // layer_norm_eps
       EXPECT_EQ(c.num_classes, 10);            // classifier -> head
       EXPECT_EQ(m.labels().at(3), "class_3");  // id2label
       const PreprocessConfig &p = m.preprocess();
       // ViTImageProcessor: size {224, 224}, no crop, resample 2.
       EXPECT_EQ(p.resize_mode, ResizeMode::squash);
       EXPECT_EQ(p.resize, 224);
       EXPECT_EQ(p.crop, 224);
       EXPECT_EQ(p.interpolation, Interpolation::bilinear);
       EXPECT_FLOAT_EQ(p.mean[0], 0.5f);
       EXPECT_FLOAT_EQ(p.std[2], 0.5f);
     }},
    {"torchvision_vit_b16_small", "torchvision_vit_b16_small.safetensors",
     "torchvision_vit_b16_small.ref.safetensors", SourceFormat::torchvision,
     [](const VitModel &m) {
       const VitConfig &c = m.config();
       EXPECT_EQ(c.num_heads, 3);  // from the metadata's torchvision kwargs
       EXPECT_FLOAT_EQ(c.ln_eps, 1e-6f);
       EXPECT_EQ(c.num_classes, 10);
       const PreprocessConfig &p = m.preprocess();
       // torchvision's ViT transform: resize 256 bilinear, center crop 224, ImageNet mean/std.
       EXPECT_EQ(p.resize_mode, ResizeMode::shorter_side);
       EXPECT_EQ(p.resize, 256);
       EXPECT_EQ(p.crop, 224);
       EXPECT_EQ(p.interpolation, Interpolation::bilinear);
       EXPECT_FLOAT_EQ(p.mean[0], 0.485f);
       EXPECT_FLOAT_EQ(p.std[0], 0.229f);
     }},
};

INSTANTIATE_TEST_SUITE_P(Sources, FamilySourcesGolden, ::testing::ValuesIn(kSources),
                         [](const auto &info) { return std::string(info.param.name); });

// The same torchvision weights as torch.save's .pth (read by the safe pickle reader) and as
// .safetensors convert to the same .vqm tensors, byte for byte.
// Two .vqm files hold the same tensors, byte for byte.
void expect_same_tensors(const VqmFile &a, const VqmFile &b) {
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (const TensorInfo &t : a.tensors()) {
    const TensorInfo &u = b.get(t.name);
    EXPECT_EQ(t.shape, u.shape) << t.name;
    ASSERT_EQ(t.nbytes, u.nbytes) << t.name;
    EXPECT_EQ(std::memcmp(t.data, u.data, t.nbytes), 0) << t.name;
  }
}

TEST(FamilySources, TorchvisionPthAndSafetensorsGiveTheSameTensors) {
  ConvertOptions opt;
  opt.num_heads = 3;  // a .pth carries no metadata
  const auto pth =
      convert_checkpoint(load_checkpoint(data_path("models/torchvision_vit_b16_small.pth")), opt);
  const auto st = convert_checkpoint(
      load_checkpoint(data_path("models/family/torchvision_vit_b16_small.safetensors")), opt);
  const std::vector<uint8_t> a = pth.to_bytes(), b = st.to_bytes();
  const VqmFile fa = VqmFile::from_memory(a.data(), a.size());
  const VqmFile fb = VqmFile::from_memory(b.data(), b.size());
  expect_same_tensors(fa, fb);
  // The same geometry and variant; only "arch" differs (the .safetensors' metadata names it).
  nlohmann::json ma = fa.meta()["model"], mb = fb.meta()["model"];
  ma.erase("arch");
  mb.erase("arch");
  EXPECT_EQ(ma, mb);
}

// A Hugging Face snapshot that holds pytorch_model.bin instead of model.safetensors (older Hub
// repositories): the same weights written as torch.save does (tests/pth_files.h, whose layout
// the torchvision .pth above, written by torch, checks) convert to the same tensors.
TEST(FamilySources, HuggingFacePytorchModelBinEqualsModelSafetensors) {
  namespace fs = std::filesystem;
  const std::string src = data_path("models/family/hf_vit_small");
  const std::string dir = scratch_dir() + "/hf_bin";
  fs::create_directories(dir);
  for (const char *f : {"config.json", "preprocessor_config.json"})
    fs::copy_file(src + "/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
  const SafetensorsFile st = SafetensorsFile::from_file(src + "/model.safetensors");
  std::vector<PtTensor> state;
  std::vector<std::pair<std::string, Bytes>> storages;
  for (const TensorInfo &t : st.tensors()) {
    ASSERT_TRUE(t.dtype == DType::f32 || t.dtype == DType::f16) << t.name;
    const std::string key = std::to_string(state.size());
    state.push_back({t.name,
                     t.dtype == DType::f32 ? "FloatStorage" : "HalfStorage",
                     key,
                     t.numel(),
                     0,
                     t.shape,
                     {}});
    const auto *bytes = static_cast<const uint8_t *>(t.data);
    storages.emplace_back(key, Bytes(bytes, bytes + t.nbytes));
  }
  const Bytes pth = make_pth(state_dict_pickle(state), storages);
  write_file_atomic(dir + "/pytorch_model.bin", pth.data(), pth.size());

  const auto a = convert_checkpoint(load_checkpoint(dir), {}).to_bytes();
  const auto b = convert_checkpoint(load_checkpoint(src), {}).to_bytes();
  const VqmFile fa = VqmFile::from_memory(a.data(), a.size());
  const VqmFile fb = VqmFile::from_memory(b.data(), b.size());
  expect_same_tensors(fa, fb);
  EXPECT_EQ(fa.meta()["model"], fb.meta()["model"]);
  EXPECT_EQ(fa.meta()["preprocess"], fb.meta()["preprocess"]);
  // The .bin alone, config.json beside it, is the same checkpoint.
  EXPECT_EQ(load_checkpoint(dir + "/pytorch_model.bin").format, SourceFormat::huggingface);
  // Without config.json it says which file is missing.
  fs::remove(dir + "/config.json");
  try {
    load_checkpoint(dir);
    ADD_FAILURE() << "no error without config.json";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace vqm::test
