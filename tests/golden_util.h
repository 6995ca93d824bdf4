// Shared by the golden tests: models converted in memory from the fixtures, reference tensors.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine/vit.h"

namespace vqm::test {

// Converts tests/data/models/<name>.safetensors with vit-convert's code path (in memory).
std::shared_ptr<const VitModel> convert_fixture(const std::string &name,
                                                const std::string &preset = "");
// An f32 tensor from a reference safetensors file under tests/data.
std::vector<float> reference_tensor(const std::string &file, const std::string &tensor);
// max |a - b| and max |b|.
struct Diff {
  double max_abs = 0;
  double ref_scale = 0;
};
Diff compare(const float *a, const float *b, size_t n);

}  // namespace vqm::test
