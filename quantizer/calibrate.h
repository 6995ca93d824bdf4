// Calibration data (preprocessed images; the tools load them: apps/data/calibration.h) and the
// capture of activations at the forward's taps (the same forward the runtime uses).
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/engine/vit.h"

namespace vqm::quant {

struct CalibrationSet {
  std::vector<float> input;  // n * model input size, NCHW
  int n = 0;
  nlohmann::json description;  // source, split, indices / files, seed: stored in the .vqm
};

// Runs the calibration images through `model` (max_batch images at a time) and calls `on_tap`
// for every tap event with the batch offset of the event's first image. When `stop_after` is
// given, the forward of each batch stops once that tap has been delivered, which saves the rest
// of the network in sequential calibration.
// When `start` is given, the forward begins at block start->block from the residual stream
// start->x of every calibration image (VitSession::run_from), which saves the blocks before it.
struct StopAt {
  Tap tap;
  int block;
};
struct StartAt {
  int block;
  const std::vector<float> *x;  // calib.n x tokens x embed_dim, in image order
};
void run_calibration(
    const VitModel &model, const CalibrationSet &calib, int max_batch,
    const std::function<void(const TapEvent &, int first_image, int batch)> &on_tap,
    const StopAt *stop_after = nullptr, const StartAt *start = nullptr);

}  // namespace vqm::quant
