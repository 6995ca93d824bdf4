#include "fuzz_seeds.h"

#include <cmath>
#include <cstring>
#include <filesystem>

#include "fuzz_targets.h"
#include "models/random_model.h"
#include "pth_files.h"
#include "quantizer/ptq.h"
#include "test_files.h"
#include "test_util.h"

namespace vqm::fuzz {

namespace {

using Bytes = std::vector<uint8_t>;

// Tokens 5 (a 2x2 grid plus the class token), dim 8: a forward costs microseconds.
VitConfig tiny_config(int channels, bool distilled) {
  VitConfig c;
  c.arch = "tiny";
  c.image_size = 8;
  c.patch_size = 4;
  c.in_chans = channels;
  c.embed_dim = 8;
  c.depth = 1;
  c.num_heads = 2;
  c.mlp_hidden = 16;
  c.num_classes = 3;
  c.distilled = distilled;
  return c;
}

// min/max PTQ on two synthetic images: every quantized dtype (i8, q6, q4) and the
// "quantization" section, without calibration data.
Bytes quantized(const Bytes &fp32, const VitConfig &c, int bits) {
  const VqmFile f = VqmFile::from_memory(fp32.data(), fp32.size());
  quant::CalibrationSet calib;
  calib.n = 2;
  calib.input.resize(static_cast<size_t>(calib.n * c.input_size()));
  for (size_t i = 0; i < calib.input.size(); ++i) calib.input[i] = std::sin(0.7f * i);
  quant::PtqOptions opt;
  opt.method = "minmax";
  opt.bits = bits;
  return quant::quantize(f, calib, opt, nullptr).to_bytes();
}

// IEEE half, round to nearest even (normal and subnormal range; the weights are ~0.02).
uint16_t to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const int exp = static_cast<int>((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffff;
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00);
  int shift = 13;
  uint32_t base = static_cast<uint32_t>(exp) << 10;
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000;
    shift = 14 - exp;
    base = 0;
  }
  uint32_t h = base | (mant >> shift);
  const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (h & 1))) ++h;
  return static_cast<uint16_t>(sign | h);
}

uint16_t to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return static_cast<uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

// The tiny model's tensors as a timm checkpoint in `dtype` (F32, F16 or BF16).
Bytes checkpoint(const Bytes &fp32_vqm, const std::string &dtype,
                 const std::vector<std::pair<std::string, std::string>> &metadata) {
  const VqmFile f = VqmFile::from_memory(fp32_vqm.data(), fp32_vqm.size());
  std::vector<test::StTensor> tensors;
  for (const auto &t : f.tensors()) {
    test::StTensor st{t.name, dtype, t.shape, {}};
    const auto *v = reinterpret_cast<const float *>(t.data);
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (dtype == "F32") {
        const auto *b = reinterpret_cast<const uint8_t *>(v + i);
        st.data.insert(st.data.end(), b, b + 4);
      } else {
        const uint16_t h = dtype == "F16" ? to_f16(v[i]) : to_bf16(v[i]);
        st.data.insert(st.data.end(), {static_cast<uint8_t>(h), static_cast<uint8_t>(h >> 8)});
      }
    }
    tensors.push_back(std::move(st));
  }
  return test::make_safetensors(tensors, metadata);
}

// 0..255 ramp over w x h x comp.
Bytes ramp(int w, int h, int comp) {
  Bytes px(static_cast<size_t>(w * h * comp));
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 37 + 11);
  return px;
}

// The image target reads an option byte first (see run_image).
Bytes with_option(uint8_t opt, const Bytes &file) {
  // Sized up front and filled with memcpy (vector::insert after one element trips a GCC 12
  // -Warray-bounds false positive).
  Bytes out(file.size() + 1, opt);
  if (!file.empty()) std::memcpy(out.data() + 1, file.data(), file.size());
  return out;
}

}  // namespace

