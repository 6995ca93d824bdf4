// idx reader: the real Debian Fashion-MNIST files, and hand-built plain/gzip files that are
// truncated, mislabelled or inconsistent (each must be a format error, never a crash).
#include <gtest/gtest.h>

#include <array>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "apps/data/idx.h"
#include "runtime/io/error.h"
#include "test_files.h"
#include "test_util.h"

namespace vqm {
namespace {

using test::crc32;
using test::gzip;
using test::idx1;
using test::idx3;
using test::put_be32;
using test::put_le32;

std::string expect_error(const std::function<void()> &fn, ErrorCode code) {
  try {
    fn();
  } catch (const Error &e) {
    EXPECT_EQ(static_cast<int>(e.code()), static_cast<int>(code)) << e.what();
    return e.what();
  } catch (const std::exception &e) {
    ADD_FAILURE() << "unexpected exception type: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no exception thrown";
  return "";
}

std::string write(const std::string &dir, const std::string &name, const std::vector<uint8_t> &b) {
  const std::string p = dir + "/" + name;
  test::write_bytes(p, b);
  return p;
}

TEST(Idx, FashionMnistT10kAndTrain) {
  const std::string dir = test::fmnist_dir();
  const std::string img_path = find_idx_file(dir, "t10k", "images");
  EXPECT_EQ(img_path, dir + "/t10k-images-idx3-ubyte.gz");
  const IdxImages t10k = load_idx_images(img_path);
  EXPECT_EQ(t10k.count, 10000);
  EXPECT_EQ(t10k.rows, 28);
  EXPECT_EQ(t10k.cols, 28);
  ASSERT_EQ(t10k.pixels.size(), 10000u * 28 * 28);
  const std::vector<uint8_t> labels = load_idx_labels(find_idx_file(dir, "t10k", "labels"));
  ASSERT_EQ(labels.size(), 10000u);
  std::array<int, 10> hist{};
  for (uint8_t l : labels) {
    ASSERT_LT(l, 10);
    ++hist[l];
  }
  for (int c : hist) EXPECT_EQ(c, 1000);  // Fashion-MNIST t10k is balanced
  // Known first labels of t10k: ankle boot, pullover, trouser, trouser.
  EXPECT_EQ(std::vector<uint8_t>(labels.begin(), labels.begin() + 4),
            (std::vector<uint8_t>{9, 2, 1, 1}));
  // Images are not blank and use the full range.
  uint8_t lo = 255, hi = 0;
  for (uint8_t v : t10k.pixels) lo = std::min(lo, v), hi = std::max(hi, v);
  EXPECT_EQ(lo, 0);
  EXPECT_EQ(hi, 255);

  const IdxImages train = load_idx_images(find_idx_file(dir, "train", "images"));
  EXPECT_EQ(train.count, 60000);
  EXPECT_EQ(train.rows, 28);
  EXPECT_EQ(train.cols, 28);
  EXPECT_EQ(train.pixels.size(), 60000u * 28 * 28);
  const std::vector<uint8_t> train_labels = load_idx_labels(find_idx_file(dir, "train", "labels"));
  ASSERT_EQ(train_labels.size(), 60000u);
  for (uint8_t l : train_labels) ASSERT_LT(l, 10);
}

TEST(Idx, PlainAndGzipVariantsAgree) {
  const std::string dir = test::scratch_dir();
  const std::vector<uint8_t> imgs = idx3(0x803, 3, 4, 5, 60);
  const std::vector<uint8_t> labs = idx1(0x801, 3, 3);
  const IdxImages plain = load_idx_images(write(dir, "a-images", imgs));
  EXPECT_EQ(plain.count, 3);
  EXPECT_EQ(plain.rows, 4);
  EXPECT_EQ(plain.cols, 5);
  EXPECT_EQ(plain.pixels, std::vector<uint8_t>(imgs.begin() + 16, imgs.end()));
  // Every optional header field, alone and together.
  for (uint8_t flags : {0, 1, 2, 4, 8, 16, 2 | 4 | 8 | 16}) {
    SCOPED_TRACE("flags " + std::to_string(flags));
    const IdxImages gz = load_idx_images(write(dir, "a-images.gz", gzip(imgs, flags)));
    EXPECT_EQ(gz.pixels, plain.pixels);
    EXPECT_EQ(load_idx_labels(write(dir, "a-labels.gz", gzip(labs, flags))),
              (std::vector<uint8_t>{0, 1, 2}));
  }
  // Zero items is a valid (if useless) file.
  EXPECT_EQ(load_idx_labels(write(dir, "empty-labels", idx1(0x801, 0, 0))).size(), 0u);
}

TEST(Idx, FindPrefersPlainAndListsNamesTried) {
  const std::string dir = test::scratch_dir();
  write(dir, "t10k-labels-idx1-ubyte.gz", gzip(idx1(0x801, 1, 1)));
  EXPECT_EQ(find_idx_file(dir, "t10k", "labels"), dir + "/t10k-labels-idx1-ubyte.gz");
  write(dir, "t10k-labels-idx1-ubyte", idx1(0x801, 1, 1));
  EXPECT_EQ(find_idx_file(dir, "t10k", "labels"), dir + "/t10k-labels-idx1-ubyte");
  const std::string msg =
      expect_error([&] { find_idx_file(dir, "train", "images"); }, ErrorCode::io);
  EXPECT_NE(msg.find("train-images-idx3-ubyte.gz"), std::string::npos) << msg;
  expect_error([&] { find_idx_file(dir, "valid", "images"); }, ErrorCode::invalid_argument);
  expect_error([&] { find_idx_file(dir, "t10k", "pixels"); }, ErrorCode::invalid_argument);
  std::filesystem::create_directory(dir + "/train-images-idx3-ubyte");  // a directory is no file
  expect_error([&] { find_idx_file(dir, "train", "images"); }, ErrorCode::io);
}

TEST(Idx, CorruptFilesAreFormatErrors) {
  const std::string dir = test::scratch_dir();
  const auto bad_images = [&](const std::string &name, const std::vector<uint8_t> &bytes) {
    SCOPED_TRACE(name);
    const std::string msg =
        expect_error([&] { load_idx_images(write(dir, name, bytes)); }, ErrorCode::format);
    EXPECT_NE(msg.find(name), std::string::npos) << "message must name the file: " << msg;
    return msg;
  };
  const auto bad_labels = [&](const std::string &name, const std::vector<uint8_t> &bytes) {
    SCOPED_TRACE(name);
    return expect_error([&] { load_idx_labels(write(dir, name, bytes)); }, ErrorCode::format);
  };
  // Plain files.
  bad_images("empty", {});
  bad_images("short-header", {0, 0, 8, 3, 0, 0});
  EXPECT_NE(bad_images("labels-as-images", idx1(0x801, 60, 60)).find("magic"), std::string::npos);
  bad_labels("images-as-labels", idx3(0x803, 1, 2, 2, 4));
  bad_images("bad-magic", idx3(0x12345678, 1, 2, 2, 4));
  EXPECT_NE(bad_images("truncated-payload", idx3(0x803, 10, 28, 28, 7000)).find("truncated"),
            std::string::npos);
  bad_images("trailing-bytes", idx3(0x803, 1, 2, 2, 5));
  bad_images("count-mismatch", idx3(0x803, 11, 2, 2, 40));
  bad_images("zero-rows", idx3(0x803, 1, 0, 2, 0));
  bad_images("huge-dims", idx3(0x803, 0x7fffffff, 0x7fffffff, 0x7fffffff, 16));
  bad_images("negative-count", idx3(0x803, 0x80000000u, 2, 2, 16));
  bad_labels("labels-count-mismatch", idx1(0x801, 5, 4));
  bad_labels("labels-count-huge", idx1(0x801, 0xffffffffu, 4));

  // gzip layer.
  const std::vector<uint8_t> good = gzip(idx3(0x803, 4, 28, 28, 4 * 28 * 28));
  ASSERT_EQ(load_idx_images(write(dir, "good.gz", good)).count, 4);
  for (size_t cut : {size_t{2}, size_t{10}, size_t{17}, good.size() / 2, good.size() - 1}) {
    bad_images("cut" + std::to_string(cut) + ".gz",
               std::vector<uint8_t>(good.begin(), good.begin() + cut));
  }
  std::vector<uint8_t> g = good;
  g[2] = 7;  // not deflate
  bad_images("method.gz", g);
  g = good;
  g[3] = 0x20;  // reserved flag
  bad_images("reserved.gz", g);
  g = good;
  g[3] = 8;  // FNAME without a terminator anywhere near: consumes the stream
  std::fill(g.begin() + 10, g.end() - 8, 'x');
  bad_images("fname.gz", g);
  g = gzip(idx3(0x803, 1, 2, 2, 4), 2);
  g[10] ^= 1;  // header CRC16
  EXPECT_NE(bad_images("hcrc.gz", g).find("CRC16"), std::string::npos);
  g = good;
  g[g.size() - 8] ^= 1;  // CRC32
  EXPECT_NE(bad_images("crc.gz", g).find("CRC32"), std::string::npos);
  g = good;
  g[g.size() - 4] ^= 1;  // ISIZE
  bad_images("isize.gz", g);
  g = good;
  g[g.size() - 1] = 0x7f;  // ISIZE ~2 GiB from a small stream: refused before allocating
  bad_images("isize-huge.gz", g);
  g = good;
  for (size_t i = 20; i < 60; ++i) g[i] ^= 0xa5;  // damaged deflate data
  bad_images("deflate.gz", g);
  g = good;  // two members: the reader handles one
  g.insert(g.end(), good.begin(), good.end());
  bad_images("two-members.gz", g);
  // Valid gzip around a broken idx payload.
  bad_images("gz-bad-magic.gz", gzip(idx3(0x802, 1, 2, 2, 4)));
  bad_images("gz-truncated-payload.gz", gzip(idx3(0x803, 2, 2, 2, 7)));
  bad_labels("gz-labels-mismatch.gz", gzip(idx1(0x801, 3, 2)));

  // Truncating the real t10k labels file (gzip): always a format error.
  const std::vector<uint8_t> real =
      test::read_bytes(find_idx_file(test::fmnist_dir(), "t10k", "labels"));
  ASSERT_GT(real.size(), 100u);
  for (size_t cut : {real.size() - 8, real.size() - 100, real.size() / 2, size_t{30}})
    bad_labels("real-cut" + std::to_string(cut) + ".gz",
               std::vector<uint8_t>(real.begin(), real.begin() + cut));

  expect_error([&] { load_idx_images(dir + "/does-not-exist"); }, ErrorCode::io);
  expect_error([&] { load_idx_labels(dir); }, ErrorCode::io);
}

}  // namespace
}  // namespace vqm
