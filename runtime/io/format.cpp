// .vqm v1 reader, validator and writer. The byte layout is specified in docs/vqm-format.md.
//
// The reader treats every byte as hostile: each number from the header or the JSON is checked with
// overflow-safe arithmetic against the bytes that actually exist before it is used, and the
// limits in Limits are checked before anything is allocated from an untrusted size.
#include "format.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "error.h"
#include "reader_util.h"

namespace vqm {

// Helpers shared with safetensors.cpp, which declares the same signatures (there is no private
// header for the two readers; see the comment there).
namespace detail {

std::string quote_name(const std::string &name) {
  // Names come from the file: keep messages printable and short even for a hostile name.
  constexpr size_t kMaxShown = 120;
  std::string out;
  for (size_t i = 0; i < name.size() && i < kMaxShown; ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (name.size() > kMaxShown) out += "...(" + std::to_string(name.size()) + " bytes)";
  return "'" + out + "'";
}

// A JSON value as it appears in an error message: type for containers and strings, the literal
// for numbers (so "-64" or "1.5" shows up, not just "number").
std::string describe_json(const nlohmann::json &j) {
  if (j.is_number()) return j.dump();
  if (j.is_null()) return "null";
  if (j.is_boolean()) return j.get<bool>() ? "true" : "false";
  const std::string type = j.type_name();
  if (j.is_array() && j.size() <= 4) {
    const std::string text = j.dump();
    if (text.size() <= 60) return "the array " + text;
  }
  return (type == "array" || type == "object" ? "an " : "a ") + type;
}

const uint8_t *aligned_start(const std::vector<uint8_t> &buf) {
  const auto addr = reinterpret_cast<uintptr_t>(buf.data());
  const uintptr_t pad = (kVqmAlignment - addr % kVqmAlignment) % kVqmAlignment;
  return buf.data() + pad;
}

// The buffer holds the file at aligned_start(): `size` bytes plus alignment slack, so that a
// 64-byte aligned data_offset is 64-byte aligned in memory too.
std::shared_ptr<std::vector<uint8_t>> alloc_aligned(uint64_t size, const std::string &src) {
  constexpr uint64_t kSlack = kVqmAlignment - 1;
  if (size > SIZE_MAX - kSlack) {
    fail(ErrorCode::out_of_memory, src + ": cannot allocate " + std::to_string(size) + " bytes");
  }
  try {
    return std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(size + kSlack));
  } catch (const std::bad_alloc &) {
    fail(ErrorCode::out_of_memory, src + ": cannot allocate " + std::to_string(size) + " bytes");
  }
}

void check_file_limit(uint64_t size, const Limits &limits, const std::string &src) {
  if (size > limits.max_file_bytes) {
    fail(ErrorCode::limit, src + ": file is " + std::to_string(size) +
                               " bytes, over the limit max_file_bytes (" +
                               std::to_string(limits.max_file_bytes) + ")");
  }
}

std::shared_ptr<std::vector<uint8_t>> load_memory(const void *data, size_t size,
                                                  const Limits &limits, const std::string &src) {
  if (data == nullptr && size != 0) {
    fail(ErrorCode::invalid_argument, src + ": data is NULL but size is " + std::to_string(size));
  }
  check_file_limit(size, limits, src);
  auto buf = alloc_aligned(size, src);
  if (size != 0) std::memcpy(const_cast<uint8_t *>(aligned_start(*buf)), data, size);
  return buf;
}

std::shared_ptr<std::vector<uint8_t>> load_file(const std::string &path, const Limits &limits,
                                                uint64_t *size_out) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise block until a writer appears; it is
  // refused below as not a regular file (for regular files the flag changes nothing).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    fail(ErrorCode::io, "cannot open '" + path + "': " + std::strerror(errno));
  }
  // Closes fd on every path out, including exceptions.
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    fail(ErrorCode::io, "cannot stat '" + path + "': " + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) fail(ErrorCode::io, "cannot read '" + path + "': it is a directory");
  // Pipes and devices have no trustworthy size to check against the limits.
  if (!S_ISREG(st.st_mode)) {
    fail(ErrorCode::io, "cannot read '" + path + "': not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  check_file_limit(size, limits, path);
  auto buf = alloc_aligned(size, path);
  auto *dst = const_cast<uint8_t *>(aligned_start(*buf));
  uint64_t done = 0;
  while (done < size) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(size - done, 1 << 30));
    const ssize_t n = ::read(fd, dst + done, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(ErrorCode::io, "cannot read '" + path + "': " + std::strerror(errno));
    }
    if (n == 0) {
      fail(ErrorCode::io, "cannot read '" + path + "': short read, got " + std::to_string(done) +
                              " of " + std::to_string(size) + " bytes (file shrank?)");
    }
    done += static_cast<uint64_t>(n);
  }
  *size_out = size;
  return buf;
}

