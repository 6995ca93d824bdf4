#include "models/labels.h"

#include <fstream>
#include <sstream>

#include "runtime/io/error.h"

namespace vqm {

extern const char *const kImagenet1kClassesText;  // generated: build/generated/imagenet_labels.cpp

namespace {
std::vector<std::string> split_lines(std::istream &in) {
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) out.push_back(line);
  }
  return out;
}
}  // namespace

const std::vector<std::string> &imagenet1k_labels() {
  static const std::vector<std::string> labels = [] {
    std::istringstream in(kImagenet1kClassesText);
    return split_lines(in);
  }();
  return labels;
}

const std::vector<std::string> &fashion_mnist_labels() {
  static const std::vector<std::string> labels = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                  "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                  "Bag",         "Ankle boot"};
  return labels;
}

std::vector<std::string> read_labels_file(const std::string &path) {
  std::ifstream in(path);
  if (!in) fail(ErrorCode::io, "cannot open labels file '" + path + "'");
  auto labels = split_lines(in);
  if (labels.empty()) fail(ErrorCode::format, "labels file '" + path + "' has no labels");
  return labels;
}

}  // namespace vqm
