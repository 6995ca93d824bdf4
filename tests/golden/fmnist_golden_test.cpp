// The Fashion-MNIST DeiT-Tiny against PyTorch: intermediate activations of the first 4 images and
// the logits of all 10,000 t10k images (reference computed by PyTorch fp32 on CPU).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "apps/data/idx.h"
#include "golden_util.h"
#include "runtime/io/image.h"
#include "runtime/io/safetensors.h"
#include "test_util.h"

namespace vqm::test {
namespace {

const char *kRef = "reference/fmnist_deit_tiny.ref.safetensors";

class FmnistGolden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = convert_fixture("fmnist_deit_tiny"); }
  static void TearDownTestSuite() { model_.reset(); }
  static std::shared_ptr<const VitModel> model_;
};
std::shared_ptr<const VitModel> FmnistGolden::model_;

TEST_F(FmnistGolden, IntermediateActivationsOfFirstFourImages) {
  const auto input = reference_tensor(kRef, "input_first4");
  SessionOptions so;
  so.max_batch = 4;
  VitSession session(model_, so);
  std::vector<float> embed, block0, block11, attn0, prelogits;
  TapFn taps = [&](const TapEvent &e) {
    std::vector<float> v(e.data, e.data + e.rows * e.cols);
    if (e.tap == Tap::embed) embed = v;
    if (e.tap == Tap::block_out && e.block == 0) block0 = v;
    if (e.tap == Tap::block_out && e.block == 11) block11 = v;
    if (e.tap == Tap::attn_probs && e.block == 0) attn0 = v;
    if (e.tap == Tap::prelogits) prelogits = v;
  };
  std::vector<float> logits(40);
  session.run(input.data(), 4, logits.data(), &taps);

  // Tolerances: fp32 with different summation orders (oneDNN blocking vs PyTorch's MKL/OpenBLAS)
  // gives ~1e-6 relative error per op; 12 blocks of residual stream grow it to ~1e-5 relative.
  // We assert 1e-4 of each tensor's own scale (max |ref|), and state the measured values.
  struct Case {
    const char *name;
    const std::vector<float> &ours;
  } cases[] = {{"embed_first4", embed},
               {"block0_first4", block0},
               {"block11_first4", block11},
               {"attn0_first4", attn0},
               {"prelogits_first4", prelogits}};
  for (const auto &c : cases) {
    const auto ref = reference_tensor(kRef, c.name);
    ASSERT_EQ(c.ours.size(), ref.size()) << c.name;
    const Diff d = compare(c.ours.data(), ref.data(), ref.size());
    EXPECT_LE(d.max_abs, 1e-4 * d.ref_scale)
        << c.name << ": max abs diff " << d.max_abs << ", scale " << d.ref_scale;
    std::printf("[ measured ] %-18s max abs diff %.3g (scale %.3g)\n", c.name, d.max_abs,
                d.ref_scale);
  }
  const auto ref_logits = reference_tensor(kRef, "logits");
  const Diff d = compare(logits.data(), ref_logits.data(), 40);
  EXPECT_LE(d.max_abs, 1e-3);
}

// All 10,000 t10k images against PyTorch. Sanitizer builds check the first 1,000 (the same
// comparisons, a tenth of the time; test::workload).
TEST_F(FmnistGolden, AllTestLogitsAndTop1) {
  const auto images = load_idx_images(find_idx_file(fmnist_dir(), "t10k", "images"));
  const auto labels = load_idx_labels(find_idx_file(fmnist_dir(), "t10k", "labels"));
  ASSERT_EQ(images.count, 10000);
  const auto ref = reference_tensor(kRef, "logits");
  const auto ref_file = SafetensorsFile::from_file(data_path(kRef));  // owns the bytes
  const TensorInfo &ref_labels = ref_file.get("labels");
  ASSERT_EQ(ref.size(), 100000u);

  const int batch = 64;
  SessionOptions so;
  so.max_batch = batch;
  VitSession session(model_, so);
  const size_t pixels = 28 * 28;
  const int n = workload(10000, 1000);
  std::vector<float> input(batch * pixels), logits(static_cast<size_t>(n) * 10);
  for (int start = 0; start < n; start += batch) {
    const int count = std::min(batch, n - start);
    for (int i = 0; i < count; ++i) {
      Image img;
      img.width = img.height = 28;
      img.channels = 1;
      img.pixels.assign(images.pixels.begin() + (start + i) * pixels,
                        images.pixels.begin() + (start + i + 1) * pixels);
      preprocess_image(img, model_->preprocess(), input.data() + i * pixels);
    }
    session.run(input.data(), count, logits.data() + start * 10);
  }
  const Diff d = compare(logits.data(), ref.data(), logits.size());
  std::printf("[ measured ] t10k logits (%d images) max abs diff %.3g (scale %.3g)\n", n, d.max_abs,
              d.ref_scale);
  EXPECT_LE(d.max_abs, 1e-3);

  // top-1 exactly as the reference computes it (argmax of logits vs label), and the same
  // predictions as PyTorch's own logits.
  int correct = 0, agree = 0, ref_correct = 0;
  for (int i = 0; i < n; ++i) {
    int ours = 0, theirs = 0;
    for (int k = 1; k < 10; ++k) {
      if (logits[i * 10 + k] > logits[i * 10 + ours]) ours = k;
      if (ref[i * 10 + k] > ref[i * 10 + theirs]) theirs = k;
    }
    int64_t label;
    std::memcpy(&label, ref_labels.data + 8 * i, 8);
    ASSERT_EQ(label, labels[i]) << "reference labels differ from the idx file at " << i;
    correct += ours == labels[i];
    ref_correct += theirs == labels[i];
    agree += ours == theirs;
  }
  EXPECT_EQ(correct, ref_correct);
  if (n == 10000) {
    EXPECT_EQ(correct, 9048);
  }
  EXPECT_EQ(agree, n);
}

}  // namespace
}  // namespace vqm::test
