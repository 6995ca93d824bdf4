#include "golden_util.h"

#include <algorithm>
#include <cmath>

#include "models/convert.h"
#include "runtime/io/safetensors.h"
#include "test_util.h"

namespace vqm::test {

std::shared_ptr<const VitModel> convert_fixture(const std::string &name,
                                                const std::string &preset) {
  const auto st = SafetensorsFile::from_file(data_path("models/" + name + ".safetensors"));
  ConvertOptions opt;
  opt.preset = preset;
  const auto bytes = convert_timm(st, opt).to_bytes();
  return VitModel::load(VqmFile::from_memory(bytes.data(), bytes.size()));
}

std::vector<float> reference_tensor(const std::string &file, const std::string &tensor) {
  const auto st = SafetensorsFile::from_file(data_path(file));
  return to_f32(st.get(tensor));
}

Diff compare(const float *a, const float *b, size_t n) {
  Diff d;
  for (size_t i = 0; i < n; ++i) {
    d.max_abs = std::max(d.max_abs, static_cast<double>(std::fabs(a[i] - b[i])));
    d.ref_scale = std::max(d.ref_scale, static_cast<double>(std::fabs(b[i])));
  }
  return d;
}

}  // namespace vqm::test
