// vit-bench: images/s and ms/image of a .vqm or of a random-weight DeiT geometry. Timing follows
// the peers' harness (../shared/peers): warm-up, then at least --runs runs and --min-time
// seconds, median and p90 of whole-batch times.
#include <sys/resource.h>
#include <sys/stat.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "apps/app_common.h"
#include "apps/cli.h"
#include "apps/progress.h"
#include "kernels/kernels.h"
#include "models/random_model.h"
#include "quantizer/ptq.h"
#include "runtime/io/format.h"

namespace {

struct Timing {
  double median_ms, p90_ms, min_ms;
  int runs;
};

// The bar shows how far both conditions of each phase are met (runs and seconds), warm-up
// weighted by its share of the minimum time. Drawing is throttled and happens between runs.
Timing time_runs(vqm::VitSession &s, const float *input, int batch, float *logits, int min_runs,
                 double min_time, double warmup_time, vqm::app::ProgressBar *bar) {
  using clock = std::chrono::steady_clock;
  const double warm_share = (warmup_time + 0.1) / (warmup_time + min_time + 0.2);
  auto show = [&](double phase_done, bool warm, int runs) {
    const double f = warm ? warm_share * phase_done : warm_share + (1 - warm_share) * phase_done;
    bar->update(static_cast<int64_t>(1000 * std::min(1.0, f)), 1000,
                warm ? "warm-up" : std::to_string(runs) + " runs");
  };
  auto seconds_since = [](clock::time_point t) {
    return std::chrono::duration<double>(clock::now() - t).count();
  };
  // Warm-up like the peers' harness: at least 2 runs and at least warmup_time seconds.
  auto t0 = clock::now();
  for (int runs = 0; runs < 2 || seconds_since(t0) < warmup_time; ++runs) {
    s.run(input, batch, logits);
    show(std::min((runs + 1) / 2.0, warmup_time > 0 ? seconds_since(t0) / warmup_time : 1.0), true,
         runs + 1);
  }
  std::vector<double> ms;
  t0 = clock::now();
  while (static_cast<int>(ms.size()) < min_runs || seconds_since(t0) < min_time) {
    const auto a = clock::now();
    s.run(input, batch, logits);
    ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - a).count());
    show(std::min(double(ms.size()) / min_runs, min_time > 0 ? seconds_since(t0) / min_time : 1.0),
         false, static_cast<int>(ms.size()));
  }
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  // Median and p90 with linear interpolation between order statistics (numpy's default, as
  // the peers report them).
  auto quantile = [&](double q) {
    const double pos = q * static_cast<double>(n - 1);
    const size_t lo = static_cast<size_t>(pos);
    const size_t hi = std::min(lo + 1, n - 1);
    return ms[lo] + (pos - static_cast<double>(lo)) * (ms[hi] - ms[lo]);
  };
  return {quantile(0.5), quantile(0.9), ms[0], static_cast<int>(n)};
}

std::vector<int> parse_ints(const std::string &s, const char *what) {
  std::vector<int> out;
  for (float v : vqm::cli::parse_floats(s, what)) {
    if (v < 1 || v > 1024 || v != static_cast<int>(v))
      throw vqm::cli::UsageError(std::string(what) + " expects integers in [1, 1024]");
    out.push_back(static_cast<int>(v));
  }
  return out;
}

// "fp32", "w8a8" for uniform bits, "mp4.0" for a mixed-precision average: as stored.
std::string precision_of(const vqm::VitModel &m) {
  const auto &meta = m.file().meta();
  if (!m.quant() || !meta.contains("quantization")) return "fp32";
  const auto &q = meta["quantization"];
  char buf[32];
  if (q.contains("bits") && q["bits"].is_number_integer()) {
    const int b = q["bits"].get<int>();
    std::snprintf(buf, sizeof buf, "w%da%d", b, b);
  } else {
    std::snprintf(buf, sizeof buf, "mp%.1f", q.value("avg_bits", 0.0));
  }
  return buf;
}

// Peak resident set of this process so far, in MB (Linux reports ru_maxrss in KiB).
double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) * 1024.0 / 1e6;
}

