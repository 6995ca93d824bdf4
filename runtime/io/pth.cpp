// .pth reader: the zip index (pth_zip.cpp), the pickle (pth_pickle.cpp), then the state dict's
// tensors, each checked against the storage bytes it claims before its TensorInfo points into
// the file buffer.
#include "pth.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "error.h"
#include "pth_pickle.h"
#include "pth_zip.h"
#include "reader_util.h"

namespace vqm {

namespace {

using detail::quote_name;
using detail::ZipEntry;
namespace pk = detail::pickle;

// Training checkpoints often wrap the state dict: {"model": state_dict, "optimizer": ..., ...}.
// A dict that is not itself a state dict is searched for exactly one of these keys.
constexpr const char *kStateDictKeys[] = {"model", "state_dict", "model_state"};

std::string num(uint64_t v) {
  return std::to_string(v);
}

struct Archive {
  std::string prefix;  // the top folder, without its slash
  const ZipEntry *pickle = nullptr;
  std::unordered_map<std::string, const ZipEntry *> by_name;
};

// torch names every entry <archive>/...; the archive's name is whatever folder holds data.pkl.
Archive index_archive(const uint8_t *p, const std::vector<ZipEntry> &entries,
                      const std::string &src) {
  Archive a;
  static const std::string kPickle = "/data.pkl";
  for (const auto &e : entries) {
    a.by_name.emplace(e.name, &e);
    const size_t slash = e.name.find('/');
    if (slash == 0 || slash == std::string::npos || slash + kPickle.size() != e.name.size() ||
        e.name.compare(slash, std::string::npos, kPickle) != 0) {
      continue;
    }
    if (a.pickle != nullptr) {
      fail(ErrorCode::format, src + ": two pickles, zip entries " + quote_name(a.pickle->name) +
                                  " and " + quote_name(e.name));
    }
    a.pickle = &e;
    a.prefix = e.name.substr(0, slash);
  }
  if (a.pickle == nullptr) {
    fail(ErrorCode::format, src + ": no <archive>/data.pkl among the zip's " + num(entries.size()) +
                                " entries (not a file of torch.save since 1.6?)");
  }
  // torch >= 2.1 records the byte order of the storages; older files are little-endian.
  const auto order = a.by_name.find(a.prefix + "/byteorder");
  if (order != a.by_name.end()) {
    const std::string text(reinterpret_cast<const char *>(p + order->second->data_offset),
                           static_cast<size_t>(std::min<uint64_t>(order->second->size, 16)));
    if (text != "little") {
      fail(ErrorCode::unsupported,
           src + ": byteorder is " + quote_name(text) + ", only little-endian files are read");
    }
  }
  return a;
}

// Called by the pickle machine once per storage key: the storage's bytes are the entry
// <archive>/data/<key>, exactly numel elements long.
void load_storage(const uint8_t *p, const Archive &a, const std::string &src, pk::Object &s) {
  const std::string key(s.key);
  const std::string entry = a.prefix + "/data/" + key;
  const std::string what = "storage " + quote_name(key) + " (" + s.type->name + " of " +
                           num(static_cast<uint64_t>(s.numel)) + " elements";
  const auto it = a.by_name.find(entry);
  if (it == a.by_name.end()) {
    fail(ErrorCode::format, src + ": " + what + ") has no zip entry " + quote_name(entry));
  }
  uint64_t nbytes = 0;
  if (mul_overflow_u64(static_cast<uint64_t>(s.numel), s.type->elem_size, &nbytes)) {
    fail(ErrorCode::format, src + ": " + what + ") needs more than 2^64 bytes");
  }
  if (it->second->size != nbytes) {
    fail(ErrorCode::format, src + ": " + what + ", " + num(nbytes) + " bytes) does not match its " +
                                "zip entry " + quote_name(entry) + " of " + num(it->second->size) +
                                " bytes");
  }
  s.data = p + it->second->data_offset;
}

bool is_state_dict(const pk::Object &d) {
  for (size_t i = 1; i < d.items.size(); i += 2)
    if (d.items[i].kind != pk::Kind::tensor) return false;
  return true;
}

// The dict of tensors: the pickled object itself, or its one value under a kStateDictKeys key.
const pk::Object &find_state_dict(const pk::Value &root, const std::string &src,
                                  std::string *key_out) {
  if (root.kind != pk::Kind::dict) {
    fail(ErrorCode::format,
         src + ": the pickle holds " + pk::describe(root) + ", expected a dict of tensors");
  }
  const pk::Object &top = *root.obj;
  if (is_state_dict(top)) return top;
  const pk::Object *found = nullptr;
  for (size_t i = 0; i + 1 < top.items.size(); i += 2) {
    const pk::Value &k = top.items[i], &v = top.items[i + 1];
    if (k.kind != pk::Kind::string || v.kind != pk::Kind::dict) continue;
    for (const char *name : kStateDictKeys) {
      if (k.s != name) continue;
      if (found != nullptr) {
        fail(ErrorCode::format, src + ": the checkpoint holds both " + quote_name(*key_out) +
                                    " and " + quote_name(name) + ": which is the state dict?");
      }
      found = v.obj;
      *key_out = name;
    }
  }
  if (found != nullptr) return *found;
  for (size_t i = 0; i + 1 < top.items.size(); i += 2) {
    if (top.items[i + 1].kind == pk::Kind::tensor) continue;
    const pk::Value &k = top.items[i];
    fail(ErrorCode::format,
         src + ": the pickled dict's value for " +
             (k.kind == pk::Kind::string ? quote_name(std::string(k.s)) : pk::describe(k)) +
             " is " + pk::describe(top.items[i + 1]) +
             ", expected a tensor (a state dict, or a checkpoint with one under 'model', "
             "'state_dict' or 'model_state')");
  }
  return top;  // not reached: is_state_dict found a value that is not a tensor
}

std::string dims_str(const std::vector<int64_t> &v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + (v.size() == 1 ? ",)" : ")");
}

// The integers of a size or stride tuple.
std::vector<int64_t> ints(const pk::Object &tuple, const std::string &ctx, const char *what) {
  std::vector<int64_t> out;
  out.reserve(tuple.items.size());
  for (size_t i = 0; i < tuple.items.size(); ++i) {
    const pk::Value &v = tuple.items[i];
    if (v.kind != pk::Kind::integer) {
      fail(ErrorCode::format,
           ctx + ": " + what + "[" + num(i) + "] is " + pk::describe(v) + ", expected an int");
    }
    out.push_back(v.i);
  }
  return out;
}

std::vector<int64_t> checked_shape(const pk::Object &size, const Limits &limits,
                                   const std::string &ctx) {
  if (size.items.size() > limits.max_rank) {
    fail(ErrorCode::limit, ctx + ": rank " + num(size.items.size()) +
                               " is over the limit max_rank (" + num(limits.max_rank) + ")");
  }
  const std::vector<int64_t> shape = ints(size, ctx, "size");
  int64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      fail(ErrorCode::format, ctx + ": size[" + num(i) + "] is " + std::to_string(shape[i]) +
                                  ", dimensions must be >= 0");
    }
    if (shape[i] > limits.max_dim) {
      fail(ErrorCode::limit, ctx + ": size[" + num(i) + "] is " + std::to_string(shape[i]) +
                                 ", over the limit max_dim (" + std::to_string(limits.max_dim) +
                                 ")");
    }
    // A zero later in the shape must not hide an overflowing prefix.
    if (__builtin_mul_overflow(count, shape[i], &count)) {
      fail(ErrorCode::format,
           ctx + ": element count of size " + shape_str(shape) + " overflows 64 bits");
    }
  }
  return shape;
}

