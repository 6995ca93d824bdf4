// The fuzz targets: each feeds arbitrary bytes to one path that reads untrusted input. A target
// returns `accepted` or `rejected` (vqm threw vqm::Error, the one sanctioned way to refuse
// input). Every other outcome is a bug the fuzzer reports: another exception type escaping, a
// crash, a sanitizer report, a timeout, or a broken invariant (VQM_FUZZ_CHECK aborts).
//
// The same functions run in three places: the libFuzzer binaries (fuzz_main.cpp, clang builds
// with -DVQM_FUZZ=ON), the replay of seeds and saved crash inputs in tests/robust (every build),
// and scripts/fuzz.sh, which drives the binaries.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vqm::fuzz {

enum class Outcome { accepted, rejected };

// .vqm bytes -> VqmFile::from_memory, a writer round trip, VitModel::load and, for tiny
// geometries, a session and one forward (fp32, simulated or integer).
Outcome run_vqm(const uint8_t *data, size_t size);
// safetensors bytes -> SafetensorsFile::from_memory, then convert_timm and a reload of its output.
Outcome run_safetensors(const uint8_t *data, size_t size);
// One option byte (channels, interpolation, resize/crop) then image bytes -> decode + preprocess.
Outcome run_image(const uint8_t *data, size_t size);
// JSON text [NUL data bytes] wrapped into a valid .vqm header, then everything run_vqm does:
// mutations land in the document (model config, preprocess, labels, quantization, tensors).
Outcome run_config(const uint8_t *data, size_t size);
// One selector byte (images or labels) then idx bytes, plain or gzip -> load_idx_*.
Outcome run_idx(const uint8_t *data, size_t size);
// .pth bytes (torch.save zip) -> PthFile::from_memory, every tensor byte read, sizes and names
// consistent.
Outcome run_pth(const uint8_t *data, size_t size);

struct Target {
  const char *name;  // also the folder name of its seeds and saved crash inputs
  Outcome (*run)(const uint8_t *, size_t);
};
const std::vector<Target> &targets();

// run_config's input for a .vqm file: its JSON text, a NUL, its data section; and back: the
// .vqm with a valid header around such an input.
std::vector<uint8_t> config_input_from_vqm(const std::vector<uint8_t> &vqm);
std::vector<uint8_t> vqm_from_config_input(const uint8_t *data, size_t size);

}  // namespace vqm::fuzz

// Aborts (a crash libFuzzer saves as a reproducer) when an invariant does not hold.
#define VQM_FUZZ_CHECK(cond)                                           \
  do {                                                                 \
    if (!(cond)) ::vqm::fuzz::check_failed(#cond, __FILE__, __LINE__); \
  } while (0)

namespace vqm::fuzz {
[[noreturn]] void check_failed(const char *cond, const char *file, int line);
}  // namespace vqm::fuzz