// Parses a JSON document and rejects duplicate object keys anywhere in it: nlohmann keeps the
// last duplicate silently, and two readers that pick different duplicates would see different
// files.
nlohmann::json parse_json(const uint8_t *p, size_t n, const std::string &src) {
  // Nesting is bounded because nlohmann's copy, compare and dump recurse: a 64 MiB document of
  // '[' that parses fine would overflow the stack of whoever copies meta() later.
  constexpr int kMaxDepth = 64;
  std::vector<std::unordered_set<std::string>> open_objects;
  // Errors thrown here propagate out of nlohmann::json::parse, which unwinds cleanly.
  auto callback = [&](int depth, nlohmann::json::parse_event_t event,
                      nlohmann::json &parsed) -> bool {
    using E = nlohmann::json::parse_event_t;
    if ((event == E::object_start || event == E::array_start) && depth >= kMaxDepth) {
      fail(ErrorCode::format,
           src + ": JSON header: nested deeper than " + std::to_string(kMaxDepth) + " levels");
    }
    if (event == E::object_start) {
      open_objects.emplace_back();
    } else if (event == E::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == E::key && !open_objects.empty() && parsed.is_string()) {
      const auto &key = parsed.get_ref<const std::string &>();
      if (!open_objects.back().insert(key).second) {
        fail(ErrorCode::format, src + ": JSON header: duplicate key " + quote_name(key));
      }
    }
    return true;
  };
  // nlohmann's lexer takes a NUL byte for the end of input and would ignore whatever follows it.
  // JSON text never contains a raw NUL, so any NUL means the JSON region is wrong.
  if (const void *nul = std::memchr(p, 0, n)) {
    const auto at = static_cast<size_t>(static_cast<const uint8_t *>(nul) - p);
    fail(ErrorCode::format, src + ": JSON header: NUL byte at position " + std::to_string(at) +
                                " of " + std::to_string(n));
  }
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(p, p + n, callback);
  } catch (const nlohmann::json::exception &e) {
    fail(ErrorCode::format, src + ": JSON header: " + e.what());
  }
  return doc;
}

