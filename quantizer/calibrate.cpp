#include "quantizer/calibrate.h"

#include <algorithm>

namespace vqm::quant {

namespace {

// struct used to mark the early end of a calibration forward.
struct StopForward {};

}  // namespace

void run_calibration(const VitModel &model, const CalibrationSet &calib, int max_batch,
                     const std::function<void(const TapEvent &, int, int)> &on_tap,
                     const StopAt *stop_after) {
  // The session is created from the model as it is now, so quantization decided so far applies.
  std::shared_ptr<const VitModel> view(std::shared_ptr<const VitModel>{}, &model);  // non-owning
  SessionOptions so;
  so.max_batch = std::max(1, std::min(max_batch, calib.n));
  so.simulate = true;  // the model being quantized holds fp32 (fake-quant) weights, no integers
  VitSession session(view, so);
  std::vector<float> logits(static_cast<size_t>(so.max_batch) * model.config().n_outputs());
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
