// PthFile: the real torchvision fixture, valid files as torch writes them, and the zip layer's
// corrupted-file suite. The pickle and tensor suites are in pth_pickle_test.cpp.
#include "runtime/io/pth.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "pth_files.h"
#include "runtime/io/error.h"
#include "test_files.h"
#include "test_util.h"

namespace vqm {
namespace {

using test::Bytes;
using test::make_pth;
using test::make_zip;
using test::Pickle;
using test::PtTensor;
using test::ZipFile;
using test::ZipOptions;

PthFile parse(const Bytes &b, const Limits &limits = default_limits()) {
  return PthFile::from_memory(b.data(), b.size(), limits, "t.pth");
}

uint32_t le32(const Bytes &b, size_t at) {
  return uint32_t{b[at]} | uint32_t{b[at + 1]} << 8 | uint32_t{b[at + 2]} << 16 |
         uint32_t{b[at + 3]} << 24;
}
void set_le(Bytes *b, size_t at, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) (*b)[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
// Offset of the `nth` occurrence of a record signature.
size_t find_sig(const Bytes &b, uint32_t sig, int nth = 0) {
  for (size_t i = 0; i + 4 <= b.size(); ++i)
    if (le32(b, i) == sig && nth-- == 0) return i;
  ADD_FAILURE() << "no signature " << sig;
  return 0;
}
constexpr uint32_t kCentral = 0x02014b50, kLocal = 0x04034b50, kZip64Eocd = 0x06064b50,
                   kLocator = 0x07064b50;

// One float tensor of four elements: the smallest state dict.
Bytes one_tensor_pth(const ZipOptions &options = {}) {
  return make_pth(test::state_dict_pickle({{"w", "FloatStorage", "0", 4, 0, {4}, {}}}),
                  {{"0", test::pattern_bytes(16, 9)}}, "archive", options);
}

TEST(PthFixture, TorchvisionVitB16EqualsItsSafetensorsTwin) {
  const std::string path = test::data_path("models/torchvision_vit_b16_small.pth");
  const PthFile f = PthFile::from_file(path);
  EXPECT_EQ(f.source(), path);
  EXPECT_EQ(f.archive_name(), "torchvision_vit_b16_small");
  EXPECT_EQ(f.state_dict_key(), "");
  // The reference lists what the safetensors twin holds (see the file's header).
  std::ifstream ref(test::data_path("reference/torchvision_vit_b16_small.pth.tensors"));
  ASSERT_TRUE(ref.good());
  std::string line;
  size_t i = 0;
  while (std::getline(ref, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    std::string name, dtype, dims, crc;
    uint64_t nbytes = 0;
    in >> name >> dtype >> dims >> nbytes >> crc;
    std::vector<int64_t> shape;
    std::istringstream ds(dims);
    for (std::string d; std::getline(ds, d, ',');) shape.push_back(std::stoll(d));
    ASSERT_LT(i, f.tensors().size());
    const TensorInfo &t = f.tensors()[i++];
    EXPECT_EQ(t.name, name);  // the same order: torch.save kept the state dict's
    EXPECT_EQ(dtype_name(t.dtype), dtype) << name;
    EXPECT_EQ(t.shape, shape) << name;
    ASSERT_EQ(t.nbytes, nbytes) << name;
    char hex[16];
    std::snprintf(hex, sizeof hex, "%08x", test::crc32(t.data, t.nbytes));
    EXPECT_EQ(hex, crc) << name;
  }
  EXPECT_EQ(i, 32u);
  EXPECT_EQ(f.tensors().size(), 32u);

  // torch aligns every storage to 64 bytes in the file; offset is the data's file offset.
  const Bytes raw = test::read_bytes(path);
  for (const auto &t : f.tensors()) {
    EXPECT_EQ(t.offset % 64, 0u) << t.name;
    EXPECT_EQ(std::memcmp(raw.data() + t.offset, t.data, t.nbytes), 0) << t.name;
  }
  const std::vector<float> head = to_f32(f.get("heads.head.bias"));
  ASSERT_EQ(head.size(), 10u);
  float first;
  std::memcpy(&first, raw.data() + f.get("heads.head.bias").offset, 4);
  EXPECT_EQ(head[0], first);

  // The same bytes from memory give the same tensors.
  const PthFile m = PthFile::from_memory(raw.data(), raw.size());
  ASSERT_EQ(m.tensors().size(), f.tensors().size());
  for (size_t k = 0; k < m.tensors().size(); ++k) {
    EXPECT_EQ(m.tensors()[k].name, f.tensors()[k].name);
    EXPECT_EQ(m.tensors()[k].offset, f.tensors()[k].offset);
  }
  EXPECT_VQM_ERROR(m.get("head.weight"), format, "missing tensor 'head.weight' in <memory>");
  EXPECT_EQ(m.find("head.weight"), nullptr);
}

TEST(PthFromFile, IoErrorsNameThePath) {
  const std::string dir = test::scratch_dir();
  EXPECT_VQM_ERROR(PthFile::from_file(dir + "/none.pth"), io,
                   "cannot open '" + dir + "/none.pth': No such file or directory");
  EXPECT_VQM_ERROR(PthFile::from_file(dir), io, "it is a directory");
  test::write_bytes(dir + "/empty.pth", {});
  EXPECT_VQM_ERROR(PthFile::from_file(dir + "/empty.pth"), format,
                   dir + "/empty.pth: file is 0 bytes, too short for a zip archive");
  test::write_bytes(dir + "/ok.pth", one_tensor_pth());
  EXPECT_EQ(PthFile::from_file(dir + "/ok.pth").get("w").nbytes, 16u);
}

TEST(Pth, ReadsEveryDtypeViewsScalarsAndEmptyTensors) {
  for (const ZipOptions &options : {ZipOptions{}, ZipOptions{false, false}}) {
    SCOPED_TRACE(options.zip64 ? "aligned, ZIP64" : "unaligned, no ZIP64");
    const Bytes b = test::small_pth(options);
    const PthFile f = parse(b);
    EXPECT_EQ(f.archive_name(), "archive");
    std::vector<std::string> names;
    for (const auto &t : f.tensors()) names.push_back(t.name);
    EXPECT_EQ(names, (std::vector<std::string>{"attn.in_proj_weight", "attn.q", "attn.k", "attn.v",
                                               "norm.weight", "norm.bias", "bn.num_batches_tracked",
                                               "idx", "codes", "mask", "empty"}));
    const DType want[] = {DType::f32, DType::f32, DType::f32, DType::f32, DType::f16, DType::bf16,
                          DType::i64, DType::i32, DType::i8,  DType::u8,  DType::f32};
    for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ(f.tensors()[i].dtype, want[i]) << names[i];
    // q, k, v are views of in_proj_weight at element offsets 0, 4, 8.
    const TensorInfo &w = f.get("attn.in_proj_weight");
    EXPECT_EQ(w.shape, (std::vector<int64_t>{6, 2}));
    EXPECT_EQ(w.nbytes, 48u);
    EXPECT_EQ(f.get("attn.q").data, w.data);
    EXPECT_EQ(f.get("attn.k").data, w.data + 16);
    EXPECT_EQ(f.get("attn.v").data, w.data + 32);
    EXPECT_EQ(f.get("attn.v").offset, w.offset + 32);
    EXPECT_EQ(f.get("attn.v").nbytes, 16u);
    EXPECT_EQ(std::memcmp(w.data, test::pattern_bytes(48, 0).data(), 48), 0);
    EXPECT_EQ(f.get("bn.num_batches_tracked").shape, std::vector<int64_t>{});
    EXPECT_EQ(f.get("bn.num_batches_tracked").nbytes, 8u);
    EXPECT_EQ(f.get("mask").shape, (std::vector<int64_t>{1, 4, 1}));
    EXPECT_EQ(f.get("empty").nbytes, 0u);
    EXPECT_EQ(f.get("empty").shape, (std::vector<int64_t>{0, 3}));
    EXPECT_EQ(to_f32(f.get("norm.weight")).size(), 3u);
    if (options.align64) {  // storages start on 64-byte boundaries, views at their offsets
      for (const char *name : {"attn.in_proj_weight", "norm.weight", "mask", "empty"})
        EXPECT_EQ(f.get(name).offset % 64, 0u) << name;
    }
  }
}

TEST(Pth, PlainDictsParametersAndProtocol4Opcodes) {
  // A plain dict (what torch.save({...}) writes) with a Parameter (keep_vars=True).
  Pickle p;
  p.proto(2).op('}').str("p");
  p.global("torch._utils", "_rebuild_parameter");
  test::pickle_tensor(&p, {"", "FloatStorage", "0", 4, 0, {2, 2}, {}});
  p.op(0x88).ordered_dict().op(0x87).op('R').op('s');
  p.str("p2").global("torch._utils", "_rebuild_parameter_with_state").mark();
  test::pickle_tensor(&p, {"", "FloatStorage", "0", 4, 2, {2}, {}});
  p.op(0x88).ordered_dict().op('N').tuple().op('R').op('s').stop();
  PthFile f = parse(make_pth(p.b, {{"0", test::pattern_bytes(16, 1)}}));
  EXPECT_EQ(f.get("p").shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(f.get("p2").data, f.get("p").data + 8);

  // Protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, BINGET of a memoized storage
  // (a second tensor on the same storage), LONG1 and BININT for the offsets, BINUNICODE8.
  Pickle q;
  q.proto(4).op(0x95).raw(std::string("\x40\0\0\0\0\0\0\0", 8)).op('}').op(0x94).mark();
  q.op(0x8c).op(1).raw("a").op(0x8c).op(12).raw("torch._utils").op(0x8c).op(18);
  q.raw("_rebuild_tensor_v2").op(0x93).op(0x94).mark().mark().str("storage");
  q.global("torch", "HalfStorage").str("k").str("cuda:0").integer(70000).tuple().op('Q');
  q.op(0x94).op(0x8a).op(1).op(0).integer(70000).op(0x85).integer(1).op(0x85).op(0x89);
  q.op('}').tuple().op('R');
  q.op(0x8d).raw(std::string("\1\0\0\0\0\0\0\0b", 9)).op('h').op(1).mark().op('h').op(2);
  q.integer(69999).integer(1).op(0x85).integer(1).op(0x85).op(0x89).op('}').op('N').tuple();
  q.op('R').op('u').stop();
  f = parse(make_pth(q.b, {{"k", test::pattern_bytes(140000, 2)}}));
  EXPECT_EQ(f.get("a").dtype, DType::f16);
  EXPECT_EQ(f.get("a").nbytes, 140000u);
  EXPECT_EQ(f.get("b").data, f.get("a").data + 139998);
}

TEST(Pth, CheckpointsHoldingAStateDict) {
  const Bytes storage = test::pattern_bytes(16, 3);
  auto checkpoint = [&](const std::vector<std::string> &dict_keys, bool epoch) {
    Pickle p;
    p.proto(2).op('}').mark();
    if (epoch) p.str("epoch").integer(7).str("args").op('N');
    for (const auto &k : dict_keys) {
      p.str(k).op('}').str("w");
      test::pickle_tensor(&p, {"", "FloatStorage", "0", 4, 0, {4}, {}});
      p.op('s');
    }
    p.op('u').stop();
    return make_pth(p.b, {{"0", storage}});
  };
  for (const char *key : {"model", "state_dict", "model_state"}) {
    const PthFile f = parse(checkpoint({key}, true));
    EXPECT_EQ(f.state_dict_key(), key);
    EXPECT_EQ(f.get("w").nbytes, 16u);
  }
  EXPECT_VQM_ERROR(parse(checkpoint({"model", "state_dict"}, false)), format,
                   "t.pth: the checkpoint holds both 'model' and 'state_dict'");
  EXPECT_VQM_ERROR(parse(checkpoint({"weights"}, true)), format,
                   "t.pth: the pickled dict's value for 'epoch' is an int (7), expected a tensor");
  // Inside the state dict, every value must be a tensor.
  Pickle p;
  p.proto(2).op('}').str("model").op('}').mark().str("w");
  test::pickle_tensor(&p, {"", "FloatStorage", "0", 4, 0, {4}, {}});
  p.str("x").integer(5).op('u').op('s').stop();
  EXPECT_VQM_ERROR(parse(make_pth(p.b, {{"0", storage}})), format,
                   "t.pth: state dict under 'model' value 'x' is an int (5), expected a tensor");
}

TEST(PthZip, TruncationAtManyLengths) {
  const Bytes full = test::small_pth();
  std::vector<size_t> cuts;
  for (size_t len = 0; len < full.size(); len += 7) cuts.push_back(len);
  for (size_t back = 1; back <= 120; ++back) cuts.push_back(full.size() - back);
  for (size_t len : cuts) {
    SCOPED_TRACE("length " + std::to_string(len));
    const Bytes cut(full.begin(), full.begin() + static_cast<long>(len));
    EXPECT_VQM_ERROR(parse(cut), format,
                     len < 22 ? "too short for a zip archive" : "t.pth: not a zip archive");
  }
  EXPECT_EQ(parse(full).tensors().size(), 11u);
  // The real file, cut in 64 places and just before its end.
  const Bytes real = test::read_bytes(test::data_path("models/torchvision_vit_b16_small.pth"));
  for (size_t k = 0; k < 64; ++k) {
    const size_t len = k < 48 ? real.size() / 48 * k : real.size() - (k - 47);
    SCOPED_TRACE("real length " + std::to_string(len));
    EXPECT_VQM_ERROR(PthFile::from_memory(real.data(), len, default_limits(), "t.pth"), format,
                     "t.pth: ");
  }
}

TEST(PthZip, NotAZip) {
  EXPECT_VQM_ERROR(parse(Bytes(100, 0)), format,
                   "t.pth: not a zip archive: no end of central "
                   "directory record in its last 100 bytes");
  const Bytes st = test::make_safetensors({{"w", "F32", {1}, {0, 0, 128, 63}}});
  EXPECT_VQM_ERROR(parse(st), format, "not a zip archive");
  // An EOCD whose comment length does not reach the end of the file exactly.
  Bytes b = one_tensor_pth();
  b.push_back(0);
  EXPECT_VQM_ERROR(parse(b), format, "not a zip archive");
  b = one_tensor_pth();
  set_le(&b, b.size() - 2, 5, 2);
  EXPECT_VQM_ERROR(parse(b), format, "not a zip archive");
  // ...but a real comment is fine.
  b = one_tensor_pth();
  set_le(&b, b.size() - 2, 3, 2);
  b.insert(b.end(), {'a', 'b', 'c'});
  EXPECT_EQ(parse(b).tensors().size(), 1u);
}

TEST(PthZip, EndRecordsPointingOutside) {
  const Bytes classic = one_tensor_pth({true, false});
  const size_t eocd = classic.size() - 22;
  const std::string cd_size = std::to_string(le32(classic, eocd + 12));
  ASSERT_EQ(cd_size, std::to_string(3 * 46 + 16 + 14 + 15));
  auto with = [&](size_t at, uint64_t v, int n) {
    Bytes b = classic;
    set_le(&b, eocd + at, v, n);
    return b;
  };
  EXPECT_VQM_ERROR(parse(with(16, classic.size(), 4)), format,
                   "central directory of " + cd_size + " bytes at offset " +
                       std::to_string(classic.size()) + " runs past its end record at " +
                       std::to_string(eocd));
  EXPECT_VQM_ERROR(parse(with(12, 0xfffffffe, 4)), format, "runs past its end record");
  EXPECT_VQM_ERROR(parse(with(16, 0xffffffff, 4)), format,
                   "ZIP64 markers (0xffff/0xffffffff) but there is no ZIP64 locator");
  EXPECT_VQM_ERROR(parse(with(10, 60000, 2)), unsupported, "spans several disks");
  EXPECT_VQM_ERROR(parse(with(4, 1, 2)), unsupported, "spans several disks (disk 1");
  Bytes b = with(8, 5, 2);
  set_le(&b, eocd + 10, 5, 2);
  EXPECT_VQM_ERROR(parse(b), format,
                   "5 entries cannot fit in a " + cd_size + "-byte central directory");
  EXPECT_VQM_ERROR(parse(with(16, 1, 4)), format,
                   "central directory entry 0 at offset 1: signature is 0x");

  // ZIP64 records: the locator's offset, the record's signature and size, and agreement.
  const Bytes z = one_tensor_pth();
  const size_t loc = find_sig(z, kLocator), rec = find_sig(z, kZip64Eocd);
  auto z_with = [&](size_t at, uint64_t v, int n) {
    Bytes c = z;
    set_le(&c, at, v, n);
    return c;
  };
  EXPECT_VQM_ERROR(parse(z_with(loc + 8, loc, 8)), format,
                   "ZIP64 end of central directory record at offset " + std::to_string(loc) +
                       " does not fit before its locator");
  EXPECT_VQM_ERROR(parse(z_with(loc + 8, ~uint64_t{0}, 8)), format, "does not fit before");
  EXPECT_VQM_ERROR(parse(z_with(loc + 8, rec - 8, 8)), format,
                   "no ZIP64 end of central directory record at offset " + std::to_string(rec - 8));
  EXPECT_VQM_ERROR(parse(z_with(rec + 4, 1000, 8)), format, "record size 1000 does not fit");
  EXPECT_VQM_ERROR(parse(z_with(rec + 4, 3, 8)), format, "record size 3 does not fit");
  EXPECT_VQM_ERROR(parse(z_with(rec + 32, 2, 8)), format,
                   "the end of central directory records disagree: 3 entries");
  EXPECT_VQM_ERROR(parse(z_with(loc + 16, 2, 4)), unsupported, "spans 2 disks");
  // When the classic record says "see ZIP64", the ZIP64 values are used.
  Bytes sat = z;
  set_le(&sat, sat.size() - 22 + 8, 0xffff, 2);
  set_le(&sat, sat.size() - 22 + 10, 0xffff, 2);
  set_le(&sat, sat.size() - 22 + 12, 0xffffffff, 4);
  set_le(&sat, sat.size() - 22 + 16, 0xffffffff, 4);
  EXPECT_EQ(parse(sat).tensors().size(), 1u);
  set_le(&sat, rec + 48, 0x7fffffffffffffff, 8);
  EXPECT_VQM_ERROR(parse(sat), format, "at offset 9223372036854775807 runs past its end record");
}

TEST(PthZip, CentralDirectoryEntriesThatLie) {
  const Bytes base = one_tensor_pth();
  const size_t cd = find_sig(base, kCentral, 1);  // the entry of archive/data/0
  auto with = [&](size_t at, uint64_t v, int n) {
    Bytes b = base;
    set_le(&b, cd + at, v, n);
    return b;
  };
  const std::string entry = "t.pth: zip entry 'archive/data/0'";
  EXPECT_VQM_ERROR(parse(with(42, 0, 4)), format,
                   entry + ": local header names it 'archive/data.pkl'");
  EXPECT_VQM_ERROR(parse(with(42, 5, 4)), format,
                   entry + ": no local header at offset 5 (signature 0x");
  EXPECT_VQM_ERROR(parse(with(42, cd, 4)), format,
                   entry + ": local header offset " + std::to_string(cd) +
                       " is not before the central directory");
  EXPECT_VQM_ERROR(parse(with(42, 0xfffffff0, 4)), format, "is not before the central directory");
  EXPECT_VQM_ERROR(parse(with(20, 17, 4)), format,
                   entry + " is stored but its compressed size 17 differs from its size 16");
  Bytes b = with(20, 100000, 4);
  set_le(&b, cd + 24, 100000, 4);
  EXPECT_VQM_ERROR(parse(b), format, entry + ": 100000 bytes at offset ");
  EXPECT_VQM_ERROR(parse(b), format, "run past the start of the central directory");
  EXPECT_VQM_ERROR(parse(with(0, 0x02014b51, 4)), format,
                   "t.pth: central directory entry 1 at offset " + std::to_string(cd) +
                       ": signature is 0x2014b51, expected 0x2014b50");
  EXPECT_VQM_ERROR(parse(with(28, 60000, 2)), format,
                   "t.pth: central directory entry 1: name, extra and comment (60000 bytes) run "
                   "past the end of the central directory");
  EXPECT_VQM_ERROR(parse(with(30, 2, 2)), format,
                   entry + ": extra field ends inside a field header");
  // Sizes marked 0xffffffff need a ZIP64 extra field; a short or lying one is refused.
  EXPECT_VQM_ERROR(parse(with(24, 0xffffffff, 4)), format,
                   entry + ": a size or offset is 0xffffffff but there is no ZIP64 extra field");
  EXPECT_VQM_ERROR(parse(with(34, 1, 2)), unsupported, entry + " starts on disk 1");
  EXPECT_VQM_ERROR(parse(with(8, 0x0809, 2)), unsupported, entry + " is encrypted");
  // Local and central headers must agree on the method.
  b = base;
  set_le(&b, find_sig(base, kLocal, 1) + 8, 8, 2);
  EXPECT_VQM_ERROR(parse(b), format, entry + ": local header says method 8, central directory");
  // Bytes between the last entry and the end of the directory.
  b = base;
  const size_t eocd = b.size() - 22;
  set_le(&b, eocd + 8, 2, 2);
  set_le(&b, eocd + 10, 2, 2);
  set_le(&b, find_sig(b, kZip64Eocd) + 24, 2, 8);
  set_le(&b, find_sig(b, kZip64Eocd) + 32, 2, 8);
  EXPECT_VQM_ERROR(parse(b), format, "t.pth: central directory has 61 bytes after its 2 entries");
}

// The one-tensor file with `extra` as the central extra field of archive/data/0, whose sizes and
// local header offset are marked 0xffffffff ("in the ZIP64 extra field", as miniz writes them
// past 4 GiB).
Bytes with_zip64_extra(const Bytes &extra, uint32_t *local_out = nullptr) {
  Bytes b = one_tensor_pth({true, false});
  const size_t cd = find_sig(b, kCentral, 1);
  if (local_out) *local_out = le32(b, cd + 42);
  set_le(&b, cd + 20, 0xffffffff, 4);
  set_le(&b, cd + 24, 0xffffffff, 4);
  set_le(&b, cd + 42, 0xffffffff, 4);
  set_le(&b, cd + 30, extra.size(), 2);
  const size_t name_end = cd + 46 + (le32(b, cd + 28) & 0xffff);
  b.insert(b.begin() + static_cast<long>(name_end), extra.begin(), extra.end());
  const size_t eocd = b.size() - 22;
  set_le(&b, eocd + 12, le32(b, eocd + 12) + extra.size(), 4);
  return b;
}

Bytes zip64_field(const std::vector<uint64_t> &values, size_t declared) {
  Bytes f = {0x99, 0x99, 0, 0, 1, 0, static_cast<uint8_t>(declared), 0};  // an empty field first
  for (uint64_t v : values)
    for (int i = 0; i < 8; ++i) f.push_back(static_cast<uint8_t>(v >> (8 * i)));
  return f;
}

TEST(PthZip, Zip64ExtraFieldsAreRead) {
  uint32_t local = 0;
  with_zip64_extra({}, &local);
  EXPECT_EQ(parse(with_zip64_extra(zip64_field({16, 16, local}, 24))).get("w").nbytes, 16u);
  const std::string entry = "t.pth: zip entry 'archive/data/0'";
  EXPECT_VQM_ERROR(parse(with_zip64_extra(zip64_field({16, 16}, 16))), format,
                   entry +
                       ": ZIP64 extra field of 16 bytes lacks a value its record marks "
                       "0xffffffff");
  EXPECT_VQM_ERROR(parse(with_zip64_extra(zip64_field({16, 16, local}, 40))), format,
                   entry +
                       ": extra field 0x1 of 40 bytes runs past the extra data (24 bytes "
                       "left)");
  EXPECT_VQM_ERROR(parse(with_zip64_extra(zip64_field({16, 16, 1u << 20}, 24))), format,
                   entry + ": local header offset 1048576 is not before the central directory");
  EXPECT_VQM_ERROR(parse(with_zip64_extra({})), format,
                   entry + ": a size or offset is 0xffffffff but there is no ZIP64 extra field");
}

TEST(PthZip, CompressedDuplicateAndMissingEntries) {
  const Bytes pickle = test::state_dict_pickle({{"w", "FloatStorage", "0", 4, 0, {4}, {}}});
  const Bytes data = test::pattern_bytes(16, 9);
  const ZipFile pkl{"archive/data.pkl", pickle}, d0{"archive/data/0", data};
  EXPECT_EQ(parse(make_zip({pkl, d0})).tensors().size(), 1u);
  EXPECT_VQM_ERROR(parse(make_zip({pkl, {"archive/data/0", data, 8}})), unsupported,
                   "t.pth: zip entry 'archive/data/0' is compressed (method 8); only stored "
                   "entries are read (torch.save stores them)");
  EXPECT_VQM_ERROR(parse(make_zip({pkl, d0, {"archive/notes.txt", data, 12}})), unsupported,
                   "'archive/notes.txt' is compressed (method 12)");
  EXPECT_VQM_ERROR(parse(make_zip({pkl, d0, d0})), format,
                   "t.pth: zip entry 'archive/data/0' appears twice in the central directory");
  EXPECT_VQM_ERROR(parse(make_zip({d0})), format,
                   "t.pth: no <archive>/data.pkl among the zip's 1 entries");
  EXPECT_VQM_ERROR(parse(make_zip({{"data.pkl", pickle}, d0})), format, "no <archive>/data.pkl");
  EXPECT_VQM_ERROR(parse(make_zip({{"a/b/data.pkl", pickle}, d0})), format,
                   "no <archive>/data.pkl");
  EXPECT_VQM_ERROR(parse(make_zip({pkl, d0, {"other/data.pkl", pickle}})), format,
                   "t.pth: two pickles, zip entries 'archive/data.pkl' and 'other/data.pkl'");
  EXPECT_VQM_ERROR(parse(make_zip({pkl})), format,
                   "t.pth: storage '0' (FloatStorage of 4 elements) has no zip entry "
                   "'archive/data/0'");
  EXPECT_VQM_ERROR(parse(make_zip({pkl, {"other/data/0", data}})), format,
                   "has no zip entry 'archive/data/0'");
  // The archive's name is whatever folder holds data.pkl.
  const PthFile f = parse(make_zip({{"my model/data.pkl", pickle}, {"my model/data/0", data}}));
  EXPECT_EQ(f.archive_name(), "my model");
  // torch >= 2.1 writes byteorder; only little-endian is read.
  EXPECT_EQ(parse(make_zip({pkl, d0, {"archive/byteorder", {'l', 'i', 't', 't', 'l', 'e'}}}))
                .tensors()
                .size(),
            1u);
  EXPECT_VQM_ERROR(parse(make_zip({pkl, d0, {"archive/byteorder", {'b', 'i', 'g'}}})), unsupported,
                   "t.pth: byteorder is 'big', only little-endian files are read");
}

TEST(PthZip, RandomMutationsNeverCrash) {
  const Bytes base = test::small_pth();
  std::mt19937 rng(4242);
  int errors = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    Bytes b = base;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % b.size();
      const uint8_t values[] = {0, 0xff, 0x7f, 0x80, 1, '(', 't', static_cast<uint8_t>(rng())};
      b[pos] = values[rng() % sizeof values];
    }
    if (rng() % 8 == 0) b.resize(rng() % b.size());
    try {
      const PthFile f = parse(b);
      for (const auto &t : f.tensors()) {
        uint64_t n = 0;
        ASSERT_TRUE(dtype_nbytes(t.dtype, t.shape, &n));
        EXPECT_EQ(n, t.nbytes);
        EXPECT_LE(t.offset + t.nbytes, b.size());
      }
    } catch (const Error &e) {
      ++errors;
      EXPECT_EQ(std::string(e.what()).rfind("t.pth: ", 0), 0u) << e.what();
    } catch (const std::exception &e) {
      ADD_FAILURE() << "non-vqm exception: " << e.what();
    }
  }
  EXPECT_GT(errors, 1000);
}

}  // namespace
}  // namespace vqm
