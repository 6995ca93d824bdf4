// vit-quantize --model FP32.vqm --calib SRC (--bits B | --mixed AVG | --size-budget BYTES) -o
// OUT.vqm [--eval-data SRC] [--html-report DIR]
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "apps/cli.h"
#include "apps/data/calibration.h"
#include "apps/evaluate.h"
#include "apps/progress.h"
#include "apps/report/report_html.h"
#include "quantizer/ptq.h"
#include "runtime/io/error.h"

namespace {

// fp32 and quantized accuracy on the same images, for the summary, the JSON and the HTML report.
vqm::quant::AccuracyComparison compare_accuracy(const std::shared_ptr<const vqm::VitModel> &fp32,
                                                const std::shared_ptr<const vqm::VitModel> &quant,
                                                const vqm::Dataset &data, int limit, bool bars) {
  const auto items = data.select(limit);
  vqm::app::EvalOptions eo;
  eo.keep_outputs = true;
  vqm::app::EvalResult r[2];
  const std::shared_ptr<const vqm::VitModel> models[2] = {fp32, quant};
  for (int m = 0; m < 2; ++m) {
    vqm::app::ProgressBar bar(m ? "eval quantized" : "eval fp32", "images", bars);
    r[m] = vqm::app::evaluate(models[m], data, items, eo, &bar);
  }
  vqm::quant::AccuracyComparison a;
  a.data = data.source() + (data.is_idx() ? " (" + data.split() + ")" : "");
  a.n = r[0].n;
  a.fp32_top1 = double(r[0].top1) / a.n, a.fp32_top5 = double(r[0].top5) / a.n;
  a.quant_top1 = double(r[1].top1) / a.n, a.quant_top5 = double(r[1].top5) / a.n;
  const int k = a.n ? static_cast<int>(r[0].outputs.size() / a.n) : 0;
  const vqm::app::Agreement agree =
      vqm::app::agreement(r[1].outputs.data(), r[0].outputs.data(), a.n, k);
  a.top1_agreement = a.n ? double(agree.top1_same) / a.n : 0;
  a.cosine_mean = agree.cosine_mean, a.cosine_min = agree.cosine_min;
  for (size_t k = 0; k < r[0].class_n.size(); ++k) {
    if (!r[0].class_n[k]) continue;
    a.class_names.push_back(vqm::app::class_name(*fp32, data, static_cast<int>(k)));
    a.fp32_class_top1.push_back(double(r[0].class_top1[k]) / r[0].class_n[k]);
    a.quant_class_top1.push_back(double(r[1].class_top1[k]) / r[1].class_n[k]);
  }
  return a;
}

nlohmann::json accuracy_json(const vqm::quant::AccuracyComparison &a) {
  nlohmann::json per_class = nlohmann::json::array();
  for (size_t k = 0; k < a.class_names.size(); ++k)
    per_class.push_back({{"label", a.class_names[k]},
                         {"fp32_top1", a.fp32_class_top1[k]},
                         {"quantized_top1", a.quant_class_top1[k]}});
  return {{"data", a.data},
          {"n", a.n},
          {"fp32_top1", a.fp32_top1},
          {"fp32_top5", a.fp32_top5},
          {"quantized_top1", a.quant_top1},
          {"quantized_top5", a.quant_top5},
          {"top1_agreement", a.top1_agreement},
          {"cosine_mean", a.cosine_mean},
          {"cosine_min", a.cosine_min},
          {"per_class", per_class}};
}

}  // namespace

