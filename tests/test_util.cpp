#include "test_util.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>

#include "apps/data/idx.h"
#include "runtime/engine/vit.h"
#include "runtime/io/image.h"

namespace vqm::test {

std::string data_path(const std::string &rel) {
  return std::string(VQM_TEST_DATA_DIR) + "/" + rel;
}

std::string fmnist_dir() {
  return VQM_FMNIST_DIR;
}

std::vector<float> fmnist_t10k_inputs(const VitModel &model, int n) {
  const auto images = load_idx_images(find_idx_file(fmnist_dir(), "t10k", "images"));
  const size_t in_size = static_cast<size_t>(model.config().input_size());
  std::vector<float> inputs(static_cast<size_t>(n) * in_size);
  for (int i = 0; i < n; ++i) {
    Image img{28, 28, 1,
              std::vector<uint8_t>(images.pixels.begin() + i * 784,
                                   images.pixels.begin() + (i + 1) * 784)};
    preprocess_image(img, model.preprocess(), inputs.data() + i * in_size);
  }
  return inputs;
}

std::string scratch_dir() {
  const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "global";
  for (char &c : name)
    if (c == '/') c = '_';
  auto dir = std::filesystem::path(VQM_BIN_DIR) / ".." / "test-work" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

Sanitizer sanitizer() {
#if defined(__SANITIZE_THREAD__)
  return Sanitizer::thread;
#elif defined(__SANITIZE_ADDRESS__)
  return Sanitizer::address;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
  return Sanitizer::thread;
#elif __has_feature(address_sanitizer)
  return Sanitizer::address;
#else
  return Sanitizer::none;
#endif
#else
  return Sanitizer::none;
#endif
}

bool reduced_workload() {
  const char *full = std::getenv("VQM_TEST_FULL");
  return sanitizer() != Sanitizer::none && !(full && std::string(full) == "1");
}

int workload(int full, int sanitized) {
  return reduced_workload() ? sanitized : full;
}

std::vector<uint8_t> read_bytes(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

void write_bytes(const std::string &path, const std::vector<uint8_t> &bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char *>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<uint8_t> make_safetensors(
    const std::vector<StTensor> &tensors,
    const std::vector<std::pair<std::string, std::string>> &metadata) {
  nlohmann::json header = nlohmann::json::object();
  size_t offset = 0;
  for (const auto &t : tensors) {
    header[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  if (!metadata.empty()) {
    header["__metadata__"] = nlohmann::json::object();
    for (const auto &[k, v] : metadata) header["__metadata__"][k] = v;
  }
  const std::string text = header.dump();
  // Sized up front and filled with memcpy (vector::insert here trips a GCC 12 -Warray-bounds
  // false positive).
  std::vector<uint8_t> out(8 + text.size() + offset);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(uint64_t{text.size()} >> (8 * i));
  std::memcpy(out.data() + 8, text.data(), text.size());
  size_t pos = 8 + text.size();
  for (const auto &t : tensors) {
    if (!t.data.empty()) std::memcpy(out.data() + pos, t.data.data(), t.data.size());
    pos += t.data.size();
  }
  return out;
}

std::vector<float> uniform_floats(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto &x : v) x = u(rng);
  return v;
}

std::vector<float> normal_floats(size_t n, uint32_t seed, float sd) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, sd);
  std::vector<float> v(n);
  for (auto &x : v) x = d(rng);
  return v;
}

VitConfig tiny_config() {
  VitConfig c;
  c.image_size = 8;
  c.patch_size = 4;
  c.in_chans = 3;
  c.embed_dim = 32;
  c.num_heads = 2;
  c.mlp_hidden = 64;
  c.depth = 2;
  c.num_classes = 5;
  return c;
}

}  // namespace vqm::test
