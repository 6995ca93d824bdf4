// ViT-family checkpoint -> .vqm. Every source layout (timm, Hugging Face, torchvision) is first
// read into a Checkpoint under timm's tensor names; the conversion then reads the architecture's
// variant from the tensors and the metadata, and the preprocessing and labels from a preset, the
// checkpoint's metadata (timm's pretrained_cfg), or explicit overrides (in that order of
// increasing priority).
#pragma once
#include <deque>
#include <map>
#include <memory>
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

// A checkpoint's tensors under timm's names, whatever layout it came in, and its metadata in
// timm's terms: "arch", "num_heads", "ln_eps", "pretrained_cfg" (JSON: input_size, interpolation,
// crop_pct, crop_mode, mean, std), "global_pool", "act_layer", "labels" (JSON array), ... The
// tensors point into the source file's bytes, kept alive by `keep`, or into `owned` for those a
// layout mapping had to build (Hugging Face's separate q, k, v made into one qkv).
struct Checkpoint {
  std::string source;
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  std::vector<std::string> notes;        // what the layout mapping assumed, for the user
  std::shared_ptr<const void> keep;      // owner of the bytes the tensors point into
  std::deque<std::vector<float>> owned;  // f32 tensors built by the mapping (stable addresses)

  const TensorInfo *find(const std::string &name) const;  // nullptr if absent
  // Throws vqm::Error(format) "missing tensor 'x' in <source>".
  const TensorInfo &get(const std::string &name) const;
  // Adds an f32 tensor owned by the checkpoint.
  void add_f32(const std::string &name, std::vector<int64_t> shape, std::vector<float> data);
};

// A timm checkpoint: the safetensors' tensors and metadata as they are.
Checkpoint timm_checkpoint(SafetensorsFile file);

// Builds the .vqm (tensors converted to f32, LayerScale folded into the projections before it).
// Throws vqm::Error naming what is wrong or missing. `notes` receives human-readable lines about
// choices made (e.g. inferred head count).
VqmWriter convert_checkpoint(const Checkpoint &in, const ConvertOptions &opt,
                             std::vector<std::string> *notes = nullptr);
// convert_checkpoint(timm_checkpoint(in), ...).
VqmWriter convert_timm(const SafetensorsFile &in, const ConvertOptions &opt,
                       std::vector<std::string> *notes = nullptr);

}  // namespace vqm
