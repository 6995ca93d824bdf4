// Small helpers the checkpoint layout mappings share (convert*.cpp). Internal to models/.
#pragma once
#include <cstddef>
#include <string>

#include "runtime/io/tensor.h"

namespace vqm::convert_util {

inline bool starts_with(const std::string &s, const std::string &prefix) {
  return s.rfind(prefix, 0) == 0;
}

// Dimension i of a tensor's shape, or -1 when the tensor has fewer dimensions (so that a shape
// check reports the mismatch instead of throwing on the index).
inline int dim(const TensorInfo &t, size_t i) {
  return i < t.shape.size() ? static_cast<int>(t.shape[i]) : -1;
}

}  // namespace vqm::convert_util
