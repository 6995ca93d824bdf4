// vit-eval --model M.vqm [--data SRC] [--reference R.vqm]: top-1 / top-5 and per-class accuracy
// on Fashion-MNIST idx files or an image folder (DIR/<class>/...), with one session per worker
// thread; with a reference model (the fp32 original of a quantized one), how closely the outputs
// agree: cosine (mean, minimum) and top-1 agreement. Models without a classifier head (embedding
// models) are measured by that agreement alone. --out DIR [--shard I/N] runs vit-run --out's
// sharded, resumable job on the images of an image folder and prints the accuracy once the
// job's parts are all complete (apps/batch_job.h, docs/batch-jobs.md).
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "apps/app_common.h"
#include "apps/batch_job.h"
#include "apps/cli.h"
#include "apps/evaluate.h"
#include "apps/progress.h"
#include "runtime/io/error.h"
#include "runtime/io/format.h"

namespace {

// What vit-eval measured: accuracy (a classifier on labelled data), agreement (with --reference).
struct Report {
  std::string model, data, reference, min_item;
  std::string out;       // a batch job's folder: the accuracy comes from its parts
  long long errors = 0;  // batch jobs: images that could not be decoded (not scored)
  std::optional<vqm::app::EvalResult> accuracy;
  std::optional<vqm::app::Agreement> agreement;
  double seconds = 0;  // without accuracy: the model's run time
};

nlohmann::json report_json(const Report &r, const vqm::VitModel &model, const vqm::Dataset &data) {
  nlohmann::json j = {{"model", r.model}, {"data", r.data}};
  if (const auto &a = r.accuracy) {
    nlohmann::json per_class = nlohmann::json::array();
    for (size_t k = 0; k < a->class_n.size(); ++k) {
      if (!a->class_n[k]) continue;
      per_class.push_back({{"class", k},
                           {"label", vqm::app::class_name(model, data, static_cast<int>(k))},
                           {"n", a->class_n[k]},
                           {"top1", double(a->class_top1[k]) / a->class_n[k]},
                           {"top5", double(a->class_top5[k]) / a->class_n[k]}});
    }
    j.update({{"n", a->n},
              {"top1", double(a->top1) / a->n},
              {"top5", double(a->top5) / a->n},
              {"per_class", per_class}});
    if (r.out.empty())
      j.update({{"seconds", a->seconds}, {"images_per_s", a->n / a->seconds}});
    else
      j.update({{"out", r.out}, {"errors", r.errors}});
  } else if (r.agreement) {
    j.update({{"n", r.agreement->n}, {"seconds", r.seconds}});
  }
  if (const auto &g = r.agreement) {
    j.update({{"reference", r.reference},
              {"cosine_mean", g->cosine_mean},
              {"cosine_min", g->cosine_min},
              {"cosine_min_image", r.min_item}});
    if (model.config().num_classes > 0) j["top1_agreement"] = double(g->top1_same) / g->n;
  }
  return j;
}

void print_report(const Report &r, const vqm::VitModel &model, const vqm::Dataset &data,
                  bool per_class) {
  if (const auto &a = r.accuracy) {
    if (per_class) {
      std::printf("%5s  %-32s %6s %8s %8s\n", "class", "label", "n", "top-1", "top-5");
      for (size_t k = 0; k < a->class_n.size(); ++k)
        if (a->class_n[k])
          std::printf("%5zu  %-32.32s %6d %8.4f %8.4f\n", k,
                      vqm::app::class_name(model, data, static_cast<int>(k)).c_str(), a->class_n[k],
                      double(a->class_top1[k]) / a->class_n[k],
                      double(a->class_top5[k]) / a->class_n[k]);
    }
    std::printf("%s on %s: n=%d top-1 %.4f top-5 %.4f ", r.model.c_str(), r.data.c_str(), a->n,
                double(a->top1) / a->n, double(a->top5) / a->n);
    if (r.out.empty())
      std::printf("(%.1f s, %.1f images/s)\n", a->seconds, a->n / a->seconds);
    else
      std::printf("(batch job %s; %lld images not decodable, not scored)\n", r.out.c_str(),
                  r.errors);
  }
  if (const auto &g = r.agreement) {
    std::printf("%s vs %s on %s: n=%d cosine mean %.6f min %.6f (%s)", r.model.c_str(),
                r.reference.c_str(), r.data.c_str(), g->n, g->cosine_mean, g->cosine_min,
                r.min_item.c_str());
    if (model.config().num_classes > 0)
      std::printf(", top-1 agreement %.4f", double(g->top1_same) / g->n);
    std::printf("\n");
  }
}

// The label of each listing entry: the class of the same file in the data set (a manifest may
// list any of its images, by any path that names the same file without symbolic links).
std::vector<int> listing_labels(const vqm::app::JobListing &listing, const vqm::Dataset &data) {
  namespace fs = std::filesystem;
  auto key = [](const fs::path &p) { return fs::absolute(p).lexically_normal().string(); };
  std::unordered_map<std::string, int> label_of;
  for (int i = 0; i < data.size(); ++i)
    label_of.emplace(key(fs::path(data.source()) / data.item_name(i)), data.label(i));
  std::vector<int> labels;
  for (size_t i = 0; i < listing.names.size(); ++i) {
    const auto it = label_of.find(key(listing.path(i)));
    if (it == label_of.end())
      vqm::fail(vqm::ErrorCode::invalid_argument, "manifest line '" + listing.names[i] +
                                                      "' is not an image of " + data.source() +
                                                      ": the labels come from its class folders");
    labels.push_back(it->second);
  }
  return labels;
}

// --out DIR: vit-run --out's job on the images of --data (or the --manifest lines among them);
// once every part of the job is complete, the accuracy of the rows the parts hold.
int run_eval_job(const vqm::cli::Args &args) {
  for (const char *flag : {"--reference", "--dump-logits", "--limit", "--sessions", "--split"})
    if (args.has(flag)) throw vqm::cli::UsageError(std::string(flag) + " does not go with --out");
  if (!args.has("--data"))
    throw vqm::cli::UsageError("--out needs --data DIR, an image folder (DIR/<class>/...)");
  const auto jo = vqm::app::job_options(args);
  const std::string model_path = args.get("--model"), src = args.get("--data");
  const auto model = vqm::app::load_model(model_path);
  const int classes = model->config().num_classes;
  if (classes == 0)
    throw vqm::cli::UsageError(model_path + " has no classifier head: vit-eval --out measures " +
                               "accuracy (vit-run --out runs embedding jobs)");
  vqm::DatasetOptions dopt;
  dopt.class_index = args.get("--class-index");
  const auto data = vqm::Dataset::open(src, dopt);
  // A job lists image files, which every writer (vit-run, vqm.jobs, vqm.dask) can read.
  if (data.is_idx())
    vqm::fail(vqm::ErrorCode::invalid_argument,
              src + " holds idx files: --out needs an image folder (DIR/<class>/...); evaluate " +
                  "idx files without --out");
  vqm::app::check_labels(data, *model);
  const auto listing = args.has("--manifest") ? vqm::app::read_manifest(args.get("--manifest"))
                                              : vqm::app::list_folder(src);
  const std::vector<int> labels = listing_labels(listing, data);
  const std::string out = args.get("--out");
  const auto s = vqm::app::run_job_tool("vit-eval", args, jo, model, model_path, listing, out);
  const long long remaining = s.parts_in_job - s.parts_complete_in_job;
  if (remaining > 0) {
    const nlohmann::json j = {
        {"out", out}, {"parts", s.parts_in_job}, {"parts_remaining", remaining}};
    if (args.has("--json"))
      std::printf("%s\n", j.dump().c_str());
    else
      std::printf("%s: %lld of %lld parts remain (other shards): accuracy once all are complete\n",
                  out.c_str(), remaining, static_cast<long long>(s.parts_in_job));
    return 0;
  }
  const vqm::app::JobResults res = vqm::app::read_job(out, listing);
  std::vector<int> row_labels;
  for (int64_t item : res.items) row_labels.push_back(labels[static_cast<size_t>(item)]);
  Report rep;
  rep.model = model_path;
  rep.data = src;
  rep.out = out;
  rep.errors = static_cast<long long>(res.errors.size());
  rep.accuracy = vqm::app::score(res.outputs.data(), row_labels, classes);
  if (args.has("--json"))
    std::printf("%s\n", report_json(rep, *model, data).dump().c_str());
  else
    print_report(rep, *model, data, args.has("--per-class"));
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  return vqm::cli::run_tool("vit-eval", [&] {
    vqm::cli::Args args(
        "vit-eval", "--model M.vqm [--data SRC] [options]",
        vqm::app::with_job_flags(
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
             {"--batch", "N", "images per forward pass (default 32; 8 with --out)"},
             {"--threads", "N", "CPU threads in all (default: all cores)"},
             {"--sessions", "N",
              "worker threads, each with its own session and threads/N OpenMP threads "
              "(default: one per thread)"},
             {"--per-class", "", "print the per-class table (the JSON always has it)"},
             {"--reference", "R.vqm",
              "also run R (e.g. the fp32 model M was quantized from) and report the cosine of M's "
              "outputs to R's (mean, min) and top-1 agreement; needed for a model without a head, "
              "and then the data need no labels"},
             {"--json", "",
              "print one JSON object: top1, top5, n, seconds, per_class (and cosine_mean, "
              "cosine_min, cosine_min_image, top1_agreement with --reference; out and errors "
              "instead of seconds with --out, or out, parts, parts_remaining before it is "
              "complete)"},
             {"--dump-logits", "FILE",
              "write N x K float32 little-endian outputs (logits or embeddings), in data order"},
             {"--quiet", "", "no progress bar"},
             {"--out", "DIR",
              "batch job (image folders): write the outputs as numbered parts + index.json into "
              "DIR, as vit-run --out does; accuracy once every part is complete"},
             {"--manifest", "FILE",
              "batch job: only these images of --data, one path per line (relative to FILE's "
              "folder)"}}),
        "Evaluates a model on labelled images and prints top-1 / top-5 accuracy. Image folders "
        "follow torchvision's ImageFolder layout (also the ImageNet validation set sorted into "
        "synset folders). Results go to stdout; the progress bar (terminals only) to stderr.\n\n"
        "Batch jobs (--out DIR, image folders only): the same job as vit-run --out with the same "
        "images, part size and top-5, so either tool resumes the other's folder. Shard I/N runs "
        "parts k with k % N == I and skips complete ones. When every part of the job is "
        "complete, the accuracy is computed from the parts (images that could not be decoded "
        "are counted, not scored); otherwise it prints how many parts remain. idx files cannot "
        "be a job: evaluate them without --out. Format: docs/batch-jobs.md.\n\n"
        "examples:\n"
        "  vit-eval --model fmnist.vqm\n"
        "  vit-eval --model deit_s.vqm --data imagenet/val --limit 5000 --json\n"
        "  vit-eval --model dinov2.w8.vqm --reference dinov2.vqm --data photos/\n"
        "  vit-eval --model deit_s.vqm --data imagenet/val --out val-job/ --shard 0/4");
    args.parse(argc, argv);
    if (!args.has("--model")) throw vqm::cli::UsageError("missing --model M.vqm");
    if (!args.positional().empty())
      throw vqm::cli::UsageError("unexpected argument '" + args.positional()[0] + "'");
    if (args.has("--out")) return run_eval_job(args);
    vqm::app::check_no_job_flags(args);
    vqm::DatasetOptions dopt;
    dopt.split = args.get("--split", "t10k");
    if (dopt.split != "t10k" && dopt.split != "train")
      throw vqm::cli::UsageError("--split must be t10k or train");
    dopt.class_index = args.get("--class-index");
    vqm::app::EvalOptions eo;
    eo.batch = args.get_int("--batch", 32, 1, 1024);
    eo.threads = args.get_int("--threads", 0, 1, 1024);
    eo.sessions = args.get_int("--sessions", 0, 1, 1024);
    const int limit = args.get_int("--limit", 0, 1, 1 << 30);

    const std::string model_path = args.get("--model"), ref_path = args.get("--reference");
    const auto model = vqm::app::load_model(model_path);
    const auto ref = ref_path.empty() ? nullptr : vqm::app::load_model(ref_path);
    const int classes = model->config().num_classes;
    const int64_t k = model->config().n_outputs();
    if (!ref && classes == 0)
      throw vqm::cli::UsageError(model_path + " has no classifier head (it outputs " +
                                 std::to_string(k) +
                                 "-dim embeddings): give --reference R.vqm to compare them with");
    if (ref && ref->config().n_outputs() != k)
      throw vqm::cli::UsageError(ref_path + " outputs " +
                                 std::to_string(ref->config().n_outputs()) + " values, " +
                                 model_path + " " + std::to_string(k) + ": not comparable");
    dopt.need_labels = !ref;  // agreement alone needs no labels
    const std::string src = args.get("--data", "/usr/share/datasets/fashion-mnist");
    const auto data = vqm::Dataset::open(src, dopt);
    const auto items = data.select(limit);
    const bool accuracy = classes > 0 && data.labelled();
    const bool quiet = !vqm::app::progress_wanted(args.has("--quiet"));

    Report rep;
    rep.model = model_path;
    rep.data = data.is_idx() ? src + " (" + data.split() + ")" : src;
    std::vector<float> outputs;
    {
      vqm::app::ProgressBar bar("vit-eval", "images", !quiet);
      if (accuracy) {
        eo.keep_outputs = true;
        rep.accuracy = vqm::app::evaluate(model, data, items, eo, &bar);
        outputs = std::move(rep.accuracy->outputs);
      } else {
        outputs = vqm::app::run_outputs(model, data, items, eo, &bar, &rep.seconds);
      }
      bar.finish();
    }
    if (ref) {
      vqm::app::ProgressBar bar("vit-eval", "images (reference)", !quiet);
      const auto want = vqm::app::run_outputs(ref, data, items, eo, &bar);
      bar.finish();
      rep.reference = ref_path;
      rep.agreement = vqm::app::agreement(outputs.data(), want.data(),
                                          static_cast<int>(items.size()), static_cast<int>(k));
      if (!items.empty()) rep.min_item = data.item_name(items[rep.agreement->cosine_min_row]);
    }
    if (args.has("--dump-logits")) {
      static_assert(sizeof(float) == 4, "float32 outputs");
      vqm::write_file_atomic(args.get("--dump-logits"), outputs.data(),
                             outputs.size() * sizeof(float));
    }
    if (args.has("--json"))
      std::printf("%s\n", report_json(rep, *model, data).dump().c_str());
    else
      print_report(rep, *model, data, args.has("--per-class"));
    return 0;
  });
}
