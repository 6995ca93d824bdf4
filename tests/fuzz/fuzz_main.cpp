// libFuzzer entry point of one target; VQM_FUZZ_TARGET is the function of fuzz_targets.h the
// binary fuzzes (set per binary in tests/CMakeLists.txt). scripts/fuzz.sh runs them.
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vqm::fuzz::VQM_FUZZ_TARGET(data, size);
  return 0;
}
