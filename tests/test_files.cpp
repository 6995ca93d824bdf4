#include "test_files.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "stb_image_write_impl.h"

namespace vqm::test {

namespace {

void append_to(void *ctx, void *data, int size) {
  auto *v = static_cast<std::vector<uint8_t> *>(ctx);
  v->insert(v->end(), static_cast<uint8_t *>(data), static_cast<uint8_t *>(data) + size);
}

void png_chunk(std::vector<uint8_t> *png, const char *type, const std::vector<uint8_t> &data) {
  put_be32(png, static_cast<uint32_t>(data.size()));
  const size_t start = png->size();
  png->insert(png->end(), type, type + 4);
  png->insert(png->end(), data.begin(), data.end());
  put_be32(png, crc32(png->data() + start, png->size() - start));
}

// zlib stream of `data` (stb_image_write's deflate).
std::vector<uint8_t> zlib_compress(const std::vector<uint8_t> &data) {
  int zlen = 0;
  unsigned char *z = stbi_zlib_compress(const_cast<unsigned char *>(data.data()),
                                        static_cast<int>(data.size()), &zlen, 8);
  EXPECT_GT(zlen, 6);
  std::vector<uint8_t> out(z, z + zlen);
  STBIW_FREE(z);
  return out;
}

// JPEG entropy-coded bits, MSB first, with 0xFF byte stuffing and 1-bit padding.
struct BitWriter {
  std::vector<uint8_t> bytes;
  uint32_t acc = 0;
  int n = 0;
  void put(uint32_t bits, int count) {
    for (int i = count - 1; i >= 0; --i) {
      acc = (acc << 1) | ((bits >> i) & 1);
      if (++n == 8) flush_byte();
    }
  }
  void flush_byte() {
    bytes.push_back(static_cast<uint8_t>(acc));
    if (static_cast<uint8_t>(acc) == 0xff) bytes.push_back(0);
    acc = 0;
    n = 0;
  }
  void finish() {
    while (n != 0) put(1, 1);
  }
};

void jpeg_segment(std::vector<uint8_t> *j, uint8_t marker, const std::vector<uint8_t> &body) {
  const size_t len = body.size() + 2;
  j->insert(j->end(), {0xff, marker, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)});
  j->insert(j->end(), body.begin(), body.end());
}

}  // namespace

uint32_t crc32(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
  }
  return ~c;
}

void put_be32(std::vector<uint8_t> *v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v->push_back(static_cast<uint8_t>(x >> s));
}

void put_le32(std::vector<uint8_t> *v, uint32_t x) {
  for (int s = 0; s < 32; s += 8) v->push_back(static_cast<uint8_t>(x >> s));
}

std::vector<uint8_t> png_encode(int w, int h, int comp, const std::vector<uint8_t> &px) {
  std::vector<uint8_t> out;
  EXPECT_NE(stbi_write_png_to_func(append_to, &out, w, h, comp, px.data(), w * comp), 0);
  return out;
}

std::vector<uint8_t> bmp_encode(int w, int h, int comp, const std::vector<uint8_t> &px) {
  std::vector<uint8_t> out;
  EXPECT_NE(stbi_write_bmp_to_func(append_to, &out, w, h, comp, px.data()), 0);
  return out;
}

std::vector<uint8_t> jpeg_encode(int w, int h, int comp, const std::vector<uint8_t> &px,
                                 int quality) {
  std::vector<uint8_t> out;
  EXPECT_NE(stbi_write_jpg_to_func(append_to, &out, w, h, comp, px.data(), quality), 0);
  return out;
}

std::vector<uint8_t> craft_png(uint32_t w, uint32_t h, uint8_t depth, uint8_t color_type,
                               const std::vector<uint8_t> *scanlines) {
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  std::vector<uint8_t> ihdr;
  put_be32(&ihdr, w);
  put_be32(&ihdr, h);
  ihdr.insert(ihdr.end(), {depth, color_type, 0, 0, 0});
  png_chunk(&png, "IHDR", ihdr);
  if (scanlines) png_chunk(&png, "IDAT", zlib_compress(*scanlines));
  png_chunk(&png, "IEND", {});
  return png;
}

