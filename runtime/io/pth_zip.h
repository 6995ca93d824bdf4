// The zip layer of a PyTorch .pth file (torch.save since 1.6): an index of the archive's entries
// from its central directory. Only what torch writes is read: stored (uncompressed) entries on
// one disk, ZIP64 records where torch writes them. Internal to runtime/ (used by pth.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vqm::detail {

struct ZipEntry {
  std::string name;
  uint64_t data_offset = 0;  // of the entry's bytes, from the start of the archive
  uint64_t size = 0;         // stored: compressed size == uncompressed size
};

// Reads the end of central directory record (ZIP64 if present), the central directory and every
// entry's local header. Every offset and size is checked against the `size` bytes at `p`, entry
// names are unique, and every entry is stored with its bytes inside the archive, before the
// central directory. Throws vqm::Error: format for a damaged or lying archive, unsupported for a
// valid zip that is not what torch writes (compressed or encrypted entries, several disks).
// Entries are in central directory order.
std::vector<ZipEntry> read_stored_zip(const uint8_t *p, uint64_t size, const std::string &src);

}  // namespace vqm::detail
