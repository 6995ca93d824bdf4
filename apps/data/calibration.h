// The calibration set of the tools: a seeded choice of N images from idx files or an image
// folder, preprocessed exactly as the model expects.
#pragma once
#include <cstdint>
#include <string>

#include "quantizer/calibrate.h"

namespace vqm::app {

// `source` is a folder holding Fashion-MNIST-style idx files (the train split is used: never the
// evaluation set) or a folder searched recursively for .jpg/.jpeg/.png/.bmp images. Picks `n`
// images with a seeded shuffle. Throws vqm::Error naming the problem (no images, unreadable
// files, channel mismatch).
quant::CalibrationSet load_calibration(const std::string &source, int n, uint64_t seed,
                                       const VitModel &model);

}  // namespace vqm::app