// Reads a JSON "shape" array. `ctx` starts every message ("<src>: tensor 'x'").
std::vector<int64_t> parse_shape(const nlohmann::json &j, const Limits &limits,
                                 const std::string &ctx) {
  if (!j.is_array()) {
    fail(ErrorCode::format,
         ctx + ": shape is " + describe_json(j) + ", expected an array of integers");
  }
  if (j.size() > limits.max_rank) {
    fail(ErrorCode::limit, ctx + ": rank " + std::to_string(j.size()) +
                               " is over the limit max_rank (" + std::to_string(limits.max_rank) +
                               ")");
  }
  const uint64_t max_dim = limits.max_dim < 0 ? 0 : static_cast<uint64_t>(limits.max_dim);
  std::vector<int64_t> shape;
  shape.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    const auto &d = j[i];
    const std::string where = ctx + ": shape[" + std::to_string(i) + "]";
    if (d.is_number_unsigned()) {
      const uint64_t v = d.get<uint64_t>();
      if (v > max_dim) {
        fail(ErrorCode::limit, where + " is " + std::to_string(v) + ", over the limit max_dim (" +
                                   std::to_string(max_dim) + ")");
      }
      shape.push_back(static_cast<int64_t>(v));
    } else if (d.is_number_integer()) {  // nlohmann stores non-negative literals as unsigned
      fail(ErrorCode::format, where + " is " + d.dump() + ", dimensions must be >= 0");
    } else {
      fail(ErrorCode::format, where + " is " + describe_json(d) + ", expected an integer");
    }
  }
  // numel() multiplies left to right in int64; a zero later in the shape must not hide an
  // overflowing prefix.
  int64_t count = 1;
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(count, d, &count)) {
      fail(ErrorCode::format,
           ctx + ": element count of shape " + shape_str(shape) + " overflows 64 bits");
    }
  }
  return shape;
}

// Reads a non-negative integer field; `what` names it ("offset", "data_offsets[1]").
uint64_t parse_u64(const nlohmann::json &j, const std::string &ctx, const std::string &what) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  fail(ErrorCode::format,
       ctx + ": " + what + " is " + describe_json(j) + ", expected a non-negative integer");
}

// Byte count of dtype+shape, failing with a format error on overflow.
uint64_t checked_nbytes(DType dtype, const std::vector<int64_t> &shape, const std::string &ctx) {
  uint64_t n = 0;
  if (!dtype_nbytes(dtype, shape, &n)) {
    fail(ErrorCode::format,
         ctx + ": " + dtype_name(dtype) + " " + shape_str(shape) + " needs more than 2^64 bytes");
  }
  return n;
}

void check_tensor_limit(uint64_t nbytes, const Limits &limits, const std::string &ctx) {
  if (nbytes > limits.max_tensor_bytes) {
    fail(ErrorCode::limit, ctx + ": " + std::to_string(nbytes) +
                               " bytes is over the limit max_tensor_bytes (" +
                               std::to_string(limits.max_tensor_bytes) + ")");
  }
}

// Rejects overlapping byte ranges. Empty tensors occupy no bytes and cannot overlap anything.
void check_no_overlap(const std::vector<TensorInfo> &tensors, const std::string &src) {
  std::vector<const TensorInfo *> order;
  order.reserve(tensors.size());
  for (const auto &t : tensors)
    if (t.nbytes != 0) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const TensorInfo *a, const TensorInfo *b) { return a->offset < b->offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const TensorInfo &a = *order[i - 1];
    const TensorInfo &b = *order[i];
    // Ranges were checked against the data size, so offset + nbytes cannot overflow here.
    if (b.offset < a.offset + a.nbytes) {
      fail(ErrorCode::format,
           src + ": tensors " + quote_name(a.name) + " [" + std::to_string(a.offset) + ", " +
               std::to_string(a.offset + a.nbytes) + ") and " + quote_name(b.name) + " [" +
               std::to_string(b.offset) + ", " + std::to_string(b.offset + b.nbytes) + ") overlap");
    }
  }
}

}  // namespace detail

