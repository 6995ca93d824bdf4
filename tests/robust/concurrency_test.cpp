// One model, many threads: 8 threads (the machine has 2 cores), each with its own session on a
// shared model, fp32 and quantized models (integer and simulated execution) side by side, 1,000
// inferences in all. Every result must equal, bit for bit, what one thread alone computes.
// The TSan build runs this test too; there every session uses one OpenMP thread (see below).
#include <gtest/gtest.h>
#include <omp.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <set>
#include <thread>

#include "apps/data/calibration.h"
#include "models/convert.h"
#include "quantizer/ptq.h"
#include "test_util.h"

namespace vqm::test {
namespace {

constexpr int kThreads = 8, kInferences = 1000, kImages = 16, kClasses = 10;

// The OpenMP runtime is not TSan-instrumented: its barriers are invisible to TSan, so work
// shared between OpenMP threads would be reported as races that are not there. Under TSan every
// session therefore runs on one OpenMP thread; the threads under test are the application's.
int max_omp_threads() {
  return sanitizer() == Sanitizer::thread ? 1 : 2;
}

struct Variant {
  const char *name;
  std::shared_ptr<const VitModel> model;
  bool simulate;
  int n_threads;
};

std::shared_ptr<const VitModel> load(const std::vector<uint8_t> &bytes) {
  return VitModel::load(VqmFile::from_memory(bytes.data(), bytes.size()));
}

TEST(Concurrency, EightThreadsSharingModelsGiveSingleThreadResults) {
  omp_set_num_threads(max_omp_threads());  // model preparation on this thread
  const auto st = SafetensorsFile::from_file(data_path("models/fmnist_deit_tiny.safetensors"));
  const std::vector<uint8_t> fp32_bytes = convert_timm(st, {}).to_bytes();
  const VqmFile fp32_file = VqmFile::from_memory(fp32_bytes.data(), fp32_bytes.size());
  const auto fp32 = VitModel::load(fp32_file);
  const auto calib = app::load_calibration(fmnist_dir(), 4, 0, *fp32);
  auto quantized = [&](int bits) {
    quant::PtqOptions opt;
    opt.method = "minmax";  // the intervals do not matter here, only that the model is quantized
    opt.bits = bits;
    return load(quant::quantize(fp32_file, calib, opt, nullptr).to_bytes());
  };
  const auto w8 = quantized(8), w4 = quantized(4);
  ASSERT_NE(w8->quant(), nullptr);
  ASSERT_NE(w4->quant(), nullptr);

  // One variant per thread: every model, both execution paths of the quantized ones, and one or
  // two OpenMP threads inside the session.
  const Variant variants[kThreads] = {
      {"fp32 x1", fp32, false, 1},
      {"fp32 x2", fp32, false, max_omp_threads()},
      {"w8a8 integer x1", w8, false, 1},
      {"w8a8 integer x2", w8, false, max_omp_threads()},
      {"w8a8 simulated x1", w8, true, 1},
      {"w4a4 integer x1", w4, false, 1},
      {"w4a4 integer x2", w4, false, max_omp_threads()},
      {"w4a4 simulated x2", w4, true, max_omp_threads()},
  };

  const size_t in_size = static_cast<size_t>(fp32->config().input_size());
  const std::vector<float> inputs = fmnist_t10k_inputs(*fp32, kImages);

  auto options = [](const Variant &v) {
    SessionOptions so;
    so.n_threads = v.n_threads;
    so.simulate = v.simulate;
    return so;
  };
  // The single-thread results, one session per variant on this thread.
  std::vector<std::vector<float>> expected(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    VitSession s(variants[t].model, options(variants[t]));
    expected[t].resize(kImages * kClasses);
    for (int i = 0; i < kImages; ++i)
      s.run(inputs.data() + i * in_size, 1, expected[t].data() + i * kClasses);
  }
  // The quantized variants really differ from fp32 (else the test would prove less).
  EXPECT_NE(std::memcmp(expected[0].data(), expected[2].data(), kClasses * sizeof(float)), 0);

  std::atomic<int> ready{0}, mismatches{0}, runs{0};
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        // Sessions are created concurrently too: the shared model packs weights under a lock.
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();
        VitSession s(variants[t].model, options(variants[t]));
        float logits[kClasses];
        for (int r = 0; r < kInferences / kThreads; ++r) {
          const int i = (t * 5 + r * 3) % kImages;
          s.run(inputs.data() + i * in_size, 1, logits);
          runs.fetch_add(1);
          if (std::memcmp(logits, expected[t].data() + i * kClasses, sizeof logits) != 0)
            mismatches.fetch_add(1);
        }
      } catch (const std::exception &e) {
        errors[t] = e.what();
      }
    });
  }
  for (auto &th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(errors[t], "") << variants[t].name;
  EXPECT_EQ(runs.load(), kInferences);
  EXPECT_EQ(mismatches.load(), 0);
}

// Debian's oneDNN brings libgomp; clang builds bring libomp and alias it (CMakeLists.txt). Either
// way exactly one OpenMP runtime must be mapped, or two thread pools would compete.
TEST(OpenMp, OneRuntimeIsMapped) {
  int sum = 0;
#pragma omp parallel reduction(+ : sum)
  sum += 1;
  EXPECT_GE(sum, 1);
  // oneDNN's own OpenMP use: a session creates and runs matmul primitives.
  const auto st = SafetensorsFile::from_file(data_path("models/fmnist_deit_tiny.safetensors"));
  const std::vector<uint8_t> bytes = convert_timm(st, {}).to_bytes();
  VitSession s(load(bytes), {});
  std::vector<float> input(784, 0.f), logits(10);
  s.run(input.data(), 1, logits.data());

  std::ifstream maps("/proc/self/maps");
  std::set<std::string> runtimes;
  for (std::string line; std::getline(maps, line);) {
    const size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string file = path.substr(path.rfind('/') + 1);
    if (file.rfind("libgomp.so", 0) == 0 || file.rfind("libomp.so", 0) == 0 ||
        file.rfind("libiomp5.so", 0) == 0)
      runtimes.insert(path);
  }
  std::string listed;
  for (const auto &r : runtimes) listed += r + " ";
  EXPECT_EQ(runtimes.size(), 1u) << "OpenMP runtimes mapped: " << listed;
}

}  // namespace
}  // namespace vqm::test
