// CRC-32 (IEEE 802.3, reflected: the checksum of gzip, zlib.crc32 and Python's zlib.crc32), for
// gzip trailers and for telling batch jobs apart (apps/batch_job.h). Not a cryptographic hash.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace vqm {

// CRC of p[0..n) continuing from `crc` (0 to start), so data may be fed in pieces.
uint32_t crc32(const uint8_t *p, size_t n, uint32_t crc = 0);
// CRC of a whole file, read in chunks. Throws vqm::Error(io) naming the file.
uint32_t crc32_file(const std::string &path, uint64_t *size = nullptr);
// "0x%08x", as the tools print checksums.
std::string hex32(uint32_t v);

}  // namespace vqm
