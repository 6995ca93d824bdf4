// Calibration data: a seeded choice of N images, preprocessed exactly as the model expects, and
// the capture of activations at the forward's taps (the same forward the runtime uses).
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/vit.h"

namespace vqm::quant {

struct CalibrationSet {
  std::vector<float> input;  // n * model input size, NCHW
  int n = 0;
  nlohmann::json description;  // source, split, indices / files, seed: stored in the .vqm
};

// `source` is a folder holding Fashion-MNIST-style idx files (the train split is used: never the
// evaluation set) or a folder searched recursively for .jpg/.jpeg/.png/.bmp images. Picks `n`
// images with a seeded shuffle. Throws vqm::Error naming the problem (no images, unreadable
// files, channel mismatch).
CalibrationSet load_calibration(const std::string &source, int n, uint64_t seed,
                                const VitModel &model);

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
