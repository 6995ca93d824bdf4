// Helpers shared by the gtest binaries: where the fixtures are, scratch files.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/vit_config.h"
#include "runtime/io/error.h"

namespace vqm {
class VitModel;
}

namespace vqm::test {

// Path of a file under tests/data (the fixtures copied from ../shared).
std::string data_path(const std::string &rel);
// Fashion-MNIST idx folder (Debian's dataset-fashion-mnist).
std::string fmnist_dir();
// The first n t10k images, preprocessed for `model` (n x input_size floats).
std::vector<float> fmnist_t10k_inputs(const VitModel &model, int n);
// How many images an accuracy-scale test works through: `full` in normal builds, `sanitized`
// under ASan/UBSan/TSan. The sanitizers look for memory and UB errors, which the same code paths
// show on a smaller workload 5-10x faster; the accuracy figures themselves are asserted on the
// full workload in the Release suite, which CI runs too. VQM_TEST_FULL=1 in the environment
// restores the full workload there.
int workload(int full, int sanitized);
// True in sanitizer builds unless VQM_TEST_FULL=1 (what workload() keys on).
bool reduced_workload();
// A fresh, empty scratch directory unique to the calling test; removed at process exit is not
// guaranteed, so it lives under the build tree (VQM_BIN_DIR/../test-work).
std::string scratch_dir();
// A ViT small enough to build by hand in unit tests: 8x8 RGB input, 4x4 patches (4 patches),
// dim 32, 2 heads, MLP 64, depth 2, 5 classes.
VitConfig tiny_config();
// n seeded uniform values in [lo, hi) (std::mt19937(seed)): test inputs, the same on every run.
std::vector<float> uniform_floats(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f);
// n floats drawn from N(0, sd^2) by std::mt19937(seed): the quantizer tests' data.
std::vector<float> normal_floats(size_t n, uint32_t seed, float sd = 1.f);
std::vector<uint8_t> read_bytes(const std::string &path);

enum class Sanitizer { none, address, thread };
// The sanitizer this test binary was built with (ASan covers the ASan+UBSan build).
Sanitizer sanitizer();
void write_bytes(const std::string &path, const std::vector<uint8_t> &bytes);

// Asserts that f() throws vqm::Error with `code` and a message containing `substr`.
template <class F>
void expect_error(F &&f, ErrorCode code, const std::string &substr) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing \"" << substr << "\"";
  } catch (const Error &e) {
    EXPECT_EQ(static_cast<int>(e.code()), static_cast<int>(code)) << e.what();
    EXPECT_NE(std::string(e.what()).find(substr), std::string::npos)
        << "message: " << e.what() << "\nexpected substring: " << substr;
  } catch (const std::exception &e) {
    ADD_FAILURE() << "non-vqm exception: " << e.what();
  }
}

// A safetensors file built in memory: tensors in the order given, data packed back to back.
struct StTensor {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16", ...
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};
std::vector<uint8_t> make_safetensors(
    const std::vector<StTensor> &tensors,
    const std::vector<std::pair<std::string, std::string>> &metadata = {});

}  // namespace vqm::test

#define EXPECT_VQM_ERROR(stmt, code, substr)                                  \
  do {                                                                        \
    SCOPED_TRACE(#stmt);                                                      \
    ::vqm::test::expect_error([&] { stmt; }, ::vqm::ErrorCode::code, substr); \
  } while (0)
