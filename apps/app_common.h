// Pieces the vqm tools share beyond flag parsing: loading a model into a session, softmax/top-k
// of logits, JSON string escaping through nlohmann.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/engine/vit.h"

namespace vqm::app {

std::shared_ptr<const VitModel> load_model(const std::string &path);

// Indices of the k largest values, largest first (ties: lower index first).
std::vector<int> top_k(const float *values, int n, int k);
// Numerically stable softmax of one row.
std::vector<float> softmax(const float *logits, int n);

}  // namespace vqm::app