namespace {

using detail::describe_json;
using detail::quote_name;
using nlohmann::json;

struct HeaderField {
  const char *name;
  uint32_t offset;
  uint32_t size;
};
constexpr HeaderField kHeaderFields[] = {
    {"magic", 0, 4},        {"version", 4, 4},    {"header_size", 8, 4},  {"alignment", 12, 4},
    {"json_offset", 16, 8}, {"json_size", 24, 8}, {"data_offset", 32, 8}, {"data_size", 40, 8},
    {"flags", 48, 8},       {"reserved", 56, 8},
};
constexpr char kMagic[4] = {'V', 'Q', 'M', 'F'};

uint64_t load_le(const uint8_t *p, int nbytes) {
  uint64_t v = 0;
  for (int i = nbytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void store_le(uint8_t *p, uint64_t v, int nbytes) {
  for (int i = 0; i < nbytes; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

std::string u64s(uint64_t v) {
  return std::to_string(v);
}

[[noreturn]] void format_error(const std::string &msg) {
  fail(ErrorCode::format, msg);
}

struct Header {
  uint64_t json_offset, json_size, data_offset, data_size;
};

Header parse_header(const uint8_t *p, uint64_t size, const Limits &limits, const std::string &src) {
  // Check the magic first when it is there: a wrong file type is a better message than its length.
  if (size >= 4 && std::memcmp(p, kMagic, 4) != 0) {
    char shown[64];
    std::snprintf(shown, sizeof shown, "%02x %02x %02x %02x", p[0], p[1], p[2], p[3]);
    format_error(src + ": not a .vqm file: magic is " + shown + ", expected 'VQMF' (56 51 4d 46)");
  }
  if (size < kVqmHeaderSize) {
    const char *field = "magic";
    for (const auto &f : kHeaderFields)
      if (size >= f.offset) field = f.name;
    format_error(src + ": file is " + u64s(size) + " bytes, the .vqm header needs " +
                 u64s(kVqmHeaderSize) + " (truncated in field " + field + ")");
  }
  const uint64_t version = load_le(p + 4, 4);
  if (version == 0) format_error(src + ": version is 0, expected " + u64s(kVqmVersion));
  if (version > kVqmVersion) {
    fail(ErrorCode::unsupported, src + ": version is " + u64s(version) +
                                     ", newer than this reader supports (" + u64s(kVqmVersion) +
                                     ")");
  }
  const uint64_t header_size = load_le(p + 8, 4);
  if (header_size != kVqmHeaderSize) {
    format_error(src + ": header_size is " + u64s(header_size) + ", expected " +
                 u64s(kVqmHeaderSize));
  }
  const uint64_t alignment = load_le(p + 12, 4);
  if (alignment != kVqmAlignment) {
    format_error(src + ": alignment is " + u64s(alignment) + ", expected " + u64s(kVqmAlignment));
  }
  const uint64_t flags = load_le(p + 48, 8);
  if (flags != 0) format_error(src + ": flags is " + u64s(flags) + ", must be 0 in version 1");
  const uint64_t reserved = load_le(p + 56, 8);
  if (reserved != 0) {
    format_error(src + ": reserved is " + u64s(reserved) + ", must be 0 in version 1");
  }

  Header h{load_le(p + 16, 8), load_le(p + 24, 8), load_le(p + 32, 8), load_le(p + 40, 8)};
  if (h.json_offset != kVqmHeaderSize) {
    format_error(src + ": json_offset is " + u64s(h.json_offset) + ", expected " +
                 u64s(kVqmHeaderSize) + " (the JSON follows the header)");
  }
  uint64_t json_end = 0;
  if (add_overflow_u64(h.json_offset, h.json_size, &json_end) || json_end > size) {
    format_error(src + ": json_size " + u64s(h.json_size) + " at json_offset " +
                 u64s(h.json_offset) + " runs past the end of the file (" + u64s(size) + " bytes)");
  }
  if (h.json_size > limits.max_json_bytes) {
    fail(ErrorCode::limit, src + ": json_size " + u64s(h.json_size) +
                               " is over the limit max_json_bytes (" + u64s(limits.max_json_bytes) +
                               ")");
  }
  if (h.data_offset % kVqmAlignment != 0) {
    format_error(src + ": data_offset " + u64s(h.data_offset) + " is not a multiple of " +
                 u64s(kVqmAlignment));
  }
  if (h.data_offset < json_end) {
    format_error(src + ": data_offset " + u64s(h.data_offset) +
                 " is inside the JSON, which ends at " + u64s(json_end));
  }
  if (h.data_offset > size) {
    format_error(src + ": data_offset " + u64s(h.data_offset) + " is past the end of the file (" +
                 u64s(size) + " bytes)");
  }
  uint64_t data_end = 0;
  if (add_overflow_u64(h.data_offset, h.data_size, &data_end) || data_end != size) {
    format_error(src + ": data_offset " + u64s(h.data_offset) + " + data_size " +
                 u64s(h.data_size) + " must equal the file size " + u64s(size));
  }
  return h;
}

const std::string &required_string(const json &entry, const char *key, const std::string &ctx) {
  const auto it = entry.find(key);
  if (it == entry.end()) format_error(ctx + ": missing '" + key + "'");
  if (!it->is_string()) {
    format_error(ctx + ": '" + key + "' is " + describe_json(*it) + ", expected a string");
  }
  return it->get_ref<const std::string &>();
}

const json &required(const json &entry, const char *key, const std::string &ctx) {
  const auto it = entry.find(key);
  if (it == entry.end()) format_error(ctx + ": missing '" + key + "'");
  return *it;
}

TensorInfo parse_tensor(const json &entry, size_t index, const uint8_t *data, uint64_t data_size,
                        const Limits &limits, const std::string &src) {
  const std::string slot = src + ": tensors[" + std::to_string(index) + "]";
  if (!entry.is_object()) {
    format_error(slot + " is " + describe_json(entry) + ", expected an object");
  }
  TensorInfo t;
  t.name = required_string(entry, "name", slot);
  if (t.name.empty()) format_error(slot + ": tensor name is empty");
  const std::string ctx = src + ": tensor " + quote_name(t.name);

  const std::string &dtype = required_string(entry, "dtype", ctx);
  if (!dtype_from_name(dtype, &t.dtype)) {
    fail(ErrorCode::unsupported, ctx + ": unknown dtype " + quote_name(dtype) +
                                     " (version 1 knows f32, f16, bf16, i32, i64, i8, u8, q2..q7)");
  }
  t.shape = detail::parse_shape(required(entry, "shape", ctx), limits, ctx);
  t.offset = detail::parse_u64(required(entry, "offset", ctx), ctx, "offset");
  t.nbytes = detail::parse_u64(required(entry, "nbytes", ctx), ctx, "nbytes");

  const uint64_t expected = detail::checked_nbytes(t.dtype, t.shape, ctx);
  if (t.nbytes != expected) {
    format_error(ctx + ": nbytes is " + u64s(t.nbytes) + ", but " + dtype_name(t.dtype) + " " +
                 shape_str(t.shape) + " needs " + u64s(expected));
  }
  detail::check_tensor_limit(t.nbytes, limits, ctx);
  if (t.offset % kVqmAlignment != 0) {
    format_error(ctx + ": offset " + u64s(t.offset) + " is not a multiple of " +
                 u64s(kVqmAlignment));
  }
  uint64_t end = 0;
  if (add_overflow_u64(t.offset, t.nbytes, &end) || end > data_size) {
    format_error(ctx + ": offset " + u64s(t.offset) + " + nbytes " + u64s(t.nbytes) +
                 " runs past the end of the data section (data_size " + u64s(data_size) + ")");
  }
  t.data = data + t.offset;

  if (const auto it = entry.find("scale"); it != entry.end()) {
    if (!it->is_string() || it->get_ref<const std::string &>().empty()) {
      format_error(ctx + ": 'scale' is " + describe_json(*it) + ", expected a tensor name");
    }
    t.scale = it->get<std::string>();
  }
  if (const auto it = entry.find("quant_axis"); it != entry.end()) {
    const int64_t rank = static_cast<int64_t>(t.shape.size());
    // nlohmann stores every non-negative integer literal as unsigned, so negatives fail here too.
    if (!it->is_number_unsigned() || it->get<uint64_t>() >= static_cast<uint64_t>(rank)) {
      format_error(ctx + ": quant_axis is " + describe_json(*it) + ", expected an integer in [0, " +
                   std::to_string(rank) + ")");
    }
    t.quant_axis = static_cast<int>(it->get<uint64_t>());
  }
  return t;
}

void parse_document(const uint8_t *p, uint64_t size, const Limits &limits, const std::string &src,
                    json *meta, std::vector<TensorInfo> *tensors) {
  const Header h = parse_header(p, size, limits, src);
  json doc = detail::parse_json(p + h.json_offset, static_cast<size_t>(h.json_size), src);
  if (!doc.is_object()) {
    format_error(src + ": JSON header is " + describe_json(doc) + ", expected an object");
  }
  const auto it = doc.find("tensors");
  if (it == doc.end()) format_error(src + ": JSON header has no 'tensors' array");
  if (!it->is_array()) {
    format_error(src + ": 'tensors' is " + describe_json(*it) + ", expected an array");
  }
  if (it->size() > limits.max_tensors) {
    fail(ErrorCode::limit, src + ": " + std::to_string(it->size()) +
                               " tensors is over the limit max_tensors (" +
                               std::to_string(limits.max_tensors) + ")");
  }

  const uint8_t *data = p + h.data_offset;
  std::vector<TensorInfo> out;
  out.reserve(it->size());
  std::unordered_map<std::string, size_t> by_name;
  for (size_t i = 0; i < it->size(); ++i) {
    TensorInfo t = parse_tensor((*it)[i], i, data, h.data_size, limits, src);
    if (!by_name.emplace(t.name, i).second) {
      format_error(src + ": tensors[" + std::to_string(i) + "]: duplicate tensor name " +
                   quote_name(t.name));
    }
    out.push_back(std::move(t));
  }
  for (const auto &t : out) {
    if (t.scale.empty()) continue;
    const std::string ctx = src + ": tensor " + quote_name(t.name);
    const auto s = by_name.find(t.scale);
    if (s == by_name.end()) {
      format_error(ctx + ": scale tensor " + quote_name(t.scale) + " does not exist");
    }
    if (t.scale == t.name) format_error(ctx + ": is its own scale tensor");
    if (out[s->second].dtype != DType::f32) {
      format_error(ctx + ": scale tensor " + quote_name(t.scale) + " is " +
                   dtype_name(out[s->second].dtype) + ", expected f32");
    }
  }
  detail::check_no_overlap(out, src);

  doc.erase("tensors");
  *meta = std::move(doc);
  *tensors = std::move(out);
}

uint64_t align_up(uint64_t v) {
  return (v + kVqmAlignment - 1) / kVqmAlignment * kVqmAlignment;
}

}  // namespace

VqmFile VqmFile::from_file(const std::string &path, const Limits &limits) {
  VqmFile f;
  f.source_ = path;
  uint64_t size = 0;
  f.bytes_ = detail::load_file(path, limits, &size);
  parse_document(detail::aligned_start(*f.bytes_), size, limits, path, &f.meta_, &f.tensors_);
  return f;
}

VqmFile VqmFile::from_memory(const void *data, size_t size, const Limits &limits,
                             const std::string &what) {
  VqmFile f;
  f.source_ = what;
  f.bytes_ = detail::load_memory(data, size, limits, what);
  parse_document(detail::aligned_start(*f.bytes_), size, limits, what, &f.meta_, &f.tensors_);
  return f;
}

const TensorInfo *VqmFile::find(const std::string &name) const {
  for (const auto &t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const TensorInfo &VqmFile::get(const std::string &name) const {
  const TensorInfo *t = find(name);
  if (t == nullptr) format_error(source_ + ": missing tensor " + quote_name(name));
  return *t;
}

const TensorInfo &VqmFile::get(const std::string &name, DType dtype,
                               const std::vector<int64_t> &shape) const {
  const TensorInfo &t = get(name);
  if (t.dtype != dtype || t.shape != shape) {
    format_error(source_ + ": tensor " + quote_name(name) + ": expected " + dtype_name(dtype) +
                 " " + shape_str(shape) + ", found " + dtype_name(t.dtype) + " " +
                 shape_str(t.shape));
  }
  return t;
}

void VqmWriter::add_tensor(const std::string &name, DType dtype, const std::vector<int64_t> &shape,
                           const void *data, uint64_t nbytes, const std::string &scale,
                           int quant_axis) {
  const std::string ctx = "VqmWriter: tensor " + quote_name(name);
  if (name.empty()) fail(ErrorCode::invalid_argument, "VqmWriter: empty tensor name");
  for (const auto &t : tensors_)
    if (t.name == name) fail(ErrorCode::invalid_argument, ctx + ": added twice");
  uint64_t expected = 0;
  if (!dtype_nbytes(dtype, shape, &expected)) {
    fail(ErrorCode::invalid_argument, ctx + ": invalid shape " + shape_str(shape));
  }
  if (nbytes != expected) {
    fail(ErrorCode::invalid_argument, ctx + ": nbytes is " + u64s(nbytes) + ", but " +
                                          dtype_name(dtype) + " " + shape_str(shape) + " needs " +
                                          u64s(expected));
  }
  if (data == nullptr && nbytes != 0) fail(ErrorCode::invalid_argument, ctx + ": data is NULL");
  if (quant_axis < -1 || quant_axis >= static_cast<int>(shape.size())) {
    fail(ErrorCode::invalid_argument, ctx + ": quant_axis " + std::to_string(quant_axis) +
                                          " is not -1 or in [0, " + std::to_string(shape.size()) +
                                          ")");
  }
  if (scale == name) fail(ErrorCode::invalid_argument, ctx + ": is its own scale tensor");
  Pending p{name, dtype, shape, {}, scale, quant_axis};
  const auto *bytes = static_cast<const uint8_t *>(data);
  if (nbytes != 0) p.data.assign(bytes, bytes + nbytes);
  tensors_.push_back(std::move(p));
}

void VqmWriter::add_f32(const std::string &name, const std::vector<int64_t> &shape,
                        const float *data) {
  uint64_t nbytes = 0;
  if (!dtype_nbytes(DType::f32, shape, &nbytes)) {
    fail(ErrorCode::invalid_argument,
         "VqmWriter: tensor " + quote_name(name) + ": invalid shape " + shape_str(shape));
  }
  add_tensor(name, DType::f32, shape, data, nbytes);
}

std::vector<uint8_t> VqmWriter::to_bytes() const {
  if (!meta_.is_object()) {
    fail(ErrorCode::invalid_argument,
         std::string("VqmWriter: meta is ") + meta_.type_name() + ", expected an object");
  }
  if (meta_.contains("tensors")) {
    fail(ErrorCode::invalid_argument, "VqmWriter: meta must not contain 'tensors'");
  }
  json doc = meta_;
  json entries = json::array();
  std::vector<uint64_t> offsets;
  uint64_t cursor = 0;
  for (const auto &t : tensors_) {
    const uint64_t offset = align_up(cursor);
    offsets.push_back(offset);
    cursor = offset + t.data.size();
    json e = {{"name", t.name},
              {"dtype", dtype_name(t.dtype)},
              {"shape", t.shape},
              {"offset", offset},
              {"nbytes", static_cast<uint64_t>(t.data.size())}};
    if (!t.scale.empty()) {
      const auto s = std::find_if(tensors_.begin(), tensors_.end(),
                                  [&](const Pending &o) { return o.name == t.scale; });
      if (s == tensors_.end() || s->dtype != DType::f32) {
        fail(ErrorCode::invalid_argument, "VqmWriter: tensor " + quote_name(t.name) +
                                              ": scale tensor " + quote_name(t.scale) +
                                              " was not added as f32");
      }
      e["scale"] = t.scale;
    }
    if (t.quant_axis >= 0) e["quant_axis"] = t.quant_axis;
    entries.push_back(std::move(e));
  }
  doc["tensors"] = std::move(entries);
  std::string text;
  try {
    text = doc.dump(-1, ' ', false, json::error_handler_t::strict);
  } catch (const json::exception &e) {
    fail(ErrorCode::invalid_argument,
         std::string("VqmWriter: meta cannot be written: ") + e.what());
  }

  const uint64_t json_size = text.size();
  const uint64_t data_offset = align_up(kVqmHeaderSize + json_size);
  const uint64_t data_size = cursor;
  std::vector<uint8_t> out(data_offset + data_size, 0);
  std::memcpy(out.data(), kMagic, 4);
  store_le(out.data() + 4, kVqmVersion, 4);
  store_le(out.data() + 8, kVqmHeaderSize, 4);
  store_le(out.data() + 12, kVqmAlignment, 4);
  store_le(out.data() + 16, kVqmHeaderSize, 8);
  store_le(out.data() + 24, json_size, 8);
  store_le(out.data() + 32, data_offset, 8);
  store_le(out.data() + 40, data_size, 8);
  std::memcpy(out.data() + kVqmHeaderSize, text.data(), text.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (!tensors_[i].data.empty()) {
      std::memcpy(out.data() + data_offset + offsets[i], tensors_[i].data.data(),
                  tensors_[i].data.size());
    }
  }
  return out;
}

void VqmWriter::write(const std::string &path) const {
  const std::vector<uint8_t> bytes = to_bytes();
  write_file_atomic(path, bytes.data(), bytes.size());
}

void write_file_atomic(const std::string &path, const void *data, size_t size) {
  if (path.empty()) fail(ErrorCode::invalid_argument, "write_file_atomic: empty path");
  if (data == nullptr && size != 0) {
    fail(ErrorCode::invalid_argument, "cannot write '" + path + "': data is NULL");
  }
  const size_t slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty()) fail(ErrorCode::io, "cannot write '" + path + "': it names a directory");

  // The temporary lives next to the target so the final rename stays within one file system
  // (rename is only atomic there). O_EXCL plus a random suffix keeps concurrent writers apart.
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; ++attempt) {
    const uint64_t r = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ counter.fetch_add(1);
    char suffix[40];
    std::snprintf(suffix, sizeof suffix, ".tmp.%ld.%016llx", static_cast<long>(::getpid()),
                  static_cast<unsigned long long>(r));
    tmp = (dir == "/" ? "" : dir) + "/." + base + suffix;
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) {
      fail(ErrorCode::io, "cannot write '" + path + "': cannot create a temporary file in '" + dir +
                              "': " + std::strerror(errno));
    }
  }
  if (fd < 0) {
    fail(ErrorCode::io,
         "cannot write '" + path + "': no free temporary file name in '" + dir + "'");
  }

  auto give_up = [&](const std::string &step, int err) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    fail(ErrorCode::io, "cannot write '" + path + "': " + step + ": " + std::strerror(err));
  };
  const auto *p = static_cast<const uint8_t *>(data);
  size_t done = 0;
  while (done < size) {
    const size_t chunk = std::min<size_t>(size - done, size_t{1} << 30);
    const ssize_t n = ::write(fd, p + done, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      give_up("write to '" + tmp + "' failed", errno);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) give_up("fsync of '" + tmp + "' failed", errno);
  const int close_rc = ::close(fd);
  fd = -1;
  if (close_rc != 0) give_up("close of '" + tmp + "' failed", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    give_up("rename of '" + tmp + "' failed", errno);
  }
  // Make the rename itself durable. Best effort: some file systems refuse fsync on directories,
  // and the data is already complete at this point.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace vqm
