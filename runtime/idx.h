// Reader for the idx files of (Fashion-)MNIST, plain or gzip-compressed (.gz). gzip is inflated
// with stb_image's zlib decoder, so no extra dependency is needed.
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

namespace detail {
// Raw deflate (RFC 1951) into a fixed buffer with stb_image's inflater; returns the bytes
// written, or -1 on corrupt data / output overflow. *consumed is how many input bytes the
// stream used (input past the stream's end is only lookahead), so the gzip reader can check
// that the stream ends exactly at the trailer. Defined in stb_image_impl.cpp,
// the only file that sees stb's internal decoder state.
int inflate_raw(const uint8_t *in, int in_len, uint8_t *out, int out_len, int *consumed);
}  // namespace detail

}  // namespace vqm
