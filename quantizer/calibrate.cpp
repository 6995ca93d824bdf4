#include "quantizer/calibrate.h"

#include <algorithm>

#include "runtime/io/error.h"

namespace vqm::quant {

namespace {

// struct used to mark the early end of a calibration forward.
struct StopForward {};

}  // namespace

void run_calibration(const VitModel &model, const CalibrationSet &calib, int max_batch,
                     const std::function<void(const TapEvent &, int, int)> &on_tap,
                     const StopAt *stop_after, const StartAt *start_at) {
  // The session is created from the model as it is now, so quantization decided so far applies.
  std::shared_ptr<const VitModel> view(std::shared_ptr<const VitModel>{}, &model);  // non-owning
  SessionOptions so;
  so.max_batch = std::max(1, std::min(max_batch, calib.n));
  so.simulate = true;  // the model being quantized holds fp32 (fake-quant) weights, no integers
  VitSession session(view, so);
  std::vector<float> logits(static_cast<size_t>(so.max_batch) * model.config().n_outputs());
  const VitConfig &cfg = model.config();
  const int64_t size = cfg.input_size(), x_size = cfg.tokens() * cfg.embed_dim;
  if (start_at && start_at->x->size() != static_cast<size_t>(calib.n * x_size))
    fail(ErrorCode::internal, "run_calibration: the start's residual stream has the wrong size");
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
      if (start_at)
        session.run_from(start_at->block, start_at->x->data() + start * x_size, count,
                         logits.data(), &fn);
      else
        session.run(calib.input.data() + start * size, count, logits.data(), &fn);
    } catch (const StopForward &) {
    }
  }
}

}  // namespace vqm::quant
