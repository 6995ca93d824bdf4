// vit-quantize --model FP32.vqm --calib SRC (--bits B | --mixed AVG | --size-budget BYTES) -o
// OUT.vqm
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>

#include "apps/cli.h"
#include "quantizer/ptq.h"
#include "runtime/error.h"

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
         {"--candidate-bits", "LIST", "bits mixed precision may pick (default 3,4,5,6,8)"},
         {"--method", "M", "ptq (default: similarity + ranking search), minmax or percentile"},
         {"--no-ranking", "", "Q.K^T search without the ranking loss"},
         {"--no-bias-correction", "", "keep the original biases"},
         {"--per-tensor", "", "one weight interval per layer instead of per output channel"},
         {"--no-refine", "", "skip the per-channel refinement after the alternating search"},
         {"--edge-bits", "B", "bits of the patch embedding and the head (default 8)"},
         {"--alpha", "F", "lowest candidate, times the max-based interval (default 0.5)"},
         {"--beta", "F", "highest candidate (default 1.2)"},
         {"--candidates", "C", "candidates per search (default 100)"},
         {"--rounds", "R", "alternations of weight/input search (default 2)"},
         {"--gamma", "F", "weight of the ranking loss (default 0.1)"},
         {"--theta", "F", "margin of the ranking loss (default 0)"},
         {"--sensitivity-at", "WHERE",
          "mixed precision: measure a module's error at the network 'output' (default) or at the "
          "'module' output (the paper)"},
         {"--sensitivity-candidates", "C",
          "candidates of the coarse search used for mixed-precision sensitivity (default 20)"},
         {"--report", "FILE.json", "write the per-layer / per-module report as JSON"},
         {"--quiet", "", "no progress and no table"}});
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
    opt.edge_bits = args.get_int("--edge-bits", 8, 2, 8);
    opt.search.per_channel = !args.has("--per-tensor");
    opt.search.refine_channels = !args.has("--no-refine") && opt.search.per_channel;
    opt.search.alpha = static_cast<float>(args.get_double("--alpha", 0.5, 0.01, 10));
    opt.search.beta = static_cast<float>(args.get_double("--beta", 1.2, 0.01, 10));
    if (opt.search.beta < opt.search.alpha) throw vqm::cli::UsageError("--beta must be >= --alpha");
    opt.search.candidates = args.get_int("--candidates", 100, 1, 100000);
    opt.search.rounds = args.get_int("--rounds", 2, 0, 100);
    opt.search.gamma = static_cast<float>(args.get_double("--gamma", 0.1, 0, 1e6));
    opt.search.theta = static_cast<float>(args.get_double("--theta", 0, -1e6, 1e6));
    const int seed = args.get_int("--seed", 0, 0, 1 << 30);
    opt.search.seed = static_cast<uint64_t>(seed);
    opt.sensitivity_search.per_channel = opt.search.per_channel;
    opt.sensitivity_search.seed = opt.search.seed;
    opt.sensitivity_search.candidates = args.get_int("--sensitivity-candidates", 20, 1, 100000);
    opt.sensitivity_at = args.get("--sensitivity-at", "output");
    if (opt.sensitivity_at != "output" && opt.sensitivity_at != "module")
      throw vqm::cli::UsageError("--sensitivity-at must be output or module");
    const int n_calib = args.get_int("--n-calib", 32, 1, 100000);
    const bool quiet = args.has("--quiet");
    const bool tty = isatty(STDERR_FILENO);

    const auto fp32 = vqm::VqmFile::from_file(args.get("--model"));
    const auto probe = vqm::VitModel::load(fp32);
    const auto calib = vqm::quant::load_calibration(args.get("--calib"), n_calib,
                                                    static_cast<uint64_t>(seed), *probe);
    const auto t0 = std::chrono::steady_clock::now();
    vqm::quant::Progress progress = [&](const std::string &stage, int done, int total) {
      if (quiet || !tty) return;
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double eta = done ? s / done * (total - done) : 0;
      std::fprintf(stderr, "\r\033[K%3d%% [%d/%d] %s  %.0f s, ETA %.0f s", 100 * done / total, done,
                   total, stage.c_str(), s, eta);
      if (done == total) std::fprintf(stderr, "\n");
    };
    vqm::quant::PtqReport report;
    const vqm::VqmWriter out = vqm::quant::quantize(fp32, calib, opt, &report, progress);
    const auto bytes = out.to_bytes();
    vqm::VitModel::load(
        vqm::VqmFile::from_memory(bytes.data(), bytes.size()));  // validate before writing
    vqm::write_file_atomic(args.get("-o"), bytes.data(), bytes.size());
    if (args.has("--report")) {
      const std::string text = report.to_json().dump(1);
      vqm::write_file_atomic(args.get("--report"), text.data(), text.size());
    }
    if (!quiet) {
      std::printf("%-26s %-6s %5s %12s %4s %10s    %-10s\n", "layer", "kind", "bits", "delta_x",
                  "zp", "similarity", "");
      for (const auto &l : report.layers)
        std::printf("%-26s %-6s %5d %12.6g %4d %10.6f -> %.6f\n", l.name.c_str(), l.kind.c_str(),
                    l.x_bits, l.x_delta, l.x_zero_point, l.similarity_init, l.similarity);
      std::printf("modules:");
      for (const auto &m : report.modules) std::printf(" %s=%d", m.name.c_str() + 7, m.bits);
      std::printf("\n%s: %s, %.2f average bits, %d calibration images, %.1f s, %.2f MB\n",
                  args.get("-o").c_str(), opt.method.c_str(), report.avg_bits, calib.n,
                  report.seconds, bytes.size() / 1e6);
    }
    return 0;
  });
}
