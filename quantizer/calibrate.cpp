#include "quantizer/calibrate.h"

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>

#include "runtime/error.h"
#include "runtime/idx.h"
#include "runtime/image.h"

namespace vqm::quant {

namespace fs = std::filesystem;

namespace {

std::vector<int> seeded_choice(int population, int n, uint64_t seed) {
  std::vector<int> idx(static_cast<size_t>(population));
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(idx.begin(), idx.end(), rng);
  idx.resize(static_cast<size_t>(std::min(n, population)));
  return idx;
}

bool is_image_file(const fs::path &p) {
  std::string ext = p.extension().string();
  for (char &c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

bool has_idx(const std::string &dir) {
  for (const char *name : {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"})
    if (fs::exists(fs::path(dir) / name)) return true;
  return false;
}

// struct used to mark the early end of a calibration forward.
struct StopForward {};

}  // namespace

CalibrationSet load_calibration(const std::string &source, int n, uint64_t seed,
                                const VitModel &model) {
  if (n < 1)
    fail(ErrorCode::invalid_argument,
         "calibration needs at least 1 image, got " + std::to_string(n));
  std::error_code ec;
  if (!fs::exists(source, ec))
    fail(ErrorCode::io, "calibration source '" + source + "' does not exist");
  if (!fs::is_directory(source, ec))
    fail(ErrorCode::invalid_argument, "calibration source '" + source + "' is not a folder");
  const VitConfig &c = model.config();
  CalibrationSet set;
  set.description = {{"source", source}, {"seed", seed}};

  if (has_idx(source)) {
    const auto images = load_idx_images(find_idx_file(source, "train", "images"));
    if (c.in_chans != 1)
      fail(ErrorCode::unsupported, "idx images are grayscale but the model takes " +
                                       std::to_string(c.in_chans) + " channels");
    const auto chosen = seeded_choice(images.count, n, seed);
    set.n = static_cast<int>(chosen.size());
    set.input.resize(static_cast<size_t>(set.n) * c.input_size());
    const size_t pixels = static_cast<size_t>(images.rows) * images.cols;
    for (int i = 0; i < set.n; ++i) {
      Image img;
      img.width = images.cols;
      img.height = images.rows;
      img.channels = 1;
      img.pixels.assign(images.pixels.begin() + chosen[i] * pixels,
                        images.pixels.begin() + (chosen[i] + 1) * pixels);
      preprocess_image(img, model.preprocess(), set.input.data() + i * c.input_size());
    }
    set.description["kind"] = "idx";
    set.description["split"] = "train";
    set.description["indices"] = chosen;
  } else {
    std::vector<std::string> files;
    for (auto it = fs::recursive_directory_iterator(
             source, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
      if (it->is_regular_file(ec) && is_image_file(it->path()))
        files.push_back(it->path().string());
    if (files.empty())
      fail(ErrorCode::invalid_argument,
           "calibration folder '" + source +
               "' holds no .jpg/.jpeg/.png/.bmp images (and no train-images-idx3-ubyte)");
    std::sort(files.begin(), files.end());  // directory order is not stable across file systems
    const auto chosen = seeded_choice(static_cast<int>(files.size()), n, seed);
    set.n = static_cast<int>(chosen.size());
    set.input.resize(static_cast<size_t>(set.n) * c.input_size());
    std::vector<std::string> used;
    for (int i = 0; i < set.n; ++i) {
      const std::string &f = files[chosen[i]];
      preprocess_image(decode_image_file(f, c.in_chans), model.preprocess(),
                       set.input.data() + i * c.input_size());
      used.push_back(fs::relative(f, source, ec).string());
    }
    set.description["kind"] = "folder";
    set.description["files"] = used;
  }
  set.description["n"] = set.n;
  return set;
}

void run_calibration(const VitModel &model, const CalibrationSet &calib, int max_batch,
                     const std::function<void(const TapEvent &, int, int)> &on_tap,
                     const StopAt *stop_after) {
  // The session is created from the model as it is now, so quantization decided so far applies.
  std::shared_ptr<const VitModel> view(std::shared_ptr<const VitModel>{}, &model);  // non-owning
  SessionOptions so;
  so.max_batch = std::max(1, std::min(max_batch, calib.n));
  so.simulate = true;  // the model being quantized holds fp32 (fake-quant) weights, no integers
  VitSession session(view, so);
  std::vector<float> logits(static_cast<size_t>(so.max_batch) * model.config().num_classes);
  const int64_t size = model.config().input_size();
  for (int start = 0, count = 0; start < calib.n; start += count) {
    // Chunks must be batch sizes the session planned (max_batch or a power of two), so that one
    // run() is one forward and stopping it early skips nothing that is still needed.
    const int remaining = calib.n - start;
    count = so.max_batch;
    if (count > remaining) {
      count = 1;
      while (count * 2 <= remaining) count *= 2;
    }
    TapFn fn = [&](const TapEvent &e) {
      on_tap(e, start, count);
      if (stop_after && e.tap == stop_after->tap && e.block == stop_after->block)
        throw StopForward{};
    };
    try {
      session.run(calib.input.data() + start * size, count, logits.data(), &fn);
    } catch (const StopForward &) {
    }
  }
}

}  // namespace vqm::quant
