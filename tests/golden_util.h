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
double cosine(const float *a, const float *b, int64_t n);

// A ViT-family fixture's model against its trimmed reference (scripts/trim-family-refs.py:
// "noise_pixel_values" = timm's rows 2-3, "output" = all four rows' outputs): the noise rows
// within 1e-3 of the outputs' scale, and the two photos (chelsea.png, rocket.jpg) through our
// decode and the model's own preprocessing to the same top-1 class (classifiers) or a cosine of
// at least 0.9999 (embedding models). `ref` is under tests/data.
void expect_matches_family_reference(const std::shared_ptr<const VitModel> &model,
                                     const std::string &ref, const std::string &what);

}  // namespace vqm::test
