// A session allocates at creation and never in run() (a forward may not fail for memory, nor
// wait in the allocator). This binary replaces the global operator new with a counting one (a
// binary of its own: the replacement reaches every test linked with it) and counts what a second
// run() of fp32, simulated and integer sessions allocates; the first run is left out, as OpenMP
// and oneDNN set up per-thread state on first use. Not counted: allocations with a libdnnl frame
// near the top of the stack (oneDNN 2.6 builds an argument map inside every
// dnnl_primitive_execute, which no caller can avoid), and the C runtime's malloc of libgomp and
// libdnnl, which this does not see.
#include <dlfcn.h>
#include <execinfo.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#include "apps/data/calibration.h"
#include "models/convert.h"
#include "quantizer/ptq.h"
#include "test_util.h"

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
thread_local bool inside = false;  // backtrace and dladdr may allocate themselves

bool from_onednn() {
  void *frames[6];
  const int n = backtrace(frames, 6);
  for (int i = 0; i < n; ++i) {
    Dl_info info;
    if (dladdr(frames[i], &info) && info.dli_fname && std::strstr(info.dli_fname, "libdnnl"))
      return true;
  }
  return false;
}

void *counted(std::size_t n) {
  if (counting.load(std::memory_order_relaxed) && !inside) {
    inside = true;
    if (!from_onednn()) allocations.fetch_add(1);
    inside = false;
  }
  if (void *p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
}  // namespace

void *operator new(std::size_t n) {
  return counted(n);
}
void *operator new[](std::size_t n) {
  return counted(n);
}
void operator delete(void *p) noexcept {
  std::free(p);
}
void operator delete[](void *p) noexcept {
  std::free(p);
}
void operator delete(void *p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void *p, std::size_t) noexcept {
  std::free(p);
}

namespace vqm::test {
namespace {

constexpr int kImages = 3;

long allocations_of_second_run(const std::shared_ptr<const VitModel> &model, bool simulate,
                               int threads) {
  const std::vector<float> inputs = fmnist_t10k_inputs(*model, kImages);
  SessionOptions so;
  so.n_threads = threads;
  so.max_batch = kImages;
  so.simulate = simulate;
  VitSession s(model, so);
  std::vector<float> out(kImages * model->config().n_outputs());
  s.run(inputs.data(), kImages, out.data());
  allocations = 0;
  counting = true;
  s.run(inputs.data(), kImages, out.data());
  counting = false;
  return allocations.load();
}

TEST(ForwardAllocations, RunAllocatesNothingOnAnyEngine) {
  const auto st = SafetensorsFile::from_file(data_path("models/fmnist_deit_tiny.safetensors"));
  const std::vector<uint8_t> fp32_bytes = convert_timm(st, {}).to_bytes();
  const VqmFile fp32_file = VqmFile::from_memory(fp32_bytes.data(), fp32_bytes.size());
  const auto fp32 = VitModel::load(fp32_file);
  quant::PtqOptions opt;
  opt.method = "minmax";  // any quantized model: only its execution is looked at
  opt.bits = 8;
  const auto q_bytes =
      quant::quantize(fp32_file, app::load_calibration(fmnist_dir(), 2, 0, *fp32), opt, nullptr)
          .to_bytes();
  const auto quantized = VitModel::load(VqmFile::from_memory(q_bytes.data(), q_bytes.size()));
  from_onednn();  // backtrace's first call loads libgcc_s: not during a counted run
  for (int threads : {1, 2}) {
    EXPECT_EQ(allocations_of_second_run(fp32, false, threads), 0) << "fp32, " << threads;
    EXPECT_EQ(allocations_of_second_run(quantized, true, threads), 0) << "simulated, " << threads;
    EXPECT_EQ(allocations_of_second_run(quantized, false, threads), 0) << "integer, " << threads;
  }
}

}  // namespace
}  // namespace vqm::test
