// Reader for the idx files of (Fashion-)MNIST, plain or gzip-compressed (.gz). gzip is inflated
// with runtime/io's inflate_raw (stb_image's zlib decoder), so no extra dependency is needed.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vqm {

struct IdxImages {
  int count = 0;
  int rows = 0;
  int cols = 0;
  std::vector<uint8_t> pixels;  // count * rows * cols, row-major
};

// Throws vqm::Error (io / format) naming the file and the problem (bad magic, truncated, ...).
IdxImages load_idx_images(const std::string &path);
std::vector<uint8_t> load_idx_labels(const std::string &path);

// Finds "<dir>/<split>-images-idx3-ubyte[.gz]" and the labels next to it (split: "t10k" or
// "train"). Throws vqm::Error(io) listing the names tried if absent.
std::string find_idx_file(const std::string &dir, const std::string &split,
                          const std::string &kind);

}  // namespace vqm
