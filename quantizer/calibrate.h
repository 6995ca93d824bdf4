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
struct StopAt {
  Tap tap;
  int block;
};
void run_calibration(
    const VitModel &model, const CalibrationSet &calib, int max_batch,
    const std::function<void(const TapEvent &, int first_image, int batch)> &on_tap,
    const StopAt *stop_after = nullptr);

}  // namespace vqm::quant
