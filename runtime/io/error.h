// Internal error type. C++ code inside vqm throws vqm::Error; the C boundary (c_api.cpp) turns
// it into a vqm_status plus a thread-local message, so no exception ever crosses into a caller.
#pragma once
#include <stdexcept>
#include <string>

namespace vqm {

// Mirrors vqm_status in include/vqm/vqm.h (same numeric values) so the C layer can cast.
enum class ErrorCode : int {
  invalid_argument = 1,  // caller passed something unusable (NULL, bad size, bad flag)
  io = 2,                // file missing, unreadable, short read, cannot write/rename
  format = 3,            // bytes are not a valid .vqm / safetensors / image / idx
  unsupported = 4,       // valid but not something vqm can run (dtype, geometry)
  out_of_memory = 5,
  limit = 6,             // a size exceeds a documented limit (checked before allocating)
  buffer_too_small = 7,  // caller's output buffer cannot hold the result
  internal = 8,          // a bug or a backend failure (oneDNN)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string &message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] inline void fail(ErrorCode code, const std::string &message) {
  throw Error(code, message);
}

}  // namespace vqm
