#include "golden_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "models/convert.h"
#include "runtime/io/image.h"
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

double cosine(const float *a, const float *b, int64_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < n; ++i) {
    ab += double{a[i]} * b[i];
    aa += double{a[i]} * a[i];
    bb += double{b[i]} * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

namespace {
std::vector<float> run_fp32(const std::shared_ptr<const VitModel> &model, const float *input,
                            int n) {
  SessionOptions so;
  so.max_batch = n;
  VitSession session(model, so);
  std::vector<float> out(static_cast<size_t>(n) * model->config().n_outputs());
  session.run(input, n, out.data());
  return out;
}
int64_t argmax(const float *x, int64_t n) {
  return std::max_element(x, x + n) - x;
}
}  // namespace

void expect_matches_family_reference(const std::shared_ptr<const VitModel> &model,
                                     const std::string &ref, const std::string &what) {
  const VitConfig &c = model->config();
  const std::vector<float> want = reference_tensor(ref, "output");
  const int64_t k = c.n_outputs();
  ASSERT_EQ(want.size(), static_cast<size_t>(4 * k));

  // Rows 2-3: the reference's own input tensors (noise), the forward alone.
  const std::vector<float> noise =
      run_fp32(model, reference_tensor(ref, "noise_pixel_values").data(), 2);
  const Diff d = compare(noise.data(), want.data() + 2 * k, static_cast<size_t>(2 * k));
  std::printf("[ measured ] %s: noise rows max abs diff %.3g, output scale %.3g\n", what.c_str(),
              d.max_abs, d.ref_scale);
  EXPECT_LE(d.max_abs, 1e-3 * std::max(1.0, d.ref_scale)) << what;

  // Rows 0-1: the photos through our decode and the checkpoint's own preprocessing.
  std::vector<float> photos(2 * c.input_size());
  const char *files[] = {"chelsea.png", "rocket.jpg"};
  for (int i = 0; i < 2; ++i)
    preprocess_image(decode_image_file(data_path(std::string("images/") + files[i]), 3),
                     model->preprocess(), photos.data() + i * c.input_size());
  const std::vector<float> got = run_fp32(model, photos.data(), 2);
  for (int i = 0; i < 2; ++i) {
    const float *g = got.data() + i * k, *w = want.data() + i * k;
    if (c.num_classes > 0) {
      const Diff p = compare(g, w, static_cast<size_t>(k));
      std::printf("[ measured ] %s: %s max abs diff %.3g (scale %.3g)\n", what.c_str(), files[i],
                  p.max_abs, p.ref_scale);
      EXPECT_EQ(argmax(g, k), argmax(w, k)) << what << " " << files[i];
    } else {
      const double cos = cosine(g, w, k);
      std::printf("[ measured ] %s: %s embedding cosine %.7f\n", what.c_str(), files[i], cos);
      EXPECT_GE(cos, 0.9999) << what << " " << files[i];
    }
  }
}

}  // namespace vqm::test