// Row-major strides, where a dimension of size 1 may have any stride (torch's is_contiguous):
// such tensors are the bytes of the storage from storage_offset on, in order.
void check_contiguous(const std::vector<int64_t> &shape, const std::vector<int64_t> &stride,
                      int64_t numel, const std::string &ctx) {
  if (numel == 0) return;  // also keeps the products below within the (nonzero) element count
  std::vector<int64_t> want(shape.size());
  int64_t expected = 1;
  bool ok = true;
  for (size_t i = shape.size(); i-- > 0;) {
    want[i] = expected;
    if (shape[i] != 1 && stride[i] != expected) ok = false;
    expected *= shape[i];  // divides the element count, which did not overflow
  }
  if (!ok) {
    fail(ErrorCode::unsupported, ctx + ": stride " + dims_str(stride) +
                                     " is not the contiguous stride " + dims_str(want) +
                                     " of size " + shape_str(shape) +
                                     "; only contiguous tensors are read (save t.contiguous())");
  }
}

TensorInfo make_tensor(const std::string &name, const pk::Object &t, const uint8_t *file,
                       const Limits &limits, const std::string &src) {
  const std::string ctx = src + ": tensor " + quote_name(name);
  const pk::Object &storage = *t.items[0].obj;
  const pk::StorageType &type = *storage.type;
  if (!type.supported) {
    fail(ErrorCode::unsupported, ctx + ": dtype " + type.torch_name + " (" + type.name +
                                     ") is not supported (float32, float16, bfloat16, int32, "
                                     "int64, int8, uint8 are)");
  }
  TensorInfo info;
  info.name = name;
  info.dtype = type.dtype;
  info.shape = checked_shape(*t.items[2].obj, limits, ctx);
  const std::vector<int64_t> stride = ints(*t.items[3].obj, ctx, "stride");
  if (stride.size() != info.shape.size()) {
    fail(ErrorCode::format, ctx + ": size " + shape_str(info.shape) + " has " +
                                num(info.shape.size()) + " dimensions, stride " + dims_str(stride) +
                                " has " + num(stride.size()));
  }
  const int64_t numel = info.numel();
  check_contiguous(info.shape, stride, numel, ctx);
  const int64_t offset = t.items[1].i;
  // storage.numel >= 0 (the pickle machine checked), so the subtraction cannot overflow.
  if (offset < 0 || offset > storage.numel || numel > storage.numel - offset) {
    fail(ErrorCode::format, ctx + ": storage offset " + std::to_string(offset) + " + " +
                                std::to_string(numel) + " elements runs past its storage " +
                                quote_name(std::string(storage.key)) + " of " +
                                std::to_string(storage.numel) + " elements");
  }
  info.nbytes = detail::checked_nbytes(info.dtype, info.shape, ctx);
  detail::check_tensor_limit(info.nbytes, limits, ctx);
  // offset * elem_size <= the storage's bytes, which fit in the file.
  info.data = storage.data + static_cast<uint64_t>(offset) * type.elem_size;
  info.offset = static_cast<uint64_t>(info.data - file);
  return info;
}

