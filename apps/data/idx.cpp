// idx reader. The gzip layer is parsed here (RFC 1952) and the deflate payload inflated with
// stb_image's zlib decoder (runtime/io/inflate.h) into a buffer of exactly the size the trailer
// announces, so a corrupt or hostile .gz can neither grow memory without bound nor pass with a
// wrong CRC.
#include "apps/data/idx.h"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "apps/data/crc32.h"
#include "runtime/io/error.h"
#include "runtime/io/inflate.h"
#include "runtime/io/limits.h"

namespace vqm {

namespace {

constexpr uint32_t kIdx3Magic = 0x00000803;  // unsigned byte, 3 dimensions
constexpr uint32_t kIdx1Magic = 0x00000801;  // unsigned byte, 1 dimension

uint32_t be32(const uint8_t *p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
uint32_t le32(const uint8_t *p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

std::vector<uint8_t> read_file(const std::string &path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st))
    fail(ErrorCode::io, "cannot open idx file '" + path + "': no such file");
  if (fs::is_directory(st))
    fail(ErrorCode::io, "cannot read idx file '" + path + "': is a directory");
  std::ifstream f(path, std::ios::binary);
  if (!f)
    fail(ErrorCode::io,
         "cannot open idx file '" + path + "': " + std::string(std::strerror(errno)));
  f.seekg(0, std::ios::end);
  const std::streamoff end = f.tellg();
  if (end < 0) fail(ErrorCode::io, "cannot determine the size of idx file '" + path + "'");
  const uint64_t max_bytes = default_limits().max_file_bytes;
  if (static_cast<uint64_t>(end) > max_bytes)
    fail(ErrorCode::limit, "idx file '" + path + "' is " + std::to_string(end) +
                               " bytes, over max_file_bytes " + std::to_string(max_bytes));
  f.seekg(0, std::ios::beg);
  std::vector<uint8_t> bytes(static_cast<size_t>(end));
  if (!bytes.empty() && !f.read(reinterpret_cast<char *>(bytes.data()), end))
    fail(ErrorCode::io, "short read on idx file '" + path + "'");
  return bytes;
}

bool is_gzip(const std::vector<uint8_t> &b) {
  return b.size() >= 2 && b[0] == 0x1f && b[1] == 0x8b;
}

[[noreturn]] void bad_gzip(const std::string &path, const std::string &why) {
  fail(ErrorCode::format, "idx file '" + path + "': bad gzip stream: " + why);
}

// Single-member gzip -> payload. The trailer is the last 8 bytes, where a single-member file
// keeps it; the deflate stream must end exactly there, so a second member or trailing garbage
// is a format error rather than silently ignored data.
std::vector<uint8_t> gunzip(const std::vector<uint8_t> &b, const std::string &path) {
  enum : uint8_t { kFtext = 1, kFhcrc = 2, kFextra = 4, kFname = 8, kFcomment = 16 };
  const size_t n = b.size();
  if (n < 18)
    bad_gzip(path, "only " + std::to_string(n) + " bytes, shorter than a gzip header + trailer");
  if (b[2] != 8)
    bad_gzip(path, "compression method " + std::to_string(b[2]) + ", expected 8 (deflate)");
  const uint8_t flags = b[3];
  if (flags & 0xe0) bad_gzip(path, "reserved header flag bits set (" + std::to_string(flags) + ")");
  const size_t end = n - 8;  // start of the trailer
  size_t pos = 10;
  if (flags & kFextra) {
    if (pos + 2 > end) bad_gzip(path, "truncated FEXTRA length");
    const size_t xlen = b[pos] | (size_t{b[pos + 1]} << 8);
    pos += 2;
    if (xlen > end - pos)
      bad_gzip(path, "FEXTRA field of " + std::to_string(xlen) + " bytes is truncated");
    pos += xlen;
  }
  for (uint8_t f : {uint8_t{kFname}, uint8_t{kFcomment}}) {
    if (!(flags & f)) continue;
    while (pos < end && b[pos] != 0) ++pos;
    if (pos >= end) bad_gzip(path, f == kFname ? "unterminated FNAME" : "unterminated FCOMMENT");
    ++pos;  // the terminating zero
  }
  if (flags & kFhcrc) {
    if (pos + 2 > end) bad_gzip(path, "truncated FHCRC");
    const uint32_t want = b[pos] | (uint32_t{b[pos + 1]} << 8);
    const uint32_t got = crc32(b.data(), pos) & 0xffff;
    if (want != got) bad_gzip(path, "header CRC16 mismatch");
    pos += 2;
  }
  if (pos >= end) bad_gzip(path, "no deflate data");
  const uint32_t want_crc = le32(&b[end]);
  const uint32_t isize = le32(&b[end + 4]);
  // ISIZE is the length mod 2^32; stb's buffer API takes an int, and deflate cannot expand
  // more than ~1032:1, so larger claims are corruption, refused before allocating.
  const size_t deflate_len = end - pos;
  if (isize >= static_cast<uint32_t>(INT_MAX) || deflate_len > static_cast<size_t>(INT_MAX) - 8)
    bad_gzip(path, "ISIZE " + std::to_string(isize) + " is over the 2 GiB idx limit");
  if (static_cast<uint64_t>(isize) > uint64_t{1032} * deflate_len + 1024)
    bad_gzip(path, "ISIZE " + std::to_string(isize) + " is impossible for " +
                       std::to_string(deflate_len) + " compressed bytes (truncated file?)");
  // Uninitialised buffer: pages are only touched as the decoder writes them. One spare byte:
  // a stream longer than ISIZE then decodes past it and is reported below with both numbers.
  std::unique_ptr<uint8_t[]> out(new uint8_t[size_t{isize} + 1]);
  // The 8 trailer bytes are handed to the inflater too, as lookahead only: stb 2.27's Huffman
  // decoder refuses a valid stream whose last codes sit in its final 16 bits when no input
  // follows (nothings/stb#1456; Debian's t10k-labels .gz hits it). `consumed` then proves the
  // stream ended exactly where the trailer starts.
  int consumed = 0;
  const char *r = nullptr;
  const int got = inflate_raw(&b[pos], static_cast<int>(deflate_len + 8), out.get(),
                              static_cast<int>(isize) + 1, &consumed, &r);
  if (got < 0) {
    bad_gzip(path, std::string("inflate failed: ") + (r ? r : "corrupt deflate data") +
                       " (truncated or corrupt file?)");
  }
  if (static_cast<size_t>(consumed) > deflate_len)
    bad_gzip(path, "the deflate stream runs into the 8-byte trailer (truncated file?)");
  if (static_cast<size_t>(consumed) < deflate_len)
    bad_gzip(path, std::to_string(deflate_len - consumed) +
                       " bytes follow the deflate stream (multi-member gzip or trailing "
                       "garbage, not supported)");
  if (static_cast<uint32_t>(got) != isize)
    bad_gzip(path, "inflated " + std::to_string(got) + " bytes but the trailer says " +
                       std::to_string(isize) + " (truncated file?)");
  const uint8_t *data = out.get();
  const uint32_t crc = crc32(data, isize);
  if (crc != want_crc)
    bad_gzip(path, "CRC32 " + hex32(crc) + " does not match trailer " + hex32(want_crc));
  return std::vector<uint8_t>(data, data + isize);
}

std::vector<uint8_t> load_payload(const std::string &path) {
  std::vector<uint8_t> b = read_file(path);
  return is_gzip(b) ? gunzip(b, path) : b;
}

// Header check shared by both kinds: magic, then that the dimensions account for every byte.
void check_magic(const std::vector<uint8_t> &d, uint32_t want, size_t header,
                 const std::string &path) {
  if (d.size() < header)
    fail(ErrorCode::format, "idx file '" + path + "' is truncated: " + std::to_string(d.size()) +
                                " bytes, the header alone needs " + std::to_string(header));
  const uint32_t magic = be32(d.data());
  if (magic != want)
    fail(ErrorCode::format, "idx file '" + path + "' has magic " + hex32(magic) + ", expected " +
                                hex32(want) +
                                (want == kIdx3Magic ? " (idx3 images)" : " (idx1 labels)"));
}

void check_payload(uint64_t need, size_t have, const std::string &path, const std::string &dims) {
  if (have != need)
    fail(ErrorCode::format, "idx file '" + path + "': header says " + dims + " = " +
                                std::to_string(need) + " data bytes but the file holds " +
                                std::to_string(have) +
                                (have < need ? " (truncated)" : " (trailing bytes)"));
}

}  // namespace

IdxImages load_idx_images(const std::string &path) {
  const std::vector<uint8_t> d = load_payload(path);
  check_magic(d, kIdx3Magic, 16, path);
  const uint32_t count = be32(&d[4]), rows = be32(&d[8]), cols = be32(&d[12]);
  const std::string dims =
      std::to_string(count) + " x " + std::to_string(rows) + " x " + std::to_string(cols);
  if (count > static_cast<uint32_t>(INT_MAX) || rows == 0 || cols == 0 ||
      rows > static_cast<uint32_t>(INT_MAX) || cols > static_cast<uint32_t>(INT_MAX))
    fail(ErrorCode::format, "idx file '" + path + "' has implausible dimensions " + dims);
  // Each factor is < 2^31, but three of them can overflow 64 bits.
  uint64_t need = 0;
  if (__builtin_mul_overflow(uint64_t{count}, uint64_t{rows}, &need) ||
      __builtin_mul_overflow(need, uint64_t{cols}, &need))
    fail(ErrorCode::format, "idx file '" + path + "' dimensions " + dims + " overflow");
  check_payload(need, d.size() - 16, path, dims);
  IdxImages out;
  out.count = static_cast<int>(count);
  out.rows = static_cast<int>(rows);
  out.cols = static_cast<int>(cols);
  out.pixels.assign(d.begin() + 16, d.end());
  return out;
}

std::vector<uint8_t> load_idx_labels(const std::string &path) {
  const std::vector<uint8_t> d = load_payload(path);
  check_magic(d, kIdx1Magic, 8, path);
  const uint32_t count = be32(&d[4]);
  if (count > static_cast<uint32_t>(INT_MAX))
    fail(ErrorCode::format,
         "idx file '" + path + "' has implausible count " + std::to_string(count));
  check_payload(count, d.size() - 8, path, std::to_string(count) + " labels");
  return std::vector<uint8_t>(d.begin() + 8, d.end());
}

std::string find_idx_file(const std::string &dir, const std::string &split,
                          const std::string &kind) {
  if (split != "t10k" && split != "train")
    fail(ErrorCode::invalid_argument,
         "find_idx_file: split must be \"t10k\" or \"train\", got \"" + split + "\"");
  const char *suffix = nullptr;
  if (kind == "images") {
    suffix = "-images-idx3-ubyte";
  } else if (kind == "labels") {
    suffix = "-labels-idx1-ubyte";
  } else {
    fail(ErrorCode::invalid_argument,
         "find_idx_file: kind must be \"images\" or \"labels\", got \"" + kind + "\"");
  }
  namespace fs = std::filesystem;
  const fs::path base = fs::path(dir) / (split + suffix);
  std::string tried;
  // Uncompressed first: if someone unpacked the files, reading them is cheaper.
  for (const std::string ext : {"", ".gz"}) {
    const std::string p = base.string() + ext;
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p;
    tried += (tried.empty() ? "" : ", ") + p;
  }
  fail(ErrorCode::io, "no Fashion-MNIST/MNIST idx file found; tried " + tried);
}

}  // namespace vqm