std::vector<Seed> make_seeds(const std::string &data_dir, const std::string &fmnist_dir) {
  std::vector<Seed> seeds;
  auto add = [&](const std::string &target, const std::string &name, Bytes bytes) {
    seeds.push_back({target, name, std::move(bytes)});
  };

  const Bytes gray = make_random_vit(tiny_config(1, false), 1).to_bytes();
  const Bytes rgb_distilled = make_random_vit(tiny_config(3, true), 2).to_bytes();
  const std::pair<std::string, Bytes> models[] = {
      {"tiny_gray_f32", gray},
      {"tiny_rgb_distilled_f32", rgb_distilled},
      {"tiny_gray_w8a8", quantized(gray, tiny_config(1, false), 8)},
      {"tiny_gray_w6a6", quantized(gray, tiny_config(1, false), 6)},
      {"tiny_rgb_distilled_w4a4", quantized(rgb_distilled, tiny_config(3, true), 4)},
  };
  for (const auto &[name, bytes] : models) {
    add("vqm", name + ".vqm", bytes);
    add("config", name + ".json+data", config_input_from_vqm(bytes));
  }

  add("safetensors", "tiny_gray_f32.safetensors", checkpoint(gray, "F32", {{"num_heads", "2"}}));
  add("safetensors", "tiny_gray_f16.safetensors",
      checkpoint(gray, "F16", {{"num_heads", "2"}, {"mean", "0.5"}, {"std", "0.25"}}));
  add("safetensors", "tiny_rgb_distilled_bf16.safetensors",
      checkpoint(rgb_distilled, "BF16",
                 {{"num_heads", "2"}, {"img_size", "8"}, {"dataset", "fashion-mnist"}}));

  // Images: the option byte varies channels, interpolation and the crop/resize sizes.
  for (const char *name :
       {"fmnist_t10k_0_ankle_boot.png", "fmnist_t10k_1_pullover.png", "fmnist_t10k_2_trouser.png"})
    add("image", name, with_option(0x3a, test::read_bytes(data_dir + "/images/" + name)));
  for (int comp = 1; comp <= 4; ++comp) {
    add("image", "ramp_c" + std::to_string(comp) + ".png",
        with_option(static_cast<uint8_t>(comp * 0x45),
                    test::png_encode(5, 7, comp, ramp(5, 7, comp))));
  }
  add("image", "ramp_rgb.bmp", with_option(0x13, test::bmp_encode(6, 5, 3, ramp(6, 5, 3))));
  add("image", "ramp_gray.jpg", with_option(0x20, test::jpeg_encode(8, 8, 1, ramp(8, 8, 1), 50)));
  add("image", "ramp_rgb.jpg", with_option(0xa5, test::jpeg_encode(16, 9, 3, ramp(16, 9, 3), 75)));
  const uint8_t cmyk[4] = {30, 120, 200, 10};
  add("image", "cmyk.jpg", with_option(0x0b, test::cmyk_jpeg(cmyk)));
  const Bytes rgb16 = {0, 0x12, 0x34, 0xab, 0xcd, 0xff, 0xff, 0, 1, 0, 2, 0, 3, 0x80, 0, 0x40, 0};
  add("image", "rgb16.png", with_option(0x51, test::craft_png(2, 1, 16, 2, &rgb16)));
  const Bytes gray16 = {0, 0x12, 0x34, 0xfe, 0xdc, 0, 0x80, 0x00, 0x00, 0x01};
  add("image", "gray16.png", with_option(0x28, test::craft_png(2, 2, 16, 0, &gray16)));
  // idx: the selector byte picks images (even) or labels (odd).
  const Bytes images = test::idx3(0x803, 2, 3, 3, 18), labels = test::idx1(0x801, 5, 5);
  add("idx", "images-idx3-ubyte", with_option(0, images));
  add("idx", "labels-idx1-ubyte", with_option(1, labels));
  add("idx", "images-idx3-ubyte.gz", with_option(2, test::gzip(images, 8)));
  add("idx", "labels-idx1-ubyte.gz", with_option(3, test::gzip(labels, 2 | 4 | 16)));
  const std::string real_labels = fmnist_dir + "/t10k-labels-idx1-ubyte.gz";
  if (std::filesystem::exists(real_labels))
    add("idx", "fmnist-t10k-labels-idx1-ubyte.gz", with_option(1, test::read_bytes(real_labels)));
  // pth: the real torchvision checkpoint, and small state dicts as torch.save writes them.
  add("pth", "torchvision_vit_b16_small.pth",
      test::read_bytes(data_dir + "/models/torchvision_vit_b16_small.pth"));
  add("pth", "small.pth", test::small_pth());
  add("pth", "small_no_zip64_unaligned.pth", test::small_pth({false, false}));
  // {"epoch": 3, "model": state_dict}: the PROTO and STOP of the state dict's pickle dropped.
  const Bytes sd = test::state_dict_pickle({{"w", "HalfStorage", "0", 6, 2, {2, 2}, {}}});
  test::Pickle ckpt;
  ckpt.proto(2).op('}').op('(').str("epoch").integer(3).str("model");
  ckpt.b.insert(ckpt.b.end(), sd.begin() + 2, sd.end() - 1);
  ckpt.op('u').stop();
  add("pth", "checkpoint.pth", test::make_pth(ckpt.b, {{"0", test::pattern_bytes(12, 0)}}));
  return seeds;
}

}  // namespace vqm::fuzz
