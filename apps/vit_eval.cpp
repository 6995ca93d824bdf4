// vit-eval --model M.vqm [--data SRC]: top-1 / top-5 and per-class accuracy on Fashion-MNIST idx
// files or an image folder (DIR/<class>/...), with one session per worker thread.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "apps/app_common.h"
#include "apps/cli.h"
#include "apps/evaluate.h"
#include "apps/progress.h"
#include "runtime/io/error.h"
#include "runtime/io/format.h"

int main(int argc, char **argv) {
  return vqm::cli::run_tool("vit-eval", [&] {
    vqm::cli::Args args(
        "vit-eval", "--model M.vqm [--data SRC] [options]",
        {{"--model", "M.vqm", "model file (from vit-convert or vit-quantize)"},
         {"--data", "SRC",
          "a folder with <split>-images-idx3-ubyte[.gz] and labels, or of images in class "
          "subfolders SRC/<class>/*.jpg (default /usr/share/datasets/fashion-mnist)"},
         {"--split", "NAME", "idx files: t10k (default) or train"},
         {"--class-index", "FILE",
          "image folders: class-folder name -> model class index (text: one folder name per "
          "line, line number = index, e.g. LOC_synset_mapping.txt; or JSON). Default: sorted "
          "folder names are classes 0..K-1"},
         {"--limit", "N",
          "evaluate N images: the first N idx images, or N evenly spaced files of a folder"},
         {"--batch", "N", "images per forward pass (default 32)"},
         {"--threads", "N", "CPU threads in all (default: all cores)"},
         {"--sessions", "N",
          "worker threads, each with its own session and threads/N OpenMP threads (default: one "
          "per thread)"},
         {"--per-class", "", "print the per-class table (the JSON always has it)"},
         {"--json", "", "print one JSON object: top1, top5, n, seconds, per_class"},
         {"--dump-logits", "FILE", "write N x C float32 little-endian logits, in data order"},
         {"--quiet", "", "no progress bar"}},
        "Evaluates a model on labelled images and prints top-1 / top-5 accuracy. Image folders "
        "follow torchvision's ImageFolder layout (also the ImageNet validation set sorted into "
        "synset folders). Results go to stdout; the progress bar (terminals only) to stderr.\n\n"
        "examples:\n"
        "  vit-eval --model fmnist.vqm\n"
        "  vit-eval --model deit_s.vqm --data imagenet/val --limit 5000 --json");
    args.parse(argc, argv);
    if (!args.has("--model")) throw vqm::cli::UsageError("missing --model M.vqm");
    if (!args.positional().empty())
      throw vqm::cli::UsageError("unexpected argument '" + args.positional()[0] + "'");
    vqm::DatasetOptions dopt;
    dopt.split = args.get("--split", "t10k");
    if (dopt.split != "t10k" && dopt.split != "train")
      throw vqm::cli::UsageError("--split must be t10k or train");
    dopt.class_index = args.get("--class-index");
    vqm::app::EvalOptions eo;
    eo.batch = args.get_int("--batch", 32, 1, 1024);
    eo.threads = args.get_int("--threads", 0, 1, 1024);
    eo.sessions = args.get_int("--sessions", 0, 1, 1024);
    eo.keep_logits = args.has("--dump-logits");
    const int limit = args.get_int("--limit", 0, 1, 1 << 30);

    const auto model = vqm::app::load_model(args.get("--model"));
    const int classes = model->config().num_classes;
    const std::string src = args.get("--data", "/usr/share/datasets/fashion-mnist");
    const auto data = vqm::Dataset::open(src, dopt);
    vqm::app::check_labels(data, *model);
    const auto items = data.select(limit);
    vqm::app::ProgressBar bar("vit-eval", "images", vqm::app::progress_wanted(args.has("--quiet")));
    const auto r = vqm::app::evaluate(model, data, items, eo, &bar);
    bar.finish();

    if (args.has("--dump-logits")) {
      static_assert(sizeof(float) == 4, "float32 logits");
      vqm::write_file_atomic(args.get("--dump-logits"), r.logits.data(),
                             r.logits.size() * sizeof(float));
    }
    const std::string where = data.is_idx() ? src + " (" + data.split() + ")" : src;
    if (args.has("--json")) {
      nlohmann::json per_class = nlohmann::json::array();
      for (int k = 0; k < classes; ++k) {
        if (!r.class_n[k]) continue;
        per_class.push_back({{"class", k},
                             {"label", vqm::app::class_name(*model, data, k)},
                             {"n", r.class_n[k]},
                             {"top1", double(r.class_top1[k]) / r.class_n[k]},
                             {"top5", double(r.class_top5[k]) / r.class_n[k]}});
      }
      nlohmann::json j = {{"model", args.get("--model")},
                          {"data", where},
                          {"n", r.n},
                          {"top1", double(r.top1) / r.n},
                          {"top5", double(r.top5) / r.n},
                          {"seconds", r.seconds},
                          {"images_per_s", r.n / r.seconds},
                          {"per_class", per_class}};
      std::printf("%s\n", j.dump().c_str());
      return 0;
    }
    if (args.has("--per-class")) {
      std::printf("%5s  %-32s %6s %8s %8s\n", "class", "label", "n", "top-1", "top-5");
      for (int k = 0; k < classes; ++k)
        if (r.class_n[k])
          std::printf("%5d  %-32.32s %6d %8.4f %8.4f\n", k,
                      vqm::app::class_name(*model, data, k).c_str(), r.class_n[k],
                      double(r.class_top1[k]) / r.class_n[k],
                      double(r.class_top5[k]) / r.class_n[k]);
    }
    std::printf("%s on %s: n=%d top-1 %.4f top-5 %.4f (%.1f s, %.1f images/s)\n",
                args.get("--model").c_str(), where.c_str(), r.n, double(r.top1) / r.n,
                double(r.top5) / r.n, r.seconds, r.n / r.seconds);
    return 0;
  });
}
