// timm checkpoint (safetensors) -> .vqm. Geometry comes from tensor shapes; preprocessing and
// labels from a preset, the checkpoint's metadata, or explicit overrides (in that order of
// increasing priority).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "runtime/io/format.h"
#include "runtime/io/safetensors.h"

namespace vqm {

struct ConvertOptions {
  std::string preset;  // e.g. "deit_small_patch16_224"; empty: none
  int num_heads = 0;   // 0: metadata, preset, else embed_dim / 64
  std::optional<std::vector<float>> mean, std;
  std::optional<int> crop;        // must equal the model's image size
  std::optional<float> crop_pct;  // resize = floor(crop / crop_pct)
  std::optional<std::string> interpolation;
  std::string labels_file;  // one class name per line
  std::string source_name;  // recorded in "producer"
};

struct Preset {
  const char *name;
  int num_heads;
  int image_size;
  float crop_pct;
  const char *interpolation;
  float mean[3], std[3];
  bool distilled;
};
// The presets vit-convert --preset accepts (ImageNet-1k labels for all).
const std::vector<Preset> &presets();

// Builds the .vqm (tensors converted to f32). Throws vqm::Error naming what is wrong or missing.
// `notes` receives human-readable lines about choices made (e.g. inferred head count).
VqmWriter convert_timm(const SafetensorsFile &in, const ConvertOptions &opt,
                       std::vector<std::string> *notes = nullptr);

}  // namespace vqm
