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
  // The input size to convert for: pos_embed's patch rows are resampled from the checkpoint's
  // grid to image_size / patch_size per side as timm's resample_abs_pos_embed does (bicubic,
  // antialiased; prefix rows kept), and the preprocessing follows. A multiple of the patch size
  // with at most 512 patches per side; the checkpoint's own size changes nothing.
  std::optional<int> image_size;
  std::optional<int> crop;        // must equal the model's image size (image_size when given)
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

// The layout a checkpoint's tensor names follow.
enum class SourceFormat { timm, huggingface, torchvision };
const char *source_format_name(SourceFormat f);  // "timm", "huggingface", "torchvision"

// A checkpoint's tensors under timm's names, whatever layout it came in, and its metadata in
// timm's terms: "arch", "num_heads", "ln_eps", "pretrained_cfg" (JSON: input_size, interpolation,
// crop_pct, crop_mode "center" or "squash", mean, std, and vqm's "resize_size": the resize side
// itself when the source states it instead of a crop_pct), "global_pool", "act_layer", "labels"
// (JSON array), ... The tensors point into the source file's bytes, kept alive by `keep`, or into
// `owned` for those a layout mapping had to build (Hugging Face's separate q, k, v made into one
// qkv).
struct Checkpoint {
  SourceFormat format = SourceFormat::timm;  // the layout it was mapped from
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

// Which layout tensor names follow: timm (patch_embed.proj.weight), Hugging Face transformers
// (vit., deit., dinov2., vision_model. or embeddings. prefixes) or torchvision (conv_proj.* and
// encoder.layers.*). Throws vqm::Error(unsupported), one line naming a few of the tensors, when
// none fits.
SourceFormat detect_source_format(const std::vector<TensorInfo> &tensors,
                                  const std::string &source);

// Hugging Face transformers (models/convert_hf.cpp): ViTForImageClassification, ViTModel,
// DeiTForImageClassification(WithTeacher), DeiTModel, Dinov2Model (with registers too),
// CLIPVisionModel(WithProjection) and CLIPModel's vision tower, renamed as transformers' own
// conversion scripts do; config.json gives heads, LayerNorm eps, activation, labels and is
// checked against the shapes; preprocessor_config.json ("" when there is none: the image
// processor's defaults, with a note) becomes a pretrained_cfg. `*_name` name the files in errors.
// The tensors must stay valid while `keep` lives.
Checkpoint hf_checkpoint(std::vector<TensorInfo> tensors, const std::string &source,
                         std::shared_ptr<const void> keep, const std::string &config_json,
                         const std::string &config_name, const std::string &preprocessor_json,
                         const std::string &preprocessor_name);
// A model.safetensors (read already) with config.json and preprocessor_config.json beside it:
// a missing config.json is an io error naming it.
Checkpoint hf_checkpoint_beside(SafetensorsFile weights, const std::string &weights_path);
// The same for weights read from another file at weights_path (pytorch_model.bin), valid while
// `keep` lives.
Checkpoint hf_checkpoint_beside(std::vector<TensorInfo> tensors, const std::string &source,
                                std::shared_ptr<const void> keep, const std::string &weights_path);
// A snapshot folder: model.safetensors (else pytorch_model.bin, read without executing anything),
// config.json, preprocessor_config.json.
Checkpoint hf_snapshot_checkpoint(const std::string &dir);

// torchvision's VisionTransformer state dict (models/convert_torchvision.cpp): class_token,
// conv_proj, encoder.pos_embedding, encoder.layers.encoder_layer_N.*, encoder.ln, heads.head.
// The file states no head count (metadata "overrides" may: torchvision's kwargs) and no
// preprocessing: torchvision's ViT eval transform is put into pretrained_cfg, with a note. The
// tensors must stay valid while `keep` lives (a SafetensorsFile or a PthFile).
Checkpoint torchvision_checkpoint(std::vector<TensorInfo> tensors, const std::string &source,
                                  std::map<std::string, std::string> metadata,
                                  std::shared_ptr<const void> keep);
Checkpoint torchvision_checkpoint(SafetensorsFile file);

// Any input vit-convert takes: a Hugging Face snapshot folder, or a .safetensors file in the
// layout detect_source_format finds (a Hugging Face one with config.json beside it).
Checkpoint load_checkpoint(const std::string &path);

// Builds the .vqm (tensors converted to f32, LayerScale folded into the projections before it).
// Throws vqm::Error naming what is wrong or missing. `notes` receives human-readable lines about
// choices made (e.g. inferred head count, a resampled pos_embed); the .vqm records them too, as
// "producer": {"notes": [...]}.
VqmWriter convert_checkpoint(const Checkpoint &in, const ConvertOptions &opt,
                             std::vector<std::string> *notes = nullptr);
// convert_checkpoint(timm_checkpoint(in), ...).
VqmWriter convert_timm(const SafetensorsFile &in, const ConvertOptions &opt,
                       std::vector<std::string> *notes = nullptr);

}  // namespace vqm
