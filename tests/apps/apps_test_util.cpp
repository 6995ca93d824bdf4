#include "apps/apps_test_util.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "apps/data/idx.h"
#include "models/convert.h"
#include "process_util.h"
#include "runtime/engine/vit.h"
#include "test_util.h"

#include "stb_image_write_impl.h"

namespace vqm::test {

namespace fs = std::filesystem;

std::string write_fmnist_model(const std::string &dir) {
  const auto st = SafetensorsFile::from_file(data_path("models/fmnist_deit_tiny.safetensors"));
  const auto bytes = convert_timm(st, {}).to_bytes();
  const std::string path = dir + "/model.vqm";
  write_bytes(path, bytes);
  return path;
}

std::string write_fmnist_folder(const std::string &root, int n, bool digit_names) {
  const auto st = SafetensorsFile::from_file(data_path("models/fmnist_deit_tiny.safetensors"));
  const auto vqm_bytes = convert_timm(st, {}).to_bytes();
  const auto model = VitModel::load(VqmFile::from_memory(vqm_bytes.data(), vqm_bytes.size()));
  std::vector<std::string> names;
  for (std::string name : model->labels()) {
    for (char &c : name)
      if (c == '/' || c == ' ') c = '_';
    names.push_back(digit_names ? std::to_string(names.size()) : name);
  }
  const auto images = load_idx_images(find_idx_file(fmnist_dir(), "t10k", "images"));
  const auto labels = load_idx_labels(find_idx_file(fmnist_dir(), "t10k", "labels"));
  for (int i = 0; i < n; ++i) {
    const fs::path dir = fs::path(root) / names[labels[i]];
    fs::create_directories(dir);
    char file[16];
    std::snprintf(file, sizeof file, "%05d.png", i);
    EXPECT_NE(stbi_write_png((dir / file).string().c_str(), images.cols, images.rows, 1,
                             images.pixels.data() + static_cast<size_t>(i) * 784, images.cols),
              0);
  }
  const std::string index = (fs::path(root).parent_path() / "classes.txt").string();
  std::ofstream f(index);
  for (const auto &name : names) f << name << "\n";
  return index;
}

ToolRun run_shell(const std::string &command_line) {
  const ProcessResult p = run_process({"/bin/sh", "-c", command_line});
  return ToolRun{p.exit_code, p.out, p.err};
}

ToolRun run_tool(const std::string &command_line) {
  return run_shell(std::string(VQM_BIN_DIR) + "/" + command_line);
}

nlohmann::json parse_json(const ToolRun &r) {
  EXPECT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  return j;
}

}  // namespace vqm::test
