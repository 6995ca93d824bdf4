// Class-name lists vqm knows without a file: ImageNet-1k (embedded at build time from
// models/imagenet1k_classes.txt) and Fashion-MNIST.
#pragma once
#include <string>
#include <vector>

namespace vqm {

const std::vector<std::string> &imagenet1k_labels();
const std::vector<std::string> &fashion_mnist_labels();
// One label per non-empty line; throws vqm::Error(io/format) naming the file.
std::vector<std::string> read_labels_file(const std::string &path);

}  // namespace vqm
