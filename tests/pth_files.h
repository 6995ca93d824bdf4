// Builders of PyTorch .pth files in memory, byte for byte as torch.save writes them (a zip of
// stored entries around a protocol-2 pickle), so that tests and fuzz seeds need no torch: a
// pickle writer, a tensor state-dict pickle, and a stored-zip writer. Shared by the format tests
// and the fuzz seeds.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace vqm::test {

using Bytes = std::vector<uint8_t>;

// Appends pickle opcodes. Integers and strings use the opcodes CPython's pickler picks.
struct Pickle {
  Bytes b;
  Pickle &op(uint8_t code);
  Pickle &raw(const std::string &bytes);
  Pickle &proto(int version = 2);
  Pickle &mark() { return op('('); }
  Pickle &tuple() { return op('t'); }
  Pickle &str(const std::string &s);  // BINUNICODE
  Pickle &integer(int64_t v);         // BININT1, BININT2, BININT or LONG1
  Pickle &global(const std::string &module, const std::string &name);  // GLOBAL
  Pickle &put(uint32_t key);                                           // BINPUT or LONG_BINPUT
  Pickle &get(uint32_t key);                                           // BINGET or LONG_BINGET
  Pickle &ints(const std::vector<int64_t> &v);  // a tuple of ints (TUPLE1-3 or MARK ... TUPLE)
  Pickle &ordered_dict();  // collections.OrderedDict(), as torch writes a state dict
  Pickle &stop() { return op('.'); }
};

// One tensor of a state dict as torch pickles it: _rebuild_tensor_v2 on the storage data/<key>.
struct PtTensor {
  std::string name;
  std::string storage = "FloatStorage";  // torch's storage type
  std::string key;                       // the storage's zip entry is <archive>/data/<key>
  int64_t storage_numel = 0;
  int64_t offset = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> stride;  // empty: contiguous
};
// The tensor's _rebuild_tensor_v2(...) call (leaves the tensor on the stack).
void pickle_tensor(Pickle *p, const PtTensor &t);
// The whole data.pkl of `state_dict` (PROTO 2 ... STOP). `ordered`: an OrderedDict with the
// _metadata attribute (what torch.save(model.state_dict()) writes), else a plain dict.
Bytes state_dict_pickle(const std::vector<PtTensor> &state_dict, bool ordered = true);

struct ZipFile {
  std::string name;
  Bytes data;
  uint16_t method = 0;  // 0 stored; anything else is only written into the headers
};
struct ZipOptions {
  bool align64 = true;  // pad the local extra field so data starts on a 64-byte boundary
  bool zip64 = true;    // write the ZIP64 end records (torch always does)
};
// A zip archive as torch's miniz writes it: local headers with flag bit 3 and zero sizes, data,
// data descriptors, the central directory, the ZIP64 end records, the end record.
Bytes make_zip(const std::vector<ZipFile> &files, const ZipOptions &options = {});

// A .pth: <archive>/data.pkl, <archive>/data/<key> for each storage, <archive>/version.
Bytes make_pth(const Bytes &pickle, const std::vector<std::pair<std::string, Bytes>> &storages,
               const std::string &archive = "archive", const ZipOptions &options = {});
// Storage bytes: `n` bytes of a pattern that differs per `seed`.
Bytes pattern_bytes(size_t n, uint32_t seed);

// A small complete state dict: every supported dtype, an OrderedDict with _metadata, three views
// of one storage at offsets (an in_proj split), a scalar, an empty tensor, odd strides of
// size-1 dimensions.
Bytes small_pth(const ZipOptions &options = {});

}  // namespace vqm::test