struct Parsed {
  std::string archive_name;
  std::string state_dict_key;
  std::vector<TensorInfo> tensors;
};

Parsed parse_pth(const uint8_t *p, uint64_t size, const Limits &limits, const std::string &src) {
  const std::vector<ZipEntry> entries = detail::read_stored_zip(p, size, src);
  const Archive archive = index_archive(p, entries, src);
  const ZipEntry &pickle = *archive.pickle;
  if (pickle.size > limits.max_json_bytes) {
    fail(ErrorCode::limit, src + ": zip entry " + quote_name(pickle.name) + " is " +
                               num(pickle.size) + " bytes, over the limit max_json_bytes (" +
                               num(limits.max_json_bytes) + "; the pickle is the header)");
  }
  pk::Machine machine(src + ": pickle " + quote_name(pickle.name),
                      [&](pk::Object &s) { load_storage(p, archive, src, s); });
  const pk::Value root = machine.run(p + pickle.data_offset, static_cast<size_t>(pickle.size));
  Parsed out;
  out.archive_name = archive.prefix;
  const pk::Object &dict = find_state_dict(root, src, &out.state_dict_key);
  const size_t count = dict.items.size() / 2;
  if (count > limits.max_tensors) {
    fail(ErrorCode::limit, src + ": " + num(count) + " tensors is over the limit max_tensors (" +
                               num(limits.max_tensors) + ")");
  }
  const std::string where =
      out.state_dict_key.empty() ? std::string() : " under " + quote_name(out.state_dict_key);
  out.tensors.reserve(count);
  std::unordered_set<std::string_view> names;
  for (size_t i = 0; i < dict.items.size(); i += 2) {
    const pk::Value &k = dict.items[i], &v = dict.items[i + 1];
    if (k.kind != pk::Kind::string) {
      fail(ErrorCode::format, src + ": state dict" + where + " has the key " + pk::describe(k) +
                                  ", expected a string");
    }
    if (v.kind != pk::Kind::tensor) {
      fail(ErrorCode::format, src + ": state dict" + where + " value " +
                                  quote_name(std::string(k.s)) + " is " + pk::describe(v) +
                                  ", expected a tensor");
    }
    if (k.s.empty()) fail(ErrorCode::format, src + ": empty tensor name");
    // Python keeps the last of two equal keys; two readers could disagree, so refuse.
    if (!names.insert(k.s).second) {
      fail(ErrorCode::format,
           src + ": tensor " + quote_name(std::string(k.s)) + " appears twice in the state dict");
    }
    out.tensors.push_back(make_tensor(std::string(k.s), *v.obj, p, limits, src));
  }
  return out;
}

}  // namespace

PthFile PthFile::from_file(const std::string &path, const Limits &limits) {
  PthFile f;
  f.source_ = path;
  uint64_t size = 0;
  f.bytes_ = detail::load_file(path, limits, &size);
  Parsed parsed = parse_pth(detail::aligned_start(*f.bytes_), size, limits, path);
  f.archive_name_ = std::move(parsed.archive_name);
  f.state_dict_key_ = std::move(parsed.state_dict_key);
  f.set_tensors(std::move(parsed.tensors));
  return f;
}

PthFile PthFile::from_memory(const void *data, size_t size, const Limits &limits,
                             const std::string &what) {
  PthFile f;
  f.source_ = what;
  f.bytes_ = detail::load_memory(data, size, limits, what);
  Parsed parsed = parse_pth(detail::aligned_start(*f.bytes_), size, limits, what);
  f.archive_name_ = std::move(parsed.archive_name);
  f.state_dict_key_ = std::move(parsed.state_dict_key);
  f.set_tensors(std::move(parsed.tensors));
  return f;
}

void PthFile::set_tensors(std::vector<TensorInfo> tensors) {
  tensors_ = std::move(tensors);
  index_.reserve(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

const TensorInfo *PthFile::find(const std::string &name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo &PthFile::get(const std::string &name) const {
  const TensorInfo *t = find(name);
  if (t == nullptr)
    fail(ErrorCode::format, "missing tensor " + quote_name(name) + " in " + source_);
  return *t;
}

}  // namespace vqm
