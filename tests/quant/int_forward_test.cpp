// The integer forward splits a batch's token rows into one chunk per thread, cutting images where
// the chunk boundaries fall (int_engine.cpp). Every split must give the logits of one thread doing
// all rows, bit for bit: the kernels are row-wise and oneDNN's integer accumulation is exact, so
// any difference is a chunk or segment reading or writing the wrong rows.
#include <gtest/gtest.h>

#include <omp.h>

#include <cstring>

#include "apps/data/calibration.h"
#include "models/convert.h"
#include "quantizer/ptq.h"
#include "test_util.h"

namespace vqm::test {
namespace {

constexpr int kImages = 7, kClasses = 10;

struct Fixture {
  std::shared_ptr<const VitModel> fp32, quantized;
  std::vector<float> inputs;  // kImages preprocessed t10k images
};

const Fixture &fixture() {
  static const Fixture f = [] {
    Fixture f;
    const auto st = SafetensorsFile::from_file(data_path("models/fmnist_deit_tiny.safetensors"));
    const std::vector<uint8_t> fp32_bytes = convert_timm(st, {}).to_bytes();
    const VqmFile fp32_file = VqmFile::from_memory(fp32_bytes.data(), fp32_bytes.size());
    f.fp32 = VitModel::load(fp32_file);
    const auto calib = app::load_calibration(fmnist_dir(), 4, 0, *f.fp32);
    quant::PtqOptions opt;
    opt.method = "minmax";  // the intervals do not matter here, only that the model is quantized
    opt.bits = 6;
    const auto q_bytes = quant::quantize(fp32_file, calib, opt, nullptr).to_bytes();
    f.quantized = VitModel::load(VqmFile::from_memory(q_bytes.data(), q_bytes.size()));
    f.inputs = fmnist_t10k_inputs(*f.fp32, kImages);
    return f;
  }();
  return f;
}

std::vector<float> logits(const std::shared_ptr<const VitModel> &model, int threads,
                          int max_batch) {
  SessionOptions so;
  so.n_threads = threads;
  so.max_batch = max_batch;
  VitSession s(model, so);
  std::vector<float> out(kImages * kClasses);
  s.run(fixture().inputs.data(), kImages, out.data());
  return out;
}

TEST(IntegerForward, ThreadAndBatchSplitsGiveOneThreadsLogits) {
  const auto &model = fixture().quantized;
  ASSERT_NE(model->quant(), nullptr);
  const std::vector<float> want = logits(model, 1, 1);
  // 50 tokens per image. 2 threads at batch 1 halve each image (25 + 25 rows); 3 threads at
  // batch 4 cut 200 rows into 66 + 67 + 67, so chunks hold the tail of one image and the head of
  // the next; max_batch 4 runs the 7 images as 4 + 2 + 1 (three plans); 5 threads at batch 2 give
  // chunks of 20 rows, some inside one image, some across two.
  for (const auto &[threads, max_batch] :
       {std::pair{2, 1}, std::pair{2, 4}, std::pair{3, 4}, std::pair{5, 2}, std::pair{1, 8}}) {
    const std::vector<float> got = logits(model, threads, max_batch);
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
        << threads << " threads, max_batch " << max_batch;
  }
}

// A host application may call vqm from its own OpenMP threads. OpenMP does not nest by default,
// so a session created and run inside the caller's parallel region runs on one thread, whatever
// n_threads says, and must still compute every row (oneDNN primitives planned for two threads but
// run on one would not).
TEST(IntegerForward, SessionsInsideTheCallersParallelRegionGiveTheSameLogits) {
  for (const auto &model : {fixture().fp32, fixture().quantized}) {
    const std::vector<float> want = logits(model, 1, 4);
    std::vector<std::vector<float>> got(2);
#pragma omp parallel num_threads(2)
    got[omp_get_thread_num()] = logits(model, 2, 4);
    for (const auto &g : got)
      EXPECT_EQ(std::memcmp(g.data(), want.data(), want.size() * sizeof(float)), 0)
          << (model->quant() ? "integer" : "fp32");
  }
}

// An application that embeds libvqm keeps its own OpenMP settings: a session runs with its own
// n_threads (seen from inside the run, at a tap) but leaves the caller's omp_get_max_threads()
// as it was, after creation and after every run, for both engines. The caller's count (3) is
// one no session uses, so a leak of either session's count would show.
TEST(IntegerForward, SessionsLeaveTheCallersOpenMpThreadCountAlone) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(3);
  for (const auto &model : {fixture().fp32, fixture().quantized}) {
    for (int threads : {1, 2}) {
      SessionOptions so;
      so.n_threads = threads;
      so.max_batch = 4;
      VitSession s(model, so);
      EXPECT_EQ(omp_get_max_threads(), 3) << "after creating a session of " << threads;
      int seen = -1;
      const TapFn tap = [&](const TapEvent &e) {
        if (e.tap == Tap::prelogits) seen = omp_get_max_threads();
      };
      std::vector<float> out(kImages * kClasses);
      s.run(fixture().inputs.data(), kImages, out.data(), &tap);
      EXPECT_EQ(seen, threads) << (model->quant() ? "integer" : "fp32");
      EXPECT_EQ(omp_get_max_threads(), 3) << "after a run with " << threads << " threads";
    }
  }
  omp_set_num_threads(saved);
}

}  // namespace
}  // namespace vqm::test
