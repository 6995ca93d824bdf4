#include "apps/data/crc32.h"

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "runtime/io/error.h"

namespace vqm {

uint32_t crc32(const uint8_t *p, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t crc32_file(const std::string &path, uint64_t *size) {
  std::unique_ptr<FILE, int (*)(FILE *)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) fail(ErrorCode::io, "cannot open '" + path + "': " + std::strerror(errno));
  std::vector<uint8_t> buf(size_t{1} << 20);
  uint32_t crc = 0;
  uint64_t total = 0;
  for (size_t n; (n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0; total += n)
    crc = crc32(buf.data(), n, crc);
  if (std::ferror(f.get())) fail(ErrorCode::io, "cannot read '" + path + "'");
  if (size) *size = total;
  return crc;
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

}  // namespace vqm
