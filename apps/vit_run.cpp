// vit-run --model M.vqm IMG...: classify images, print the top-K classes with probabilities, or
// the embedding of a model without a classifier head; --embed writes every output as N x D f32;
// --out DIR runs a sharded, resumable batch job (apps/batch_job.h, docs/batch-jobs.md).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/app_common.h"
#include "apps/batch_job.h"
#include "apps/cli.h"
#include "apps/progress.h"
#include "runtime/io/error.h"
#include "runtime/io/format.h"
#include "runtime/io/image.h"

namespace {

// The positional arguments with folders replaced by the images in them (sorted, recursive).
std::vector<std::string> expand_images(const std::vector<std::string> &args) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  for (const std::string &a : args) {
    std::error_code ec;
    if (!fs::is_directory(a, ec)) {
      out.push_back(a);
      continue;
    }
    std::vector<std::string> found;
    for (const auto &e : fs::recursive_directory_iterator(a, ec)) {
      std::string ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
      if (e.is_regular_file() &&
          (ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp"))
        found.push_back(e.path().string());
    }
    if (ec) throw vqm::Error(vqm::ErrorCode::io, "cannot list '" + a + "': " + ec.message());
    if (found.empty())
      throw vqm::Error(vqm::ErrorCode::invalid_argument,
                       "directory '" + a + "' holds no .jpg, .jpeg, .png or .bmp images");
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

// --out DIR: the parts of this shard that are not complete yet, then one summary line.
int run_batch_job(const vqm::cli::Args &args) {
  for (const char *flag : {"--json", "--embed"})
    if (args.has(flag)) throw vqm::cli::UsageError(std::string(flag) + " does not go with --out");
  const size_t sources = args.positional().size() + (args.has("--manifest") ? 1 : 0);
  if (sources != 1)
    throw vqm::cli::UsageError("--out takes one image folder or --manifest FILE, got " +
                               std::to_string(sources) + " sources");
  const auto jo = vqm::app::job_options(args);
  const std::string model_path = args.get("--model");
  const auto listing = args.has("--manifest") ? vqm::app::read_manifest(args.get("--manifest"))
                                              : vqm::app::list_folder(args.positional()[0]);
  vqm::app::run_job_tool("vit-run", args, jo, vqm::app::load_model(model_path), model_path, listing,
                         args.get("--out"));
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  return vqm::cli::run_tool("vit-run", [&] {
    vqm::cli::Args args(
        "vit-run", "--model M.vqm IMAGE... [options]",
        vqm::app::with_job_flags(
            {{"--model", "M.vqm", "model file (from vit-convert or vit-quantize)"},
             {"--top", "K", "classes to print per image (default 5)"},
             {"--json", "", "print one JSON object per image instead of text"},
             {"--threads", "N", "OpenMP threads (default: all cores)"},
             {"--batch", "N", "images per forward pass (default 1; 8 with --out)"},
             {"--embed", "FILE",
              "write every image's output (the embedding, or the "
              "logits of a classifier) as N x D float32"},
             {"--quiet", "", "no progress bar"},
             {"--out", "DIR",
              "batch job: write the outputs as numbered parts + index.json into DIR "
              "(resumable: complete parts are skipped)"},
             {"--manifest", "FILE",
              "batch job: the images, one path per line "
              "(relative to FILE's folder) instead of a folder"}}),
        "Classifies images (JPEG, PNG, BMP; a folder stands for the images in it) "
        "with the model's preprocessing and prints the top-K classes of each on "
        "stdout, as text or one JSON object per image (with the whole output "
        "vector as \"output\"). A model without a classifier head (DINOv2, CLIP "
        "towers) outputs its embedding instead. --embed writes the outputs of "
        "the images that decoded, in order (little-endian float32, written "
        "atomically), with a progress bar. An unreadable image is reported on "
        "stderr and skipped (exit status 1 at the end).\n\n"
        "Batch jobs (--out DIR): the images of a folder or manifest are cut into "
        "parts of P images; shard I/N runs parts k with k % N == I, writing "
        "DIR/part-NNNNNN.npy (float32 outputs) and .json (names, top-K classes, "
        "errors) atomically, after DIR/index.json. A rerun skips complete parts; "
        "a folder holding another job is an error. Unreadable images are listed "
        "in their part's errors (exit status 0; the summary counts them). "
        "--batch defaults to 8 here. Format: docs/batch-jobs.md.\n\n"
        "examples:\n"
        "  vit-run --model deit_s.vqm cat.jpg dog.png\n"
        "  vit-run --model fmnist.vqm --top 3 --json shoe.png\n"
        "  vit-run --model dinov2_s.vqm --embed photos.f32 --batch 8 photos/\n"
        "  vit-run --model deit_s.vqm --out tags/ --shard 0/4 --threads 2 photos/");
    args.parse(argc, argv);
    if (!args.has("--model")) throw vqm::cli::UsageError("missing --model M.vqm");
    if (args.has("--out")) return run_batch_job(args);
    vqm::app::check_no_job_flags(args);
    if (args.positional().empty()) throw vqm::cli::UsageError("no image files given");
    const int top = args.get_int("--top", 5, 1, 1000000);
    const int batch = args.get_int("--batch", 1, 1, 256);
    vqm::SessionOptions so;
    so.n_threads = args.get_int("--threads", 0, 1, 1024);
    so.max_batch = batch;

    const auto model = vqm::app::load_model(args.get("--model"));
    vqm::VitSession session(model, so);
    const auto &c = model->config();
    const std::vector<std::string> images = expand_images(args.positional());
    const int64_t k = c.n_outputs();
    const bool embed = args.has("--embed"), json = args.has("--json");
    std::vector<float> input(static_cast<size_t>(batch * c.input_size()));
    std::vector<float> outputs(static_cast<size_t>(batch) * k);
    std::vector<float> embedded;  // --embed: every decoded image's output, in order
    vqm::app::ProgressBar bar("vit-run", "images",
                              embed && vqm::app::progress_wanted(args.has("--quiet")));
    int failures = 0;
    for (size_t start = 0; start < images.size();) {
      // Decode up to `batch` images; an unreadable one is reported and skipped, not fatal.
      std::vector<std::string> names;
      for (; start < images.size() && static_cast<int>(names.size()) < batch; ++start) {
        try {
          const auto img = vqm::decode_image_file(images[start], c.in_chans);
          vqm::preprocess_image(img, model->preprocess(),
                                input.data() + names.size() * c.input_size());
          names.push_back(images[start]);
        } catch (const vqm::Error &e) {
          std::fprintf(stderr, "vit-run: error: %s\n", e.what());
          ++failures;
        }
      }
      session.run(input.data(), static_cast<int64_t>(names.size()), outputs.data());
      if (embed) {
        embedded.insert(embedded.end(), outputs.begin(), outputs.begin() + names.size() * k);
        bar.update(static_cast<int64_t>(start), static_cast<int64_t>(images.size()));
        continue;
      }
      for (size_t i = 0; i < names.size(); ++i) {
        const float *row = outputs.data() + i * k;
        if (json) {
          nlohmann::json j = {{"image", names[i]}, {"output", std::vector<float>(row, row + k)}};
          if (c.num_classes > 0) {
            const auto prob = vqm::app::softmax(row, c.num_classes);
            j["top"] = nlohmann::json::array();
            for (int cls : vqm::app::top_k(row, c.num_classes, top))
              j["top"].push_back({{"class", cls},
                                  {"label", model->labels()[cls]},
                                  {"prob", prob[cls]},
                                  {"logit", row[cls]}});
          }
          std::printf("%s\n", j.dump().c_str());
        } else if (c.num_classes > 0) {
          std::printf("%s\n", names[i].c_str());
          const auto prob = vqm::app::softmax(row, c.num_classes);
          for (int cls : vqm::app::top_k(row, c.num_classes, top))
            std::printf("  %6.2f%%  %4d  %s\n", 100.0 * prob[cls], cls,
                        model->labels()[cls].c_str());
        } else {
          double norm = 0;
          for (int64_t j = 0; j < k; ++j) norm += double{row[j]} * row[j];
          std::printf("%s\n  embedding: %lld values, L2 norm %.4f, first %.4f %.4f %.4f\n",
                      names[i].c_str(), static_cast<long long>(k), std::sqrt(norm), row[0],
                      k > 1 ? row[1] : 0.f, k > 2 ? row[2] : 0.f);
        }
      }
    }
    if (embed) {
      bar.finish();
      vqm::write_file_atomic(args.get("--embed"), embedded.data(), embedded.size() * sizeof(float));
      std::fprintf(stderr, "vit-run: wrote %zu x %lld float32 to %s\n", embedded.size() / k,
                   static_cast<long long>(k), args.get("--embed").c_str());
    }
    return failures ? 1 : 0;
  });
}
