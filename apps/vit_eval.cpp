// vit-eval --model M.vqm [--data DIR]: top-1/top-5 on the Fashion-MNIST t10k idx files.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "apps/app_common.h"
#include "apps/cli.h"
#include "runtime/error.h"
#include "runtime/format.h"
#include "runtime/idx.h"
#include "runtime/image.h"

int main(int argc, char **argv) {
  return vqm::cli::run_tool("vit-eval", [&] {
    vqm::cli::Args args(
        "vit-eval", "--model M.vqm [--data DIR] [options]",
        {{"--model", "M.vqm", "model file"},
         {"--data", "DIR",
          "folder with t10k-images-idx3-ubyte[.gz] and labels "
          "(default /usr/share/datasets/fashion-mnist)"},
         {"--split", "NAME", "t10k (default) or train"},
         {"--limit", "N", "evaluate only the first N images"},
         {"--batch", "N", "images per forward pass (default 32)"},
         {"--threads", "N", "OpenMP threads (default: all cores)"},
         {"--json", "", "print one JSON object: top1, top5, n, seconds"},
         {"--dump-logits", "FILE", "write N x C float32 little-endian logits, file order"}});
    args.parse(argc, argv);
    if (!args.has("--model")) throw vqm::cli::UsageError("missing --model M.vqm");
    if (!args.positional().empty())
      throw vqm::cli::UsageError("unexpected argument '" + args.positional()[0] + "'");
    const std::string dir = args.get("--data", "/usr/share/datasets/fashion-mnist");
    const std::string split = args.get("--split", "t10k");
    if (split != "t10k" && split != "train")
      throw vqm::cli::UsageError("--split must be t10k or train");
    const int batch = args.get_int("--batch", 32, 1, 1024);
    vqm::SessionOptions so;
    so.n_threads = args.get_int("--threads", 0, 1, 1024);
    so.max_batch = batch;

    const auto model = vqm::app::load_model(args.get("--model"));
    const auto &c = model->config();
    const auto images = vqm::load_idx_images(vqm::find_idx_file(dir, split, "images"));
    const auto labels = vqm::load_idx_labels(vqm::find_idx_file(dir, split, "labels"));
    if (labels.size() != static_cast<size_t>(images.count))
      throw vqm::Error(vqm::ErrorCode::format, std::to_string(images.count) + " images but " +
                                                   std::to_string(labels.size()) + " labels in " +
                                                   dir);
    if (c.in_chans != 1)
      throw vqm::Error(vqm::ErrorCode::unsupported,
                       "the idx data set is grayscale but the model takes " +
                           std::to_string(c.in_chans) + " channels");
    const int n = std::min(images.count, args.get_int("--limit", images.count, 1, 1 << 30));

    vqm::VitSession session(model, so);
    std::vector<float> input(static_cast<size_t>(batch) * c.input_size());
    std::vector<float> logits(static_cast<size_t>(n) * c.num_classes);
    const size_t pixels = static_cast<size_t>(images.rows) * images.cols;
    const auto t0 = std::chrono::steady_clock::now();
    for (int start = 0; start < n; start += batch) {
      const int count = std::min(batch, n - start);
      for (int i = 0; i < count; ++i) {
        vqm::Image img;
        img.width = images.cols;
        img.height = images.rows;
        img.channels = 1;
        img.pixels.assign(images.pixels.begin() + (start + i) * pixels,
                          images.pixels.begin() + (start + i + 1) * pixels);
        vqm::preprocess_image(img, model->preprocess(), input.data() + i * c.input_size());
      }
      session.run(input.data(), count, logits.data() + static_cast<size_t>(start) * c.num_classes);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int top1 = 0, top5 = 0;
    for (int i = 0; i < n; ++i) {
      const auto best =
          vqm::app::top_k(logits.data() + static_cast<size_t>(i) * c.num_classes, c.num_classes, 5);
      top1 += best[0] == labels[i];
      for (int k : best) top5 += k == labels[i];
    }
    if (args.has("--dump-logits")) {
      static_assert(sizeof(float) == 4, "float32 logits");
      vqm::write_file_atomic(args.get("--dump-logits"), logits.data(),
                             logits.size() * sizeof(float));
    }
    if (args.has("--json")) {
      nlohmann::json j = {{"model", args.get("--model")}, {"n", n},
                          {"top1", double(top1) / n},     {"top5", double(top5) / n},
                          {"seconds", seconds},           {"images_per_s", n / seconds}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("%s on %s/%s: n=%d top-1 %.4f top-5 %.4f (%.1f s, %.1f images/s)\n",
                  args.get("--model").c_str(), dir.c_str(), split.c_str(), n, double(top1) / n,
                  double(top5) / n, seconds, n / seconds);
    }
    return 0;
  });
}
