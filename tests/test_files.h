// Builders of test input files in memory: encoded images (stb_image_write), hand-made PNGs and
// JPEGs that declare what no encoder would write, idx files and their gzip form. Shared by the
// unit tests, the robustness tests and the fuzz seeds.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace vqm::test {

// Encoded with stb_image_write; `comp` 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA).
std::vector<uint8_t> png_encode(int w, int h, int comp, const std::vector<uint8_t> &px);
std::vector<uint8_t> bmp_encode(int w, int h, int comp, const std::vector<uint8_t> &px);
std::vector<uint8_t> jpeg_encode(int w, int h, int comp, const std::vector<uint8_t> &px,
                                 int quality);
// A hand-made PNG: signature, IHDR with the given numbers, optional raw (already filtered)
// scanlines compressed into one IDAT, IEND. Declares sizes and depths no encoder would write.
std::vector<uint8_t> craft_png(uint32_t w, uint32_t h, uint8_t depth, uint8_t color_type,
                               const std::vector<uint8_t> *scanlines = nullptr);
// An 8x8 baseline JPEG with four components and an Adobe APP14 marker saying CMYK (transform 0),
// as Photoshop writes print images. Every block holds only a DC value, one per component.
std::vector<uint8_t> cmyk_jpeg(const uint8_t dc_levels[4]);

// CRC-32 as gzip and PNG use it.
uint32_t crc32(const uint8_t *p, size_t n);
void put_be32(std::vector<uint8_t> *v, uint32_t x);
void put_le32(std::vector<uint8_t> *v, uint32_t x);

// idx3 (images) / idx1 (labels) with the given header and `payload` bytes of pattern data.
std::vector<uint8_t> idx3(uint32_t magic, uint32_t count, uint32_t rows, uint32_t cols,
                          size_t payload);
std::vector<uint8_t> idx1(uint32_t magic, uint32_t count, size_t payload);
// An RFC 1952 member around `data`; `flags` adds the optional header fields (FTEXT 1, FHCRC 2,
// FEXTRA 4, FNAME 8, FCOMMENT 16).
std::vector<uint8_t> gzip(const std::vector<uint8_t> &data, uint8_t flags = 0);

}  // namespace vqm::test
