// Hard limits checked on untrusted input *before* any allocation, so a hostile header cannot make
// vqm allocate gigabytes or loop for hours. Each error message names the limit it hit.
#pragma once
#include <cstdint>

namespace vqm {

struct Limits {
  uint64_t max_file_bytes = uint64_t{8} << 30;    // 8 GiB: DeiT-B fp32 is 350 MB
  uint64_t max_json_bytes = uint64_t{64} << 20;   // header JSON of a .vqm / safetensors
  uint64_t max_tensor_bytes = uint64_t{4} << 30;  // one tensor
  uint32_t max_tensors = 100000;
  uint32_t max_rank = 8;
  int64_t max_dim = int64_t{1} << 31;              // one dimension
  uint32_t max_image_side = 16384;                 // decoded image width or height (pixels)
  uint64_t max_image_pixels = uint64_t{64} << 20;  // width * height
  // Activation memory of one session (its geometry comes from the model file): DeiT-B/384 with
  // max_batch 256 needs about 10 GB.
  uint64_t max_session_bytes = uint64_t{16} << 30;
};

inline const Limits &default_limits() {
  static const Limits limits;
  return limits;
}

}  // namespace vqm
