#include "quantizer/calibrate.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "runtime/dataset.h"
#include "runtime/error.h"
#include "runtime/image.h"

namespace vqm::quant {

namespace {

std::vector<int> seeded_choice(int population, int n, uint64_t seed) {
  std::vector<int> idx(static_cast<size_t>(population));
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(idx.begin(), idx.end(), rng);
  idx.resize(static_cast<size_t>(std::min(n, population)));
  return idx;
}

// struct used to mark the early end of a calibration forward.
struct StopForward {};

}  // namespace

CalibrationSet load_calibration(const std::string &source, int n, uint64_t seed,
                                const VitModel &model) {
  if (n < 1)
    fail(ErrorCode::invalid_argument,
         "calibration needs at least 1 image, got " + std::to_string(n));
  const VitConfig &c = model.config();
  DatasetOptions dopt;
  dopt.split = "train";  // never the evaluation split
  dopt.need_labels = false;
  const Dataset data = Dataset::open(source, dopt);
  CalibrationSet set;
  set.description = {{"source", source}, {"seed", seed}};
  const auto chosen = seeded_choice(data.size(), n, seed);
  set.n = static_cast<int>(chosen.size());
  set.input.resize(static_cast<size_t>(set.n) * c.input_size());
  std::vector<std::string> used;
  for (int i = 0; i < set.n; ++i) {
    preprocess_image(data.image(chosen[i], c.in_chans), model.preprocess(),
                     set.input.data() + i * c.input_size());
    used.push_back(data.item_name(chosen[i]));
  }
  if (data.is_idx()) {
    set.description["kind"] = "idx";
    set.description["split"] = "train";
    set.description["indices"] = chosen;
  } else {
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