std::vector<uint8_t> cmyk_jpeg(const uint8_t dc_levels[4]) {
  std::vector<uint8_t> j = {0xff, 0xd8};
  // APP14 "Adobe": version 100, flags 0, 0, transform 0 (no colour transform: CMYK as stored).
  jpeg_segment(&j, 0xee, {'A', 'd', 'o', 'b', 'e', 0, 100, 0, 0, 0, 0, 0});
  std::vector<uint8_t> dqt(65, 1);  // table 0, 8-bit, every quantiser 1
  dqt[0] = 0;
  jpeg_segment(&j, 0xdb, dqt);
  std::vector<uint8_t> sof = {8, 0, 8, 0, 8, 4};  // 8 bits, 8x8, four components
  for (uint8_t c = 1; c <= 4; ++c) sof.insert(sof.end(), {c, 0x11, 0});
  jpeg_segment(&j, 0xc0, sof);
  // DC table 0: categories 0..11, all 4-bit codes (0000 = category 0, ...). AC table 0: only
  // end-of-block, the 1-bit code 0.
  std::vector<uint8_t> dc = {0x00, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (uint8_t s = 0; s < 12; ++s) dc.push_back(s);
  jpeg_segment(&j, 0xc4, dc);
  jpeg_segment(&j, 0xc4, {0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00});
  std::vector<uint8_t> sos = {4};
  for (uint8_t c = 1; c <= 4; ++c) sos.insert(sos.end(), {c, 0x00});
  sos.insert(sos.end(), {0, 63, 0});
  jpeg_segment(&j, 0xda, sos);
  BitWriter bits;
  for (int c = 0; c < 4; ++c) {
    // A DC-only block decodes to DC / 8 + 128 everywhere (quantiser 1).
    const int dc_value = (static_cast<int>(dc_levels[c]) - 128) * 8;
    int category = 0;
    while ((std::abs(dc_value) >> category) != 0) ++category;
    bits.put(static_cast<uint32_t>(category), 4);
    if (category > 0) {
      const int extra = dc_value > 0 ? dc_value : dc_value - 1;  // ones' complement if negative
      bits.put(static_cast<uint32_t>(extra) & ((1u << category) - 1), category);
    }
    bits.put(0, 1);  // end of block
  }
  bits.finish();
  j.insert(j.end(), bits.bytes.begin(), bits.bytes.end());
  j.insert(j.end(), {0xff, 0xd9});
  return j;
}

std::vector<uint8_t> idx3(uint32_t magic, uint32_t count, uint32_t rows, uint32_t cols,
                          size_t payload) {
  std::vector<uint8_t> b;
  put_be32(&b, magic);
  put_be32(&b, count);
  put_be32(&b, rows);
  put_be32(&b, cols);
  for (size_t i = 0; i < payload; ++i) b.push_back(static_cast<uint8_t>(i * 7));
  return b;
}

std::vector<uint8_t> idx1(uint32_t magic, uint32_t count, size_t payload) {
  std::vector<uint8_t> b;
  put_be32(&b, magic);
  put_be32(&b, count);
  for (size_t i = 0; i < payload; ++i) b.push_back(static_cast<uint8_t>(i % 10));
  return b;
}

std::vector<uint8_t> gzip(const std::vector<uint8_t> &data, uint8_t flags) {
  std::vector<uint8_t> g = {0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 3};
  if (flags & 4) g.insert(g.end(), {5, 0, 'A', 'B', 3, 0, 'x'});
  if (flags & 8) g.insert(g.end(), {'f', 'i', 'l', 'e', 0});
  if (flags & 16) g.insert(g.end(), {'h', 'i', 0});
  if (flags & 2) {
    const uint32_t c = crc32(g.data(), g.size());
    g.insert(g.end(), {static_cast<uint8_t>(c), static_cast<uint8_t>(c >> 8)});
  }
  // stb writes zlib: strip its 2-byte header and 4-byte Adler-32 trailer to get raw deflate.
  const std::vector<uint8_t> z = zlib_compress(data);
  g.insert(g.end(), z.begin() + 2, z.end() - 4);
  put_le32(&g, crc32(data.data(), data.size()));
  put_le32(&g, static_cast<uint32_t>(data.size()));
  return g;
}

}  // namespace vqm::test
