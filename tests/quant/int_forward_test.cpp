// The integer forward splits a batch's token rows into one chunk per thread, cutting images where
// the chunk boundaries fall (int_engine.cpp). Every split must give the logits of one thread doing
// all rows, bit for bit: the kernels are row-wise and oneDNN's integer accumulation is exact, so
// any difference is a chunk or segment reading or writing the wrong rows.
#include <gtest/gtest.h>

#include <omp.h>

#include <cstring>
#include <map>

#include "apps/data/calibration.h"
#include "models/convert.h"
#include "quantizer/ptq.h"
#include "runtime/engine/int_engine.h"
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

// fc1 runs over row tiles whose f32 output fits the L2 cache (IntEngine::build_block), so a
// machine's cache size decides how a chunk is cut. Tiles of any size, down to one row, must give
// the logits of one tile per chunk bit for bit.
TEST(IntegerForward, Fc1RowTilesGiveOneTilesLogits) {
  const auto &model = fixture().quantized;
  auto run = [&](int64_t threads, int64_t cache_bytes) {
    IntEngine engine(EngineSetup{model, {kImages}, threads, cache_bytes});
    std::vector<float> out(kImages * kClasses);
    engine.forward(fixture().inputs.data(), kImages, out.data(), nullptr, nullptr);
    return out;
  };
  const int64_t row = model->config().mlp_hidden * int64_t{4};  // bytes of one row of fc1's output
  const std::vector<float> want = run(1, 1000 * row);           // 350 rows: one tile
  // 1 thread: 350 tiles of 1 row, 50 of 7; 2 threads: 175-row chunks in 64-row tiles (59 + 58 +
  // 58); 3 threads: 116/117-row chunks in 50-row tiles.
  for (const auto &[threads, rows] :
       {std::pair{1, 1}, std::pair{1, 7}, std::pair{2, 64}, std::pair{3, 50}}) {
    const std::vector<float> got = run(threads, rows * row);
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
        << threads << " threads, tiles of at most " << rows << " rows";
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

// VitSession::run_from (the quantizer's calibration replays from the block it is deciding): a
// forward resumed at block `first` from the residual stream that the full forward showed there
// gives the full forward's later activations and logits bit for bit (the same primitives on the
// same numbers), fires no tap before the block, and is refused where it cannot run.
TEST(ResumedForward, RunFromABlockGivesTheFullForwardBitForBit) {
  const int depth = fixture().fp32->config().depth;
  SessionOptions sim;
  sim.max_batch = 4;  // the 7 images run as 4 + 2 + 1: every planned size
  sim.simulate = true;
  for (const auto &model : {fixture().fp32, fixture().quantized}) {
    const char *kind = model->quant() ? "simulated" : "fp32";
    VitSession session(model, sim);
    std::map<std::pair<Tap, int>, std::vector<float>> full;
    const TapFn keep = [&](const TapEvent &e) {
      auto &v = full[{e.tap, e.block}];
      v.insert(v.end(), e.data, e.data + e.rows * e.cols);
    };
    std::vector<float> want(kImages * kClasses), got(kImages * kClasses);
    session.run(fixture().inputs.data(), kImages, want.data(), &keep);
    for (int first : {0, 5, depth}) {
      const auto &x = first == 0 ? full[{Tap::embed, -1}] : full[{Tap::block_out, first - 1}];
      std::map<std::pair<Tap, int>, std::vector<float>> resumed;
      const TapFn check = [&](const TapEvent &e) {
        EXPECT_TRUE(e.block >= first || e.tap == Tap::prelogits)
            << kind << ": a tap of block " << e.block << " fired resuming at " << first;
        auto &v = resumed[{e.tap, e.block}];
        v.insert(v.end(), e.data, e.data + e.rows * e.cols);
      };
      session.run_from(first, x.data(), kImages, got.data(), &check);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
          << kind << ", resumed at block " << first;
      for (const auto &[key, values] : resumed)
        EXPECT_EQ(values, full[key]) << kind << ": tap " << int(key.first) << " of block "
                                     << key.second << ", resumed at block " << first;
      size_t later = 0;  // every tap from block `first` on fired
      for (const auto &[key, values] : full)
        later += key.second >= first || key.first == Tap::prelogits;
      EXPECT_EQ(resumed.size(), later) << kind << ", resumed at block " << first;
    }
    EXPECT_VQM_ERROR(session.run_from(depth + 1, want.data(), 1, got.data()), invalid_argument,
                     "is not in [0, 12]");
    EXPECT_VQM_ERROR(session.run_from(-1, want.data(), 1, got.data()), invalid_argument,
                     "block -1");
  }
  VitSession integer(fixture().quantized, SessionOptions{});
  std::vector<float> x(fixture().fp32->config().tokens() * fixture().fp32->config().embed_dim),
      out(kClasses);
  EXPECT_VQM_ERROR(integer.run_from(3, x.data(), 1, out.data()), unsupported,
                   "needs an fp32 or simulated session");
}

}  // namespace
}  // namespace vqm::test
