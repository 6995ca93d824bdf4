// vit-convert IN -o OUT.vqm: a ViT-family checkpoint (timm, Hugging Face transformers or
// torchvision layout) to .vqm (f32 weights).
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/cli.h"
#include "models/convert.h"
#include "runtime/engine/vit.h"

int main(int argc, char **argv) {
  return vqm::cli::run_tool("vit-convert", [&] {
    std::string presets;
    for (const auto &p : vqm::presets())
      presets += std::string(presets.empty() ? "" : ", ") + p.name;
    vqm::cli::Args args(
        "vit-convert", "IN -o OUT.vqm [options]",
        {{"-o", "OUT.vqm", "output file (written atomically)"},
         {"--preset", "NAME", "timm preprocessing + ImageNet-1k labels: " + presets},
         {"--heads", "N", "number of attention heads (default: metadata, preset, or dim/64)"},
         {"--mean", "A,B,C", "normalisation mean per channel"},
         {"--std", "A,B,C", "normalisation std per channel"},
         {"--image-size", "N",
          "convert for N x N input: the position embeddings resampled to N/patch per side "
          "(bicubic, antialiased, as timm), the preprocessing's crop N and resize scaled to it"},
         {"--crop", "N", "center-crop size (must equal the model's input size)"},
         {"--crop-pct", "F",
          "resize (the shorter side, or both when squashing) to crop/crop_pct, then crop"},
         {"--interpolation", "NAME", "bicubic, bilinear or nearest"},
         {"--labels", "FILE", "class names, one per line"},
         {"--json", "", "print the converted model's geometry as one JSON object"},
         {"--quiet", "", "print nothing on success"}},
        "Converts a ViT-family checkpoint (weights F32, F16 or BF16) into a .vqm file with fp32 "
        "weights, the model geometry, preprocessing and class labels. IN is one of:\n"
        "  timm         a .safetensors with timm's names (patch_embed.proj.weight, ...) and "
        "metadata\n"
        "  huggingface  a transformers snapshot folder (model.safetensors or pytorch_model.bin,\n"
        "               config.json, preprocessor_config.json), or its weights file with "
        "config.json beside\n"
        "               it: ViT(ForImageClassification), DeiT(ForImageClassificationWithTeacher),\n"
        "               Dinov2Model, CLIPVisionModel(WithProjection), CLIPModel's vision tower\n"
        "  torchvision  a VisionTransformer state dict as .safetensors or as torch.save's .pth\n"
        "               (read without executing anything): no head count (--heads, unless its\n"
        "               metadata has torchvision's kwargs) and no preprocessing in it\n"
        "               (torchvision's ViT eval transform is used)\n"
        "The layout is detected from the tensor names and reported as source_format. The summary "
        "(or --json) goes to stdout, notes to stderr.\n\n"
        "examples:\n"
        "  vit-convert model.safetensors -o deit_s.vqm --preset deit_small_patch16_224\n"
        "  vit-convert fmnist.safetensors -o fmnist.vqm --labels classes.txt --json\n"
        "  vit-convert ~/hf/vit-base-patch16-224/ -o vit_b.vqm\n"
        "  vit-convert dinov2_vits14.safetensors -o dinov2_224.vqm --image-size 224\n"
        "  vit-convert torchvision_vit_b_16.safetensors -o vit_b16.vqm --heads 12");
    args.parse(argc, argv);
    if (args.positional().size() != 1)
      throw vqm::cli::UsageError("expected one input (.safetensors file or Hugging Face folder)");
    if (!args.has("-o")) throw vqm::cli::UsageError("missing -o OUT.vqm");
    const std::string in = args.positional()[0], out = args.get("-o");

    vqm::ConvertOptions opt;
    opt.preset = args.get("--preset");
    opt.num_heads = args.get_int("--heads", 0, 1, 1024);
    if (args.has("--mean")) opt.mean = vqm::cli::parse_floats(args.get("--mean"), "--mean");
    if (args.has("--std")) opt.std = vqm::cli::parse_floats(args.get("--std"), "--std");
    // 4096: VitConfig's largest image side; the converter checks it against the patch size.
    if (args.has("--image-size")) opt.image_size = args.get_int("--image-size", 0, 1, 4096);
    if (args.has("--crop")) opt.crop = args.get_int("--crop", 0, 1, 16384);
    if (args.has("--crop-pct"))
      opt.crop_pct = static_cast<float>(args.get_double("--crop-pct", 1, 0.01, 1));
    if (args.has("--interpolation")) opt.interpolation = args.get("--interpolation");
    opt.labels_file = args.get("--labels");
    {
      const std::filesystem::path p(in);
      // A folder given as "dir/" has an empty filename: name it by the folder.
      opt.source_name = (p.has_filename() ? p.filename() : p.parent_path().filename()).string();
    }

    const vqm::Checkpoint checkpoint = vqm::load_checkpoint(in);
    const char *format = vqm::source_format_name(checkpoint.format);
    std::vector<std::string> notes;
    const vqm::VqmWriter writer = vqm::convert_checkpoint(checkpoint, opt, &notes);
    // Validate the result through the same loader every consumer uses before it replaces OUT.
    const std::vector<uint8_t> bytes = writer.to_bytes();
    const auto model = vqm::VitModel::load(vqm::VqmFile::from_memory(bytes.data(), bytes.size()));
    vqm::write_file_atomic(out, bytes.data(), bytes.size());
    const auto &c = model->config();
    if (args.has("--json")) {
      const nlohmann::json j = {{"input", in},
                                {"source_format", format},
                                {"output", out},
                                {"bytes", bytes.size()},
                                {"arch", c.arch},
                                {"image_size", c.image_size},
                                {"in_chans", c.in_chans},
                                {"patch_size", c.patch_size},
                                {"embed_dim", c.embed_dim},
                                {"depth", c.depth},
                                {"num_heads", c.num_heads},
                                {"mlp_hidden", c.mlp_hidden},
                                {"num_classes", c.num_classes},
                                {"distilled", c.distilled},
                                {"notes", notes}};
      std::printf("%s\n", j.dump().c_str());
    } else if (!args.has("--quiet")) {
      for (const auto &n : notes) std::fprintf(stderr, "vit-convert: note: %s\n", n.c_str());
      std::printf(
          "%s (%s): %s, %dx%d x%d, patch %d, dim %d, depth %d, heads %d, mlp %d, %d classes%s "
          "-> %s (%.1f MB)\n",
          in.c_str(), format, c.arch.c_str(), c.image_size, c.image_size, c.in_chans, c.patch_size,
          c.embed_dim, c.depth, c.num_heads, c.mlp_hidden, c.num_classes,
          c.distilled ? ", distilled" : "", out.c_str(), bytes.size() / 1e6);
    }
    return 0;
  });
}
