// Stored-zip index for .pth files. Layout (APPNOTE.TXT 6.3): entries (local header, name, extra,
// bytes), then the central directory (one record per entry), then, for ZIP64, the ZIP64 end of
// central directory record and its locator, then the end of central directory record (EOCD).
// torch.save (miniz) stores every entry uncompressed, pads the local extra field so that the
// bytes start on a 64-byte boundary, sets flag bit 3 (sizes in a data descriptor after the bytes,
// zeros in the local header) and always writes the ZIP64 records. So sizes and offsets come from
// the central directory, and local headers are read only for the length of their name and extra.
// CRC-32s are not checked: torch.load does not check them either (torch 2.x can write files
// without them), and every byte range is checked against the file anyway.
#include "pth_zip.h"

#include <algorithm>
#include <cstdio>
#include <unordered_set>

#include "error.h"
#include "reader_util.h"

namespace vqm::detail {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint64_t kLocalSize = 30;
constexpr uint64_t kCentralSize = 46;
constexpr uint64_t kEocdSize = 22;
constexpr uint64_t kZip64EocdSize = 56;
constexpr uint64_t kZip64LocatorSize = 20;
constexpr uint64_t kMaxComment = 0xffff;
constexpr uint32_t k32 = 0xffffffff;  // "see the ZIP64 record" in a 32-bit field
constexpr uint16_t kZip64ExtraId = 0x0001;

// Little-endian field of `n` bytes; byte by byte, so alignment does not matter.
uint64_t le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string num(uint64_t v) {
  return std::to_string(v);
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

struct Directory {
  uint64_t entries = 0;
  uint64_t offset = 0;  // of the central directory
  uint64_t size = 0;
  uint64_t end_limit = 0;  // the central directory must end by here (the first EOCD record)
};

// The EOCD is the last record; a comment of up to 64 KiB may follow it, and must end the file
// exactly (a signature inside the comment would not).
uint64_t find_eocd(const uint8_t *p, uint64_t size, const std::string &src) {
  if (size < kEocdSize) {
    fail(ErrorCode::format, src + ": file is " + num(size) +
                                " bytes, too short for a zip archive (torch.save writes zip files; "
                                "the end of central directory record alone needs 22)");
  }
  const uint64_t span = std::min(size - kEocdSize, kMaxComment);
  for (uint64_t back = 0; back <= span; ++back) {
    const uint64_t pos = size - kEocdSize - back;
    if (le(p + pos, 4) == kEocdSig && le(p + pos + 20, 2) == back) return pos;
  }
  const std::string last = num(span + kEocdSize);
  fail(ErrorCode::format,
       src + ": not a zip archive: no end of central directory record in its last " + last +
           " bytes (torch.save since 1.6 writes zip files)");
}

// Fills `d` from the ZIP64 EOCD record that the locator just before the EOCD at `eocd` points to.
void read_zip64(const uint8_t *p, uint64_t eocd, const std::string &src, Directory *d,
                uint64_t *disk, uint64_t *cd_disk, uint64_t *disk_entries) {
  const uint8_t *loc = p + eocd - kZip64LocatorSize;
  const uint64_t rec = le(loc + 8, 8);
  const uint64_t loc_pos = eocd - kZip64LocatorSize;
  if (le(loc + 4, 4) != 0 || le(loc + 16, 4) != 1) {
    fail(ErrorCode::unsupported, src + ": zip archive spans " + num(le(loc + 16, 4)) +
                                     " disks (ZIP64 record on disk " + num(le(loc + 4, 4)) +
                                     "); only single-file archives are read");
  }
  if (rec > loc_pos || loc_pos - rec < kZip64EocdSize) {
    fail(ErrorCode::format, src + ": ZIP64 end of central directory record at offset " + num(rec) +
                                " does not fit before its locator at " + num(loc_pos));
  }
  const uint8_t *r = p + rec;
  if (le(r, 4) != kZip64EocdSig) {
    fail(ErrorCode::format, src + ": no ZIP64 end of central directory record at offset " +
                                num(rec) + " (signature " + hex(le(r, 4)) + ")");
  }
  // The record's own size field counts the bytes after it; extensible data may follow the fixed
  // fields, but the record must still end before the locator.
  const uint64_t rec_size = le(r + 4, 8);
  if (rec_size < kZip64EocdSize - 12 || rec_size > loc_pos - rec - 12) {
    fail(ErrorCode::format, src + ": ZIP64 end of central directory record size " + num(rec_size) +
                                " does not fit between offset " + num(rec) +
                                " and its locator at " + num(loc_pos));
  }
  *disk = le(r + 16, 4);
  *cd_disk = le(r + 20, 4);
  *disk_entries = le(r + 24, 8);
  d->entries = le(r + 32, 8);
  d->size = le(r + 40, 8);
  d->offset = le(r + 48, 8);
  d->end_limit = rec;
}

Directory find_directory(const uint8_t *p, uint64_t size, const std::string &src) {
  const uint64_t eocd = find_eocd(p, size, src);
  const uint8_t *e = p + eocd;
  uint64_t disk = le(e + 4, 2), cd_disk = le(e + 6, 2), disk_entries = le(e + 8, 2);
  Directory d;
  d.entries = le(e + 10, 2);
  d.size = le(e + 12, 4);
  d.offset = le(e + 16, 4);
  d.end_limit = eocd;
  const bool saturated = d.entries == 0xffff || d.size == k32 || d.offset == k32;
  if (eocd >= kZip64LocatorSize && le(e - kZip64LocatorSize, 4) == kZip64LocatorSig) {
    const Directory classic = d;
    read_zip64(p, eocd, src, &d, &disk, &cd_disk, &disk_entries);
    // torch writes both records; a 32-bit field that is not saturated must say the same.
    if ((classic.entries != 0xffff && classic.entries != d.entries) ||
        (classic.size != k32 && classic.size != d.size) ||
        (classic.offset != k32 && classic.offset != d.offset)) {
      fail(ErrorCode::format,
           src + ": the end of central directory records disagree: " + num(classic.entries) +
               " entries, " + num(classic.size) + " bytes at " + num(classic.offset) +
               " against ZIP64 " + num(d.entries) + " entries, " + num(d.size) + " bytes at " +
               num(d.offset));
    }
  } else if (saturated) {
    fail(ErrorCode::format, src +
                                ": end of central directory record has ZIP64 markers "
                                "(0xffff/0xffffffff) but there is no ZIP64 locator before it");
  }
  if (disk != 0 || cd_disk != 0 || disk_entries != d.entries) {
    fail(ErrorCode::unsupported, src + ": zip archive spans several disks (disk " + num(disk) +
                                     ", central directory on disk " + num(cd_disk) +
                                     "); only single-file archives are read");
  }
  if (d.offset > d.end_limit || d.size > d.end_limit - d.offset) {
    fail(ErrorCode::format, src + ": central directory of " + num(d.size) + " bytes at offset " +
                                num(d.offset) + " runs past its end record at " + num(d.end_limit));
  }
  if (d.entries > d.size / kCentralSize) {
    fail(ErrorCode::format, src + ": " + num(d.entries) + " entries cannot fit in a " +
                                num(d.size) + "-byte central directory (46 bytes each at least)");
  }
  return d;
}

// The ZIP64 extra field (id 1) holds, in this order, whichever of the uncompressed size,
// compressed size and local header offset are 0xffffffff in the central record.
void read_zip64_extra(const uint8_t *x, uint64_t n, const std::string &ctx, uint64_t *usize,
                      uint64_t *csize, uint64_t *local) {
  uint64_t *wanted[3] = {usize, csize, local};
  bool found = false;
  for (uint64_t at = 0; at < n;) {
    if (n - at < 4) fail(ErrorCode::format, ctx + ": extra field ends inside a field header");
    const uint64_t id = le(x + at, 2), len = le(x + at + 2, 2);
    if (len > n - at - 4) {
      fail(ErrorCode::format, ctx + ": extra field " + hex(id) + " of " + num(len) +
                                  " bytes runs past the extra data (" + num(n - at - 4) +
                                  " bytes left)");
    }
    if (id == kZip64ExtraId && !found) {
      found = true;
      uint64_t used = 0;
      for (uint64_t *field : wanted) {
        if (*field != k32) continue;
        if (len - used < 8) {
          fail(ErrorCode::format, ctx + ": ZIP64 extra field of " + num(len) +
                                      " bytes lacks a value its record marks 0xffffffff");
        }
        *field = le(x + at + 4 + used, 8);
        used += 8;
      }
    }
    at += 4 + len;
  }
  if (!found && (*usize == k32 || *csize == k32 || *local == k32)) {
    fail(ErrorCode::format, ctx +
                                ": a size or offset is 0xffffffff but there is no ZIP64 "
                                "extra field");
  }
}

// Checks the local header at entry.data_offset (still the header's offset here) and moves
// data_offset to the entry's first byte.
void read_local_header(const uint8_t *p, const Directory &d, uint64_t method,
                       const std::string &ctx, ZipEntry *entry) {
  const uint64_t at = entry->data_offset;
  if (at > d.offset || d.offset - at < kLocalSize) {
    fail(ErrorCode::format, ctx + ": local header offset " + num(at) +
                                " is not before the central directory at " + num(d.offset));
  }
  const uint8_t *h = p + at;
  if (le(h, 4) != kLocalSig) {
    fail(ErrorCode::format,
         ctx + ": no local header at offset " + num(at) + " (signature " + hex(le(h, 4)) + ")");
  }
  if (le(h + 8, 2) != method) {
    fail(ErrorCode::format, ctx + ": local header says method " + num(le(h + 8, 2)) +
                                ", central directory says " + num(method));
  }
  const uint64_t name_len = le(h + 26, 2), extra_len = le(h + 28, 2);
  // All three terms are small or checked against d.offset, so the sums cannot wrap.
  const uint64_t data = at + kLocalSize + name_len + extra_len;
  if (data > d.offset || entry->size > d.offset - data) {
    fail(ErrorCode::format, ctx + ": " + num(entry->size) + " bytes at offset " + num(data) +
                                " run past the start of the central directory at " + num(d.offset));
  }
  if (name_len != entry->name.size() ||
      entry->name.compare(0, std::string::npos, reinterpret_cast<const char *>(h + kLocalSize),
                          name_len) != 0) {
    fail(ErrorCode::format,
         ctx + ": local header names it " +
             quote_name(std::string(reinterpret_cast<const char *>(h + kLocalSize), name_len)));
  }
  entry->data_offset = data;
}

// One central directory record at `at` (inside the directory); returns its length.
uint64_t read_central(const uint8_t *p, const Directory &d, uint64_t at, uint64_t index,
                      const std::string &src, ZipEntry *entry) {
  const uint64_t end = d.offset + d.size;
  std::string ctx = src + ": central directory entry " + num(index);
  if (end - at < kCentralSize) {
    fail(ErrorCode::format, ctx + " at offset " + num(at) + " runs past the end of the " +
                                "central directory at " + num(end));
  }
  const uint8_t *c = p + at;
  if (le(c, 4) != kCentralSig) {
    fail(ErrorCode::format, ctx + " at offset " + num(at) + ": signature is " + hex(le(c, 4)) +
                                ", expected " + hex(kCentralSig));
  }
  const uint64_t flags = le(c + 8, 2), method = le(c + 10, 2);
  uint64_t csize = le(c + 20, 4), usize = le(c + 24, 4), local = le(c + 42, 4);
  const uint64_t name_len = le(c + 28, 2), extra_len = le(c + 30, 2), comment_len = le(c + 32, 2);
  const uint64_t len = kCentralSize + name_len + extra_len + comment_len;
  if (len > end - at) {
    fail(ErrorCode::format, ctx + ": name, extra and comment (" + num(len - kCentralSize) +
                                " bytes) run past the end of the central directory at " + num(end));
  }
  entry->name.assign(reinterpret_cast<const char *>(c + kCentralSize), name_len);
  ctx = src + ": zip entry " + quote_name(entry->name);
  read_zip64_extra(c + kCentralSize + name_len, extra_len, ctx, &usize, &csize, &local);
  if (le(c + 34, 2) != 0) {
    fail(ErrorCode::unsupported,
         ctx + " starts on disk " + num(le(c + 34, 2)) + "; only single-file archives are read");
  }
  if (flags & 1) fail(ErrorCode::unsupported, ctx + " is encrypted");
  if (method != 0) {
    fail(ErrorCode::unsupported, ctx + " is compressed (method " + num(method) +
                                     "); only stored entries are read (torch.save stores them)");
  }
  if (csize != usize) {
    fail(ErrorCode::format, ctx + " is stored but its compressed size " + num(csize) +
                                " differs from its size " + num(usize));
  }
  entry->size = usize;
  entry->data_offset = local;
  read_local_header(p, d, method, ctx, entry);
  return len;
}

}  // namespace

std::vector<ZipEntry> read_stored_zip(const uint8_t *p, uint64_t size, const std::string &src) {
  const Directory d = find_directory(p, size, src);
  // entries * 46 <= the directory's size <= the file's size: the reservation is bounded.
  std::vector<ZipEntry> entries(static_cast<size_t>(d.entries));
  std::unordered_set<std::string> names;
  uint64_t at = d.offset;
  for (uint64_t i = 0; i < d.entries; ++i) {
    at += read_central(p, d, at, i, src, &entries[static_cast<size_t>(i)]);
    // Two entries of one name would let two readers pick different bytes for it.
    if (!names.insert(entries[static_cast<size_t>(i)].name).second) {
      fail(ErrorCode::format, src + ": zip entry " +
                                  quote_name(entries[static_cast<size_t>(i)].name) +
                                  " appears twice in the central directory");
    }
  }
  if (at != d.offset + d.size) {
    fail(ErrorCode::format, src + ": central directory has " + num(d.offset + d.size - at) +
                                " bytes after its " + num(d.entries) + " entries");
  }
  return entries;
}

}  // namespace vqm::detail
