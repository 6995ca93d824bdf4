// Helpers shared by the gtest binaries: where the fixtures are, scratch files.
#pragma once
#include <string>
#include <vector>

namespace vqm::test {

// Path of a file under tests/data (the fixtures copied from ../shared).
std::string data_path(const std::string &rel);
// Fashion-MNIST idx folder (Debian's dataset-fashion-mnist).
std::string fmnist_dir();
// A fresh, empty scratch directory unique to the calling test; removed at process exit is not
// guaranteed, so it lives under the build tree (VQM_BIN_DIR/../test-work).
std::string scratch_dir();
std::vector<uint8_t> read_bytes(const std::string &path);
void write_bytes(const std::string &path, const std::vector<uint8_t> &bytes);

}  // namespace vqm::test
