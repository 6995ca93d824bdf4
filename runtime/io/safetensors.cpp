// safetensors reader. Layout: u64 LE header length N, N bytes of JSON, then the data buffer that
// every "data_offsets" pair indexes. Nothing in the file is trusted: see the checks below.
#include "safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "error.h"
#include "reader_util.h"

namespace vqm {

namespace {

using detail::describe_json;
using detail::quote_name;
using nlohmann::json;

constexpr uint64_t kLengthBytes = 8;
constexpr const char *kMetadataKey = "__metadata__";

bool safetensors_dtype(const std::string &name, DType *out) {
  static const struct {
    const char *name;
    DType dtype;
  } kTable[] = {{"F32", DType::f32}, {"F16", DType::f16}, {"BF16", DType::bf16},
                {"I32", DType::i32}, {"I64", DType::i64}, {"I8", DType::i8},
                {"U8", DType::u8}};
  for (const auto &row : kTable) {
    if (name == row.name) {
      *out = row.dtype;
      return true;
    }
  }
  return false;
}

TensorInfo parse_entry(const std::string &name, const json &entry, const uint8_t *data,
                       uint64_t data_size, const Limits &limits, const std::string &src) {
  if (name.empty()) fail(ErrorCode::format, src + ": empty tensor name");
  const std::string ctx = src + ": tensor " + quote_name(name);
  if (!entry.is_object()) {
    fail(ErrorCode::format, ctx + " is " + describe_json(entry) + ", expected an object");
  }
  auto field = [&](const char *key) -> const json & {
    const auto it = entry.find(key);
    if (it == entry.end()) fail(ErrorCode::format, ctx + ": missing '" + key + "'");
    return *it;
  };
  const json &dtype_json = field("dtype");
  if (!dtype_json.is_string()) {
    fail(ErrorCode::format,
         ctx + ": dtype is " + describe_json(dtype_json) + ", expected a string");
  }
  TensorInfo t;
  t.name = name;
  t.shape = detail::parse_shape(field("shape"), limits, ctx);
  const json &offsets = field("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2) {
    fail(ErrorCode::format,
         ctx + ": data_offsets is " + describe_json(offsets) + ", expected [begin, end]");
  }
  const uint64_t begin = detail::parse_u64(offsets[0], ctx, "data_offsets[0]");
  const uint64_t end = detail::parse_u64(offsets[1], ctx, "data_offsets[1]");
  if (begin > end) {
    fail(ErrorCode::format, ctx + ": data_offsets [" + std::to_string(begin) + ", " +
                                std::to_string(end) + "] has begin > end");
  }
  if (end > data_size) {
    fail(ErrorCode::format, ctx + ": data_offsets [" + std::to_string(begin) + ", " +
                                std::to_string(end) + "] run past the end of the data (" +
                                std::to_string(data_size) + " bytes)");
  }
  const std::string &dtype = dtype_json.get_ref<const std::string &>();
  if (!safetensors_dtype(dtype, &t.dtype)) {
    fail(ErrorCode::unsupported, ctx + ": dtype " + quote_name(dtype) +
                                     " is not supported (F32, F16, BF16, I32, I64, I8, U8 are)");
  }
  const uint64_t expected = detail::checked_nbytes(t.dtype, t.shape, ctx);
  if (end - begin != expected) {
    fail(ErrorCode::format, ctx + ": data_offsets [" + std::to_string(begin) + ", " +
                                std::to_string(end) + "] hold " + std::to_string(end - begin) +
                                " bytes, but " + dtype + " " + shape_str(t.shape) + " needs " +
                                std::to_string(expected));
  }
  detail::check_tensor_limit(expected, limits, ctx);
  t.offset = begin;
  t.nbytes = expected;
  t.data = data + begin;
  return t;
}

void parse_safetensors(const uint8_t *p, uint64_t size, const Limits &limits,
                       const std::string &src, std::vector<TensorInfo> *tensors,
                       std::map<std::string, std::string> *metadata) {
  if (size < kLengthBytes) {
    fail(ErrorCode::format, src + ": file is " + std::to_string(size) +
                                " bytes, the safetensors header length needs 8");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | p[i];
  // size >= 8, so this subtraction is safe; comparing against what remains avoids computing
  // 8 + header_len, which a hostile length would overflow.
  const uint64_t remaining = size - kLengthBytes;
  if (header_len > remaining) {
    fail(ErrorCode::format, src + ": header length " + std::to_string(header_len) +
                                " runs past the end of the file (" + std::to_string(remaining) +
                                " bytes follow it)");
  }
  if (header_len > limits.max_json_bytes) {
    fail(ErrorCode::limit, src + ": header length " + std::to_string(header_len) +
                               " is over the limit max_json_bytes (" +
                               std::to_string(limits.max_json_bytes) + ")");
  }
  const json doc = detail::parse_json(p + kLengthBytes, static_cast<size_t>(header_len), src);
  if (!doc.is_object()) {
    fail(ErrorCode::format,
         src + ": JSON header is " + describe_json(doc) + ", expected an object");
  }
  const uint64_t count = doc.size() - (doc.contains(kMetadataKey) ? 1 : 0);
  if (count > limits.max_tensors) {
    fail(ErrorCode::limit, src + ": " + std::to_string(count) +
                               " tensors is over the limit max_tensors (" +
                               std::to_string(limits.max_tensors) + ")");
  }

  const uint8_t *data = p + kLengthBytes + header_len;
  const uint64_t data_size = remaining - header_len;
  std::vector<TensorInfo> out;
  out.reserve(static_cast<size_t>(count));
  std::map<std::string, std::string> meta;
  for (const auto &[key, value] : doc.items()) {
    if (key != kMetadataKey) {
      out.push_back(parse_entry(key, value, data, data_size, limits, src));
      continue;
    }
    if (!value.is_object()) {
      fail(ErrorCode::format,
           src + ": __metadata__ is " + describe_json(value) + ", expected an object of strings");
    }
    for (const auto &[mkey, mvalue] : value.items()) {
      if (!mvalue.is_string()) {
        fail(ErrorCode::format, src + ": __metadata__[" + quote_name(mkey) + "] is " +
                                    describe_json(mvalue) + ", expected a string");
      }
      meta.emplace(mkey, mvalue.get<std::string>());
    }
  }
  detail::check_no_overlap(out, src);
  // File order: by data offset; names break ties between empty tensors so the order is stable.
  std::sort(out.begin(), out.end(), [](const TensorInfo &a, const TensorInfo &b) {
    if (a.offset != b.offset) return a.offset < b.offset;
    if (a.nbytes != b.nbytes) return a.nbytes < b.nbytes;
    return a.name < b.name;
  });
  *tensors = std::move(out);
  *metadata = std::move(meta);
}

}  // namespace

SafetensorsFile SafetensorsFile::from_file(const std::string &path, const Limits &limits) {
  SafetensorsFile f;
  f.source_ = path;
  uint64_t size = 0;
  f.bytes_ = detail::load_file(path, limits, &size);
  parse_safetensors(detail::aligned_start(*f.bytes_), size, limits, path, &f.tensors_,
                    &f.metadata_);
  return f;
}

SafetensorsFile SafetensorsFile::from_memory(const void *data, size_t size, const Limits &limits,
                                             const std::string &what) {
  SafetensorsFile f;
  f.source_ = what;
  f.bytes_ = detail::load_memory(data, size, limits, what);
  parse_safetensors(detail::aligned_start(*f.bytes_), size, limits, what, &f.tensors_,
                    &f.metadata_);
  return f;
}

const TensorInfo *SafetensorsFile::find(const std::string &name) const {
  for (const auto &t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const TensorInfo &SafetensorsFile::get(const std::string &name) const {
  const TensorInfo *t = find(name);
  if (t == nullptr) {
    // Wording fixed by safetensors.h, which callers rely on.
    fail(ErrorCode::format, "missing tensor " + quote_name(name) + " in " + source_);
  }
  return *t;
}

}  // namespace vqm