int main(int argc, char **argv) {
  return vqm::cli::run_tool("vit-quantize", [&] {
    vqm::cli::Args args(
        "vit-quantize",
        "--model FP32.vqm --calib SRC (--bits B | --mixed AVG | --size-budget BYTES) -o OUT.vqm",
        {{"--model", "FP32.vqm", "fp32 model from vit-convert"},
         {"--calib", "SRC",
          "folder of idx files (train split used) or of images (searched recursively)"},
         {"-o", "OUT.vqm", "output file (written atomically)"},
         {"--n-calib", "N", "calibration images (default 32)"},
         {"--seed", "N", "seed of the calibration choice and of pair sampling (default 0)"},
         {"--bits", "B", "uniform bits of every MSA/MLP module, 2..8 (default 8)"},
         {"--mixed", "AVG", "mixed precision: parameter-weighted average weight bits (e.g. 4)"},
         {"--size-budget", "BYTES", "mixed precision: bytes for the blocks' weights"},
         {"--candidate-bits", "LIST", "bits mixed precision may pick (default 2,3,4,5,6,8)"},
         {"--min-act-bits", "B",
          "activations of a module below B bits stay at B (default 3, and with --mixed AVG or "
          "--size-budget the average rounded up: --mixed 4 keeps every activation at 4 bits or "
          "more)"},
         {"--method", "M", "ptq (default: similarity + ranking search), minmax or percentile"},
         {"--no-ranking", "", "Q.K^T search without the ranking loss"},
         {"--no-bias-correction", "", "keep the original biases"},
         {"--no-gptq", "",
          "round weights to the nearest level instead of GPTQ's error feedback (method ptq)"},
         {"--no-fp32-target", "",
          "GPTQ reproduces each layer's output on its quantized inputs, not the fp32 model's "
          "(method ptq)"},
         {"--no-reparam", "",
          "keep LayerNorm outputs as they are (method ptq; default: rescaled per channel to one "
          "range, the inverse folded into qkv and fc1)"},
         {"--no-twin-softmax", "",
          "keep the softmax output on a uniform grid below 8 bits (method ptq; default: a "
          "two-range grid where it scores better)"},
         {"--no-codebook", "",
          "keep LayerNorm and GELU outputs on uniform grids below 8 bits (method ptq; default: "
          "levels placed by Lloyd-Max where they score better)"},
         {"--per-tensor", "", "one weight interval per layer instead of per output channel"},
         {"--no-refine", "", "skip the per-channel refinement after the alternating search"},
         {"--edge-bits", "B", "bits of the patch embedding and the head (default 8)"},
         {"--alpha", "F", "lowest candidate, times the max-based interval (default 0.5)"},
         {"--beta", "F", "highest candidate (default 1.2)"},
         {"--candidates", "C", "candidates per search (default 100)"},
         {"--rounds", "R", "alternations of weight/input search (default 2)"},
         {"--coarse-stride", "S",
          "coarse-to-fine candidate scan: every S-th candidate, then those around the best "
          "(default 4; 1 = the full grid)"},
         {"--fp32-candidates", "",
          "score candidates on fp32 products of the fake-quantized operands instead of the exact "
          "int8 ones (slower; the reference path)"},
         {"--gamma", "F", "weight of the ranking loss (default 0.1)"},
         {"--theta", "F", "margin of the ranking loss (default 0)"},
         {"--sensitivity-at", "WHERE",
          "mixed precision: measure a module's error at the network 'output' (default) or at the "
          "'module' output (the paper)"},
         {"--sensitivity-candidates", "C",
          "candidates of the coarse search used for mixed-precision sensitivity (default 10)"},
         {"--sensitivity-images", "N",
          "calibration images the mixed-precision sensitivity is measured on (default 8; 0 = "
          "all)"},
         {"--sensitivity", "",
          "with --bits: also measure the per-module sensitivity and the Pareto frontier (for the "
          "reports; costs about as much as a mixed-precision run)"},
         {"--eval-data", "SRC",
          "evaluate fp32 and quantized accuracy on labelled data: idx files (t10k split) or an "
          "image folder SRC/<class>/*.jpg"},
         {"--eval-limit", "N", "evaluate N images of --eval-data (see vit-eval --limit)"},
         {"--class-index", "FILE",
          "class-index file of an --eval-data image folder (see vit-eval)"},
         {"--report", "FILE.json", "write the per-layer / per-module report as JSON"},
         {"--html-report", "DIR",
          "write DIR/index.html: one self-contained page with SVG plots (bits, sensitivity, "
          "Pareto frontier, similarity, search curves, accuracy)"},
         {"--json", "", "print a JSON summary on stdout instead of the table"},
         {"--quiet", "", "no progress bar and no table"}},
        "Post-training quantization of an fp32 .vqm: calibration images through the model, an "
        "interval search per layer, bias correction, and mixed precision when asked. The table "
        "(or --json) goes to stdout, progress bars (terminals only) to stderr.\n\n"
        "examples:\n"
        "  vit-quantize --model m.vqm --calib /usr/share/datasets/fashion-mnist --bits 8 -o "
        "m.w8.vqm\n"
        "  vit-quantize --model deit_s.vqm --calib imagenet/train --mixed 4 -o deit_s.mp4.vqm \\\n"
        "      --eval-data imagenet/val --eval-limit 2000 --html-report report/");
    args.parse(argc, argv);
    for (const char *req : {"--model", "--calib", "-o"})
      if (!args.has(req)) throw vqm::cli::UsageError(std::string("missing ") + req);
    if (!args.positional().empty())
      throw vqm::cli::UsageError("unexpected argument '" + args.positional()[0] + "'");
    if (args.has("--mixed") + args.has("--size-budget") + args.has("--bits") > 1)
      throw vqm::cli::UsageError("give only one of --bits, --mixed, --size-budget");

    vqm::quant::PtqOptions opt;
    opt.method = args.get("--method", "ptq");
    if (opt.method != "ptq" && opt.method != "minmax" && opt.method != "percentile")
      throw vqm::cli::UsageError("--method must be ptq, minmax or percentile");
    opt.bits = args.get_int("--bits", 8, 2, 8);
    opt.mixed_avg_bits = args.get_double("--mixed", 0, 2, 8);
    opt.size_budget_bytes = args.get_double("--size-budget", 0, 1, 1e13);
    if (args.has("--candidate-bits")) {
      opt.candidate_bits.clear();
      for (float b : vqm::cli::parse_floats(args.get("--candidate-bits"), "--candidate-bits")) {
        if (b < 2 || b > 8 || b != static_cast<int>(b))
          throw vqm::cli::UsageError("--candidate-bits: integers 2..8");
        opt.candidate_bits.push_back(static_cast<int>(b));
      }
    }
    opt.ranking = !args.has("--no-ranking");
    opt.bias_correction = !args.has("--no-bias-correction");
    opt.gptq = !args.has("--no-gptq");
    opt.fp32_target = !args.has("--no-fp32-target");
    opt.twin_softmax = !args.has("--no-twin-softmax");
    opt.codebook = !args.has("--no-codebook");
    opt.reparam = !args.has("--no-reparam");
    opt.edge_bits = args.get_int("--edge-bits", 8, 2, 8);
    opt.min_act_bits = args.get_int("--min-act-bits", 0, 2, 8);  // 0: PtqOptions decides
    opt.search.per_channel = !args.has("--per-tensor");
    opt.search.refine_channels = !args.has("--no-refine") && opt.search.per_channel;
    opt.search.alpha = static_cast<float>(args.get_double("--alpha", 0.5, 0.01, 10));
    opt.search.beta = static_cast<float>(args.get_double("--beta", 1.2, 0.01, 10));
    if (opt.search.beta < opt.search.alpha) throw vqm::cli::UsageError("--beta must be >= --alpha");
    opt.search.candidates = args.get_int("--candidates", 100, 1, 100000);
    opt.search.rounds = args.get_int("--rounds", 2, 0, 100);
    opt.search.coarse_stride = opt.sensitivity_search.coarse_stride =
        args.get_int("--coarse-stride", 4, 1, 100000);
    opt.search.int8_candidates = opt.sensitivity_search.int8_candidates =
        !args.has("--fp32-candidates");
    opt.search.gamma = static_cast<float>(args.get_double("--gamma", 0.1, 0, 1e6));
    opt.search.theta = static_cast<float>(args.get_double("--theta", 0, -1e6, 1e6));
    const int seed = args.get_int("--seed", 0, 0, 1 << 30);
    opt.search.seed = static_cast<uint64_t>(seed);
    opt.sensitivity_search.per_channel = opt.search.per_channel;
    opt.sensitivity_search.seed = opt.search.seed;
    // Defaults from PtqOptions, where they were measured (docs/quantization.md).
    opt.sensitivity_search.candidates =
        args.get_int("--sensitivity-candidates", opt.sensitivity_search.candidates, 1, 100000);
    opt.sensitivity_images =
        args.get_int("--sensitivity-images", opt.sensitivity_images, 0, 1 << 20);
    opt.sensitivity_at = args.get("--sensitivity-at", "output");
    if (opt.sensitivity_at != "output" && opt.sensitivity_at != "module")
      throw vqm::cli::UsageError("--sensitivity-at must be output or module");
    const int n_calib = args.get_int("--n-calib", 32, 1, 100000);
    opt.measure_sensitivity = args.has("--sensitivity");
    if (opt.measure_sensitivity && (args.has("--mixed") || args.has("--size-budget")))
      throw vqm::cli::UsageError(
          "--sensitivity is for --bits (mixed precision measures it anyway)");
    if (!args.has("--eval-data") && (args.has("--eval-limit") || args.has("--class-index")))
      throw vqm::cli::UsageError("--eval-limit and --class-index need --eval-data");
    const int eval_limit = args.get_int("--eval-limit", 0, 1, 1 << 30);
    const bool quiet = args.has("--quiet"), json = args.has("--json");
    const bool bars = vqm::app::progress_wanted(quiet);

    const auto fp32 = vqm::VqmFile::from_file(args.get("--model"));
    const auto probe = vqm::VitModel::load(fp32);
    const auto calib = vqm::app::load_calibration(args.get("--calib"), n_calib,
                                                  static_cast<uint64_t>(seed), *probe);
    // Eval data is opened before the long search, so a wrong path fails at once.
    std::unique_ptr<vqm::Dataset> eval_data;
    if (args.has("--eval-data")) {
      vqm::DatasetOptions dopt;
      dopt.class_index = args.get("--class-index");
      eval_data = std::make_unique<vqm::Dataset>(vqm::Dataset::open(args.get("--eval-data"), dopt));
      vqm::app::check_labels(*eval_data, *probe);
    }
    // One bar per phase (sensitivity trials, then the layer search): their steps cost different
    // amounts, so a single rate would mislead the ETA.
    std::unique_ptr<vqm::app::ProgressBar> bar;
    std::string phase;
    vqm::quant::Progress progress = [&](const std::string &stage, int done, int total) {
      const bool sensitivity = stage.rfind("sensitivity", 0) == 0;
      const std::string now = sensitivity ? "sensitivity" : "search";
      if (!bar || now != phase) {
        if (bar) bar->finish();
        bar = std::make_unique<vqm::app::ProgressBar>(now, sensitivity ? "trials" : "layers", bars);
        phase = now;
      }
      bar->update(done, total, sensitivity ? stage.substr(12) : stage);
    };
    vqm::quant::PtqReport report;
    const vqm::VqmWriter out = vqm::quant::quantize(fp32, calib, opt, &report, progress);
    const auto bytes = out.to_bytes();
    bar.reset();
    const auto quantized = vqm::VitModel::load(
        vqm::VqmFile::from_memory(bytes.data(), bytes.size()));  // validate before writing
    vqm::write_file_atomic(args.get("-o"), bytes.data(), bytes.size());
    std::optional<vqm::quant::AccuracyComparison> accuracy;
    if (eval_data) accuracy = compare_accuracy(probe, quantized, *eval_data, eval_limit, bars);
    nlohmann::json summary = {{"model", args.get("--model")},  {"output", args.get("-o")},
                              {"method", opt.method},          {"avg_bits", report.avg_bits},
                              {"calibration_images", calib.n}, {"seconds", report.seconds},
                              {"bytes", bytes.size()},         {"stages", report.stages}};
    if (accuracy) summary["accuracy"] = accuracy_json(*accuracy);
    if (args.has("--report")) {
      nlohmann::json j = report.to_json();
      if (accuracy) j["accuracy"] = summary["accuracy"];
      const std::string text = j.dump(1);
      vqm::write_file_atomic(args.get("--report"), text.data(), text.size());
      summary["report"] = args.get("--report");
    }
    if (args.has("--html-report")) {
      vqm::quant::ReportContext ctx;
      ctx.model_path = args.get("--model");
      ctx.output_path = args.get("-o");
      ctx.calibration = args.get("--calib") + ", " + std::to_string(calib.n) + " images";
      ctx.method = opt.method;
      ctx.bits_mode =
          args.has("--mixed")         ? "mixed precision, " + args.get("--mixed") + " average bits"
          : args.has("--size-budget") ? "mixed precision, " + args.get("--size-budget") + " bytes"
                                      : "uniform " + std::to_string(opt.bits) + " bits";
      ctx.fp32_bytes = static_cast<int64_t>(std::filesystem::file_size(args.get("--model")));
      ctx.quant_bytes = static_cast<int64_t>(bytes.size());
      ctx.accuracy = accuracy;
      summary["html_report"] =
          vqm::quant::write_html_report(args.get("--html-report"), report, ctx);
    }
    if (json) {
      nlohmann::json modules = nlohmann::json::object();
      for (const auto &m : report.modules) modules[m.name] = m.bits;
      summary["modules"] = modules;
      std::printf("%s\n", summary.dump().c_str());
    } else if (!quiet) {
      std::printf("%-26s %-6s %5s %12s %4s %10s    %-10s\n", "layer", "kind", "bits", "delta_x",
                  "zp", "similarity", "");
      for (const auto &l : report.layers)
        std::printf("%-26s %-6s %5d %12.6g %4d %10.6f -> %.6f\n", l.name.c_str(), l.kind.c_str(),
                    l.x_bits, l.x_delta, l.x_zero_point, l.similarity_init, l.similarity);
      std::printf("modules:");
      for (const auto &m : report.modules) std::printf(" %s=%d", m.name.c_str() + 7, m.bits);
      std::printf(
          "\n%s: %s (stages: %s), %.2f average bits, %d calibration images, %.1f s, %.2f MB\n",
          args.get("-o").c_str(), opt.method.c_str(), report.stages_text().c_str(), report.avg_bits,
          calib.n, report.seconds, bytes.size() / 1e6);
      if (accuracy)
        std::printf(
            "accuracy on %s (%d images): fp32 top-1 %.4f top-5 %.4f, quantized top-1 %.4f "
            "top-5 %.4f; top-1 agreement with fp32 %.4f, logit cosine mean %.6f min %.6f\n",
            accuracy->data.c_str(), accuracy->n, accuracy->fp32_top1, accuracy->fp32_top5,
            accuracy->quant_top1, accuracy->quant_top5, accuracy->top1_agreement,
            accuracy->cosine_mean, accuracy->cosine_min);
      if (summary.contains("html_report"))
        std::printf("report: %s\n", summary["html_report"].get<std::string>().c_str());
    }
    return 0;
  });
}