void print_profile(const vqm::OpProfile &p, int batch) {
  const double total = p.total();
  std::printf("  profile, batch %d, %lld forwards, %.2f ms per forward:\n", batch,
              static_cast<long long>(p.forwards), 1e3 * total / static_cast<double>(p.forwards));
  for (int op = 0; op < vqm::OpProfile::count; ++op)
    std::printf("    %-30s %8.3f ms  %5.1f %%\n", vqm::OpProfile::name(op),
                1e3 * p.seconds[op] / static_cast<double>(p.forwards),
                100.0 * p.seconds[op] / total);
}

}  // namespace

int main(int argc, char **argv) {
  return vqm::cli::run_tool("vit-bench", [&] {
    vqm::cli::Args args(
        "vit-bench", "(--model M.vqm | --arch NAME) [options]",
        {{"--model", "M.vqm", "model file to time"},
         {"--arch", "NAME", "random weights of deit_tiny|deit_small|deit_base_patch16_224"},
         {"--precision", "P",
          "with --arch: fp32 (default), w8a8, w6a6, w4a4 or mp4 (mixed, 4-bit average); "
          "quantized with min/max intervals from 4 random calibration inputs"},
         {"--batch", "N[,N..]", "batch sizes (default 1,8)"},
         {"--threads", "N", "OpenMP threads (default 2)"},
         {"--runs", "N", "at least this many timed runs (default 5)"},
         {"--min-time", "S", "and at least this many seconds (default 3)"},
         {"--warmup", "S", "warm-up seconds (default 1)"},
         {"--json", "", "one JSON line per configuration (peers' schema)"},
         {"--save", "FILE", "with --arch: also write the (quantized) random model to FILE"},
         {"--profile", "",
          "after timing, time each kind of operation (GEMM, softmax, LayerNorm, GELU, "
          "quantize/reorder) over the same number of runs and print the shares (quantized "
          "models: thread 0's operations and its wait at the per-block barrier)"},
         {"--verbose", "", "list the oneDNN kernel chosen for every primitive"},
         {"--quiet", "", "no progress bar"}},
        "Times whole-batch forwards: a warm-up, then at least --runs runs and --min-time seconds; "
        "reports the median and p90. One line (or JSON object) per batch size on stdout; the "
        "progress bar (terminals only) on stderr and erased before each result.\n\n"
        "examples:\n"
        "  vit-bench --model deit_s.vqm --batch 1,8 --threads 2\n"
        "  vit-bench --arch deit_small_patch16_224 --precision w8a8 --json");
    args.parse(argc, argv);
    if (args.has("--model") == args.has("--arch"))
      throw vqm::cli::UsageError("give exactly one of --model or --arch");
    std::string precision = args.get("--precision", "fp32");
    const std::map<std::string, int> kBits = {
        {"fp32", 0}, {"w8a8", 8}, {"w6a6", 6}, {"w4a4", 4}, {"mp4", 4}};
    if (!kBits.count(precision))
      throw vqm::cli::UsageError("--precision must be fp32, w8a8, w6a6, w4a4 or mp4");
    if (args.has("--model") && (precision != "fp32" || args.has("--save")))
      throw vqm::cli::UsageError(
          "--precision and --save apply to --arch; a --model runs as stored");
    const auto batches = parse_ints(args.get("--batch", "1,8"), "--batch");
    const int threads = args.get_int("--threads", 2, 1, 1024);
    const int min_runs = args.get_int("--runs", 5, 1, 1000000);
    const double min_time = args.get_double("--min-time", 3, 0, 3600);
    const double warmup = args.get_double("--warmup", 1, 0, 3600);

    std::shared_ptr<const vqm::VitModel> model;
    std::string name;
    int64_t file_bytes = 0;
    if (args.has("--model")) {
      model = vqm::app::load_model(args.get("--model"));
      name = args.get("--model");
      precision = precision_of(*model);
      struct stat st {};
      if (::stat(name.c_str(), &st) == 0) file_bytes = st.st_size;
    } else {
      const vqm::VitConfig cfg = vqm::arch_config(args.get("--arch"));
      auto bytes = vqm::make_random_vit(cfg, 0).to_bytes();
      if (precision != "fp32") {
        // Speed does not depend on the intervals, so the cheapest calibration will do: min/max
        // on a few random inputs (the same op set and kernels as a searched model).
        const auto fp32 = vqm::VqmFile::from_memory(bytes.data(), bytes.size());
        vqm::quant::CalibrationSet calib;
        calib.n = 4;
        calib.input.resize(static_cast<size_t>(calib.n) * cfg.input_size());
        std::mt19937 rng(2);
        std::normal_distribution<float> nd;
        for (auto &x : calib.input) x = nd(rng);
        vqm::quant::PtqOptions opt;
        opt.method = "minmax";
        opt.bits = kBits.at(precision);
        if (precision == "mp4") opt.mixed_avg_bits = 4;
        bytes = vqm::quant::quantize(fp32, calib, opt, nullptr).to_bytes();
      }
      file_bytes = static_cast<int64_t>(bytes.size());
      if (args.has("--save"))
        vqm::write_file_atomic(args.get("--save"), bytes.data(), bytes.size());
      model = vqm::VitModel::load(vqm::VqmFile::from_memory(bytes.data(), bytes.size()));
      name = cfg.arch.substr(0, cfg.arch.find("_patch"));
    }
    const auto &c = model->config();
    for (int batch : batches) {
      vqm::SessionOptions so;
      so.max_batch = batch;
      so.n_threads = threads;
      vqm::VitSession session(model, so);
      if (args.has("--verbose"))
        for (const auto &line : session.kernel_report())
          std::fprintf(stderr, "vit-bench: %s\n", line.c_str());
      std::vector<float> input(static_cast<size_t>(batch) * c.input_size());
      std::mt19937 rng(1);
      std::normal_distribution<float> nd;
      for (auto &x : input) x = nd(rng);
      std::vector<float> logits(static_cast<size_t>(batch) * c.n_outputs());
      vqm::app::ProgressBar bar("batch " + std::to_string(batch), "",
                                vqm::app::progress_wanted(args.has("--quiet")));
      const Timing t =
          time_runs(session, input.data(), batch, logits.data(), min_runs, min_time, warmup, &bar);
      bar.clear();
      const double ips = batch * 1000.0 / t.median_ms;
      const double rss = peak_rss_mb();
      if (args.has("--json")) {
        nlohmann::json j = {{"runtime", std::string("vqm ") + VQM_VERSION_STRING},
                            {"model", name},
                            {"precision", precision},
                            {"batch", batch},
                            {"threads", threads},
                            {"median_ms", t.median_ms},
                            {"p90_ms", t.p90_ms},
                            {"images_per_s", ips},
                            {"ms_per_image", t.median_ms / batch},
                            {"min_ms", t.min_ms},
                            {"runs", t.runs},
                            {"file_mb", static_cast<double>(file_bytes) / 1e6},
                            {"peak_rss_mb", rss},
                            {"isa", vqm::kernels::active_isa()}};
        std::printf("%s\n", j.dump().c_str());
      } else {
        std::printf(
            "%-22s %-5s batch %3d threads %d: median %8.2f ms  p90 %8.2f ms  %7.2f ms/image  %7.1f "
            "images/s (%d runs); file %.1f MB, peak RSS %.1f MB\n",
            name.c_str(), precision.c_str(), batch, threads, t.median_ms, t.p90_ms,
            t.median_ms / batch, ips, t.runs, static_cast<double>(file_bytes) / 1e6, rss);
      }
      if (args.has("--profile")) {
        // A second session: the clock reads must not touch the timed runs above.
        so.profile = true;
        vqm::VitSession prof(model, so);
        for (int i = 0; i < 2; ++i) prof.run(input.data(), batch, logits.data());  // warm-up
        prof.reset_profile();
        for (int i = 0; i < t.runs; ++i) prof.run(input.data(), batch, logits.data());
        print_profile(prof.profile(), batch);
      }
      std::fflush(stdout);
    }
    return 0;
  });
}
