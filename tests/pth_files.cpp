#include "pth_files.h"

#include <cstring>

#include "test_files.h"

namespace vqm::test {

namespace {

void append_bytes(Bytes *b, const void *p, size_t n) {
  // Resized and filled with memcpy (vector::insert trips a GCC 12 -Warray-bounds false positive).
  const size_t at = b->size();
  b->resize(at + n);
  if (n) std::memcpy(b->data() + at, p, n);
}

void put_le(Bytes *b, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b->push_back(i < 8 ? static_cast<uint8_t>(v >> (8 * i)) : 0);
}

std::vector<int64_t> contiguous(const std::vector<int64_t> &shape) {
  std::vector<int64_t> s(shape.size());
  int64_t step = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    s[i] = step;
    step *= shape[i];
  }
  return s;
}

}  // namespace

Pickle &Pickle::op(uint8_t code) {
  b.push_back(code);
  return *this;
}

Pickle &Pickle::raw(const std::string &bytes) {
  append_bytes(&b, bytes.data(), bytes.size());
  return *this;
}

Pickle &Pickle::proto(int version) {
  op(0x80);
  return op(static_cast<uint8_t>(version));
}

Pickle &Pickle::str(const std::string &s) {
  op('X');
  put_le(&b, s.size(), 4);
  return raw(s);
}

Pickle &Pickle::integer(int64_t v) {
  if (v >= 0 && v <= 0xff) {
    op('K');
    put_le(&b, static_cast<uint64_t>(v), 1);
  } else if (v >= 0 && v <= 0xffff) {
    op('M');
    put_le(&b, static_cast<uint64_t>(v), 2);
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    op('J');
    put_le(&b, static_cast<uint64_t>(v), 4);
  } else {
    // LONG1: the shortest little-endian two's complement (CPython's encode_long).
    Bytes bytes;
    put_le(&bytes, static_cast<uint64_t>(v), 8);
    while (bytes.size() > 1) {
      const uint8_t last = bytes.back(), prev = bytes[bytes.size() - 2];
      if ((last == 0 && !(prev & 0x80)) || (last == 0xff && (prev & 0x80))) {
        bytes.pop_back();
      } else {
        break;
      }
    }
    op(0x8a);
    op(static_cast<uint8_t>(bytes.size()));
    append_bytes(&b, bytes.data(), bytes.size());
  }
  return *this;
}

Pickle &Pickle::global(const std::string &module, const std::string &name) {
  op('c');
  return raw(module + "\n" + name + "\n");
}

Pickle &Pickle::put(uint32_t key) {
  if (key < 256) return op('q').op(static_cast<uint8_t>(key));
  op('r');
  put_le(&b, key, 4);
  return *this;
}

Pickle &Pickle::get(uint32_t key) {
  if (key < 256) return op('h').op(static_cast<uint8_t>(key));
  op('j');
  put_le(&b, key, 4);
  return *this;
}

Pickle &Pickle::ints(const std::vector<int64_t> &v) {
  if (v.empty()) return op(')');
  if (v.size() > 3) mark();
  for (int64_t x : v) integer(x);
  return v.size() > 3 ? tuple() : op(static_cast<uint8_t>(0x85 + v.size() - 1));
}

Pickle &Pickle::ordered_dict() {
  return global("collections", "OrderedDict").op(')').op('R');
}

void pickle_tensor(Pickle *p, const PtTensor &t) {
  p->global("torch._utils", "_rebuild_tensor_v2").mark();
  p->mark().str("storage").global("torch", t.storage).str(t.key).str("cpu");
  p->integer(t.storage_numel).tuple().op('Q');
  p->integer(t.offset).ints(t.shape).ints(t.stride.empty() ? contiguous(t.shape) : t.stride);
  p->op(0x89).ordered_dict().tuple().op('R');
}

Bytes state_dict_pickle(const std::vector<PtTensor> &state_dict, bool ordered) {
  Pickle p;
  p.proto(2);
  if (ordered) {
    p.ordered_dict();
  } else {
    p.op('}');
  }
  if (!state_dict.empty()) {
    p.mark();
    for (const auto &t : state_dict) {
      p.str(t.name);
      pickle_tensor(&p, t);
    }
    p.op('u');
  }
  if (ordered) {
    // The attribute torch.nn.Module.state_dict sets: {'_metadata': OrderedDict({'': {'version':
    // 1}})}, applied by BUILD.
    p.op('}').str("_metadata").ordered_dict().str("").op('}').str("version").integer(1);
    p.op('s').op('s').op('s').op('b');
  }
  return p.stop().b;
}

