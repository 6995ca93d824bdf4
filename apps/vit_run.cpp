// vit-run --model M.vqm IMG...: classify images, print the top-K classes with probabilities.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "apps/app_common.h"
#include "apps/cli.h"
#include "runtime/io/error.h"
#include "runtime/io/image.h"

int main(int argc, char **argv) {
  return vqm::cli::run_tool("vit-run", [&] {
    vqm::cli::Args args("vit-run", "--model M.vqm IMAGE... [options]",
                        {{"--model", "M.vqm", "model file (from vit-convert or vit-quantize)"},
                         {"--top", "K", "classes to print per image (default 5)"},
                         {"--json", "", "print one JSON object per image instead of text"},
                         {"--threads", "N", "OpenMP threads (default: all cores)"},
                         {"--batch", "N", "images per forward pass (default 1)"}},
                        "Classifies images (JPEG, PNG, BMP) with timm's eval preprocessing and "
                        "prints the top-K classes of each on stdout, as text or one JSON object "
                        "per image. An unreadable image is reported on stderr and skipped (exit "
                        "status 1 at the end).\n\n"
                        "examples:\n"
                        "  vit-run --model deit_s.vqm cat.jpg dog.png\n"
                        "  vit-run --model fmnist.vqm --top 3 --json shoe.png");
    args.parse(argc, argv);
    if (!args.has("--model")) throw vqm::cli::UsageError("missing --model M.vqm");
    if (args.positional().empty()) throw vqm::cli::UsageError("no image files given");
    const int top = args.get_int("--top", 5, 1, 1000000);
    const int batch = args.get_int("--batch", 1, 1, 256);
    vqm::SessionOptions so;
    so.n_threads = args.get_int("--threads", 0, 1, 1024);
    so.max_batch = batch;

    const auto model = vqm::app::load_model(args.get("--model"));
    vqm::VitSession session(model, so);
    const auto &c = model->config();
    const auto &images = args.positional();
    std::vector<float> input(static_cast<size_t>(batch * c.input_size()));
    std::vector<float> logits(static_cast<size_t>(batch) * c.num_classes);
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
      session.run(input.data(), static_cast<int64_t>(names.size()), logits.data());
      for (size_t i = 0; i < names.size(); ++i) {
        const float *row = logits.data() + i * c.num_classes;
        const auto prob = vqm::app::softmax(row, c.num_classes);
        const auto best = vqm::app::top_k(row, c.num_classes, top);
        if (args.has("--json")) {
          nlohmann::json j = {{"image", names[i]}, {"top", nlohmann::json::array()}};
          for (int k : best)
            j["top"].push_back({{"class", k},
                                {"label", model->labels()[k]},
                                {"prob", prob[k]},
                                {"logit", row[k]}});
          std::printf("%s\n", j.dump().c_str());
        } else {
          std::printf("%s\n", names[i].c_str());
          for (int k : best)
            std::printf("  %6.2f%%  %4d  %s\n", 100.0 * prob[k], k, model->labels()[k].c_str());
        }
      }
    }
    return failures ? 1 : 0;
  });
}
