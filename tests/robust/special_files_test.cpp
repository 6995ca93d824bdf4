// A path naming a FIFO, a character device or a directory is not a file to read. The loaders
// reachable through the C API (model files, image files) must say so at once with an io error,
// not block in open(2) waiting for a FIFO's writer, nor read a device's endless bytes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "runtime/io/format.h"
#include "runtime/io/image.h"
#include "test_util.h"

namespace vqm::test {
namespace {

// Runs `load` while another thread keeps trying to open the FIFO's write end: if `load` blocks
// in open(2) on the read end, the writer unblocks it after a second (instead of hanging the
// suite) and the time taken shows the block.
template <typename F>
double seconds_with_rescue(const std::string &fifo, F &&load) {
  std::atomic<bool> done{false};
  std::thread rescuer([&] {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    while (!done) {
      const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);  // ENXIO while no reader
      if (fd >= 0) {
        ::close(fd);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  const auto t0 = std::chrono::steady_clock::now();
  load();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  done = true;
  rescuer.join();
  return s;
}

TEST(SpecialFiles, FifoIsAnIoErrorAtOnce) {
  const std::string fifo = scratch_dir() + "/special_files.fifo";
  ::unlink(fifo.c_str());
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_LT(
      seconds_with_rescue(
          fifo, [&] { EXPECT_VQM_ERROR(VqmFile::from_file(fifo), io, "not a regular file"); }),
      0.5)
      << "the model loader blocked on the FIFO";
  EXPECT_LT(
      seconds_with_rescue(
          fifo, [&] { EXPECT_VQM_ERROR(decode_image_file(fifo, 3), io, "not a regular file"); }),
      0.5)
      << "the image loader blocked on the FIFO";
  ::unlink(fifo.c_str());
}

TEST(SpecialFiles, DeviceAndDirectoryAreIoErrors) {
  EXPECT_VQM_ERROR(VqmFile::from_file("/dev/zero"), io, "not a regular file");
  EXPECT_VQM_ERROR(decode_image_file("/dev/zero", 3), io, "not a regular file");
  EXPECT_VQM_ERROR(VqmFile::from_file(scratch_dir()), io, "directory");
  EXPECT_VQM_ERROR(decode_image_file(scratch_dir(), 3), io, "directory");
}

}  // namespace
}  // namespace vqm::test