Bytes make_zip(const std::vector<ZipFile> &files, const ZipOptions &options) {
  Bytes out, central;
  for (const auto &f : files) {
    const uint64_t local = out.size();
    const uint32_t crc = crc32(f.data.data(), f.data.size());
    Bytes extra;
    if (options.align64) {
      // torch's padding field: "FB", its length, then 'Z's up to the next 64-byte boundary.
      const size_t pad = (64 - (local + 30 + f.name.size() + 4) % 64) % 64;
      extra = {'F', 'B', static_cast<uint8_t>(pad), static_cast<uint8_t>(pad >> 8)};
      extra.resize(4 + pad, 'Z');
    }
    put_le(&out, 0x04034b50, 4);
    put_le(&out, 0, 2);       // version needed
    put_le(&out, 0x0808, 2);  // sizes in a data descriptor; UTF-8 names
    put_le(&out, f.method, 2);
    put_le(&out, 0, 4);   // time, date
    put_le(&out, 0, 12);  // crc and sizes: in the descriptor
    put_le(&out, f.name.size(), 2);
    put_le(&out, extra.size(), 2);
    append_bytes(&out, f.name.data(), f.name.size());
    append_bytes(&out, extra.data(), extra.size());
    append_bytes(&out, f.data.data(), f.data.size());
    put_le(&out, 0x08074b50, 4);
    put_le(&out, crc, 4);
    put_le(&out, f.data.size(), 4);
    put_le(&out, f.data.size(), 4);

    put_le(&central, 0x02014b50, 4);
    put_le(&central, 0, 4);  // version made by, needed
    put_le(&central, 0x0808, 2);
    put_le(&central, f.method, 2);
    put_le(&central, 0, 4);
    put_le(&central, crc, 4);
    put_le(&central, f.data.size(), 4);
    put_le(&central, f.data.size(), 4);
    put_le(&central, f.name.size(), 2);
    put_le(&central, 0, 6);  // extra, comment, disk
    put_le(&central, 0, 6);  // internal and external attributes
    put_le(&central, local, 4);
    append_bytes(&central, f.name.data(), f.name.size());
  }
  const uint64_t cd_offset = out.size();
  append_bytes(&out, central.data(), central.size());
  if (options.zip64) {
    const uint64_t record = out.size();
    put_le(&out, 0x06064b50, 4);
    put_le(&out, 44, 8);
    put_le(&out, 0x002d031e, 4);  // version made by, needed (as miniz writes them)
    put_le(&out, 0, 8);           // disk, central directory disk
    put_le(&out, files.size(), 8);
    put_le(&out, files.size(), 8);
    put_le(&out, central.size(), 8);
    put_le(&out, cd_offset, 8);
    put_le(&out, 0x07064b50, 4);
    put_le(&out, 0, 4);
    put_le(&out, record, 8);
    put_le(&out, 1, 4);
  }
  put_le(&out, 0x06054b50, 4);
  put_le(&out, 0, 4);
  put_le(&out, files.size(), 2);
  put_le(&out, files.size(), 2);
  put_le(&out, central.size(), 4);
  put_le(&out, cd_offset, 4);
  put_le(&out, 0, 2);
  return out;
}

Bytes make_pth(const Bytes &pickle, const std::vector<std::pair<std::string, Bytes>> &storages,
               const std::string &archive, const ZipOptions &options) {
  std::vector<ZipFile> files = {{archive + "/data.pkl", pickle}};
  for (const auto &[key, bytes] : storages) files.push_back({archive + "/data/" + key, bytes});
  files.push_back({archive + "/version", {'3', '\n'}});
  return make_zip(files, options);
}

Bytes pattern_bytes(size_t n, uint32_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 37 + seed * 101 + (i >> 7));
  return b;
}

Bytes small_pth(const ZipOptions &options) {
  const std::vector<PtTensor> sd = {
      {"attn.in_proj_weight", "FloatStorage", "0", 12, 0, {6, 2}, {}},
      {"attn.q", "FloatStorage", "0", 12, 0, {2, 2}, {}},
      {"attn.k", "FloatStorage", "0", 12, 4, {2, 2}, {}},
      {"attn.v", "FloatStorage", "0", 12, 8, {2, 2}, {}},
      {"norm.weight", "HalfStorage", "1", 3, 0, {3}, {}},
      {"norm.bias", "BFloat16Storage", "2", 4, 0, {2, 2}, {}},
      {"bn.num_batches_tracked", "LongStorage", "3", 1, 0, {}, {}},
      {"idx", "IntStorage", "4", 2, 0, {2}, {}},
      {"codes", "CharStorage", "5", 5, 0, {5}, {}},
      {"mask", "ByteStorage", "6", 4, 0, {1, 4, 1}, {9, 1, 5}},
      {"empty", "FloatStorage", "7", 0, 0, {0, 3}, {}},
  };
  const std::vector<std::pair<std::string, Bytes>> storages = {
      {"0", pattern_bytes(48, 0)}, {"1", pattern_bytes(6, 1)},
      {"2", pattern_bytes(8, 2)},  {"3", pattern_bytes(8, 3)},
      {"4", pattern_bytes(8, 4)},  {"5", pattern_bytes(5, 5)},
      {"6", pattern_bytes(4, 6)},  {"7", {}}};
  return make_pth(state_dict_pickle(sd), storages, "archive", options);
}

}  // namespace vqm::test
