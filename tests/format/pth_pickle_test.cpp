// PthFile's pickle layer: forbidden globals and opcodes, a broken stack or memo, hostile sizes,
// the bounds of the pickle machine, and tensors whose geometry does not fit their storage. Every
// pickle is wrapped in a valid zip (tests/pth_files.h).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <functional>

#include "pth_files.h"
#include "runtime/io/error.h"
#include "runtime/io/pth.h"
#include "runtime/io/pth_pickle.h"
#include "test_util.h"

namespace vqm {
namespace {

using test::Bytes;
using test::Pickle;
using test::PtTensor;

const std::string kAt = "t.pth: pickle 'archive/data.pkl' byte ";

// The pickle in a .pth with one 16-byte storage "0" (four float32).
PthFile parse(const Bytes &pickle, const Limits &limits = default_limits()) {
  const Bytes b = test::make_pth(pickle, {{"0", test::pattern_bytes(16, 5)}});
  return PthFile::from_memory(b.data(), b.size(), limits, "t.pth");
}
PthFile parse(const Pickle &p, const Limits &limits = default_limits()) {
  return parse(p.b, limits);
}

// The bytes of a string literal, NULs included.
template <size_t N>
std::string lit(const char (&s)[N]) {
  return std::string(s, N - 1);
}

// PROTO 2, then `body`, then STOP.
Pickle body(const std::string &raw) {
  return Pickle().proto(2).raw(raw).stop();
}

// ('storage', torch.<type>, key, 'cpu', numel) and BINPERSID.
void storage(Pickle *p, const std::string &type = "FloatStorage", const std::string &key = "0",
             int64_t numel = 4) {
  p->mark().str("storage").global("torch", type).str(key).str("cpu").integer(numel).tuple();
  p->op('Q');
}

// {'w': _rebuild_tensor_v2(<args>)} with the arguments written by `args`.
Pickle tensor_call(const std::function<void(Pickle *)> &args) {
  Pickle p;
  p.proto(2).op('}').str("w").global("torch._utils", "_rebuild_tensor_v2").mark();
  args(&p);
  return p.tuple().op('R').op('s').stop();
}

// {'w': one tensor as torch writes it}.
Pickle one(const PtTensor &t) {
  Pickle p;
  p.proto(2).op('}').str(t.name);
  test::pickle_tensor(&p, t);
  return p.op('s').stop();
}

TEST(PthPickle, ForbiddenGlobalsAreRefusedByName) {
  const std::pair<const char *, const char *> globals[] = {
      {"os", "system"},
      {"posix", "system"},
      {"builtins", "eval"},
      {"builtins", "exec"},
      {"__builtin__", "getattr"},
      {"subprocess", "Popen"},
      {"torch.storage", "_load_from_bytes"},
      {"torch.serialization", "_get_restore_location"},
      {"torch._utils", "_rebuild_qtensor"},
      {"torch._utils", "_rebuild_sparse_tensor"},
      {"torch", "QInt8Storage"},
      {"torch", "load"},
      {"collections", "defaultdict"},
      {"numpy.core.multiarray", "_reconstruct"},
  };
  for (const auto &[module, name] : globals) {
    const std::string full = std::string(module) + " " + name;
    SCOPED_TRACE(full);
    // GLOBAL, then what an exploit does next: call it.
    Pickle p;
    p.proto(2).global(module, name).str("id").op(0x85).op('R').stop();
    EXPECT_VQM_ERROR(
        parse(p), unsupported,
        kAt + "2: global '" + full + "' is not allowed (only tensor state dicts are read)");
    Pickle q;
    q.proto(4).op(0x8c).op(static_cast<uint8_t>(std::strlen(module))).raw(module);
    q.str(name).op(0x93).stop();
    EXPECT_VQM_ERROR(parse(q), unsupported, "global '" + full + "' is not allowed");
  }
}

TEST(PthPickle, OpcodesOutsideTheAllowListAreRefused) {
  const std::pair<uint8_t, const char *> refused[] = {
      {'i', "INST"},         {'o', "OBJ"},
      {0x81, "NEWOBJ"},      {0x92, "NEWOBJ_EX"},
      {0x82, "EXT1"},        {0x83, "EXT2"},
      {0x84, "EXT4"},        {'P', "PERSID"},
      {'g', "GET"},          {'p', "PUT"},
      {'S', "STRING"},       {'V', "UNICODE"},
      {'T', "BINSTRING"},    {'U', "SHORT_BINSTRING"},
      {'B', "BINBYTES"},     {'C', "SHORT_BINBYTES"},
      {0x8e, "BINBYTES8"},   {0x96, "BYTEARRAY8"},
      {'I', "INT"},          {'L', "LONG"},
      {0x8b, "LONG4"},       {'F', "FLOAT"},
      {'0', "POP"},          {'1', "POP_MARK"},
      {'2', "DUP"},          {'l', "LIST"},
      {'d', "DICT"},         {0x8f, "EMPTY_SET"},
      {0x90, "ADDITEMS"},    {0x91, "FROZENSET"},
      {0x97, "NEXT_BUFFER"}, {0x98, "READONLY_BUFFER"},
  };
  for (const auto &[op, name] : refused) {
    SCOPED_TRACE(name);
    const uint8_t code = op;  // a copy: C++17 lambdas cannot capture structured bindings
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", code);
    EXPECT_VQM_ERROR(parse(body(std::string(1, static_cast<char>(code)) + "x\n")), unsupported,
                     kAt + "2: opcode " + name + " (" + hex +
                         ") is not allowed (only tensor state dicts are read)");
  }
  for (uint8_t code : {0xffu, 0x00u, unsigned{'z'}, 0x99u}) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", code);
    EXPECT_VQM_ERROR(parse(body(std::string(1, static_cast<char>(code)))), format,
                     kAt + "2: byte " + hex + " is not a pickle opcode");
  }
  for (int version : {0, 1, 6, 255}) {
    EXPECT_VQM_ERROR(parse(Pickle().proto(version).op('}').stop()), unsupported,
                     kAt + "0: pickle protocol " + std::to_string(version) +
                         " is not supported (torch.save writes 2; 2 to 5 are read)");
  }
  // A pickle without PROTO (protocol 0/1 framing) is read if its opcodes are allowed.
  EXPECT_TRUE(parse(Pickle().op('}').stop()).tensors().empty());
}

TEST(PthPickle, ReduceAndBuildOnlyDoWhatTorchWrites) {
  EXPECT_VQM_ERROR(parse(Pickle().proto(2).global("torch", "FloatStorage").op(')').op('R').stop()),
                   unsupported, kAt + "23: REDUCE of global 'torch FloatStorage' is not allowed");
  EXPECT_VQM_ERROR(parse(body("))R")), unsupported,
                   "REDUCE of a tuple of 0 is not allowed (only allowed globals are called)");
  EXPECT_VQM_ERROR(parse(Pickle().proto(2).str("f").op(')').op('R').stop()), unsupported,
                   "REDUCE of the string 'f' is not allowed");
  EXPECT_VQM_ERROR(parse(Pickle().proto(2).global("collections", "OrderedDict").op('N').op('R')),
                   format,
                   "REDUCE of global 'collections OrderedDict' with arguments None, expected a "
                   "tuple");
  EXPECT_VQM_ERROR(
      parse(Pickle().proto(2).global("collections", "OrderedDict").raw("]\x85R").stop()),
      unsupported, "OrderedDict with 1 arguments is not supported (only OrderedDict())");
  EXPECT_VQM_ERROR(parse(body("}}b")), unsupported,
                   "BUILD of a dict of 0 with a dict of 0 is not allowed (only an OrderedDict's "
                   "attributes are)");
  Pickle build_tensor;
  build_tensor.proto(2);
  test::pickle_tensor(&build_tensor, {"", "FloatStorage", "0", 4, 0, {4}, {}});
  EXPECT_VQM_ERROR(parse(build_tensor.op('}').op('b').stop()), unsupported,
                   "BUILD of a tensor with a dict of 0 is not allowed");
  EXPECT_VQM_ERROR(
      parse(Pickle().proto(2).global("torch._utils", "_rebuild_parameter").op(')').op('R').stop()),
      format, "_rebuild_parameter takes 3 arguments, the first a tensor; got a tuple");
}

TEST(PthPickle, RebuildTensorArgumentsAreTypeChecked) {
  EXPECT_VQM_ERROR(parse(tensor_call([](Pickle *p) {
                     storage(p);
                     p->integer(0).ints({4}).ints({1}).op(0x89);
                   })),
                   format, "_rebuild_tensor_v2 takes 6 or 7 arguments, got 5");
  EXPECT_VQM_ERROR(parse(tensor_call([](Pickle *p) {
                     p->integer(0).integer(0).ints({4}).ints({1}).op(0x89).op('}');
                   })),
                   format, "_rebuild_tensor_v2 argument 0 (storage) is an int (0)");
  EXPECT_VQM_ERROR(parse(tensor_call([](Pickle *p) {
                     storage(p);
                     p->integer(0).op(']').ints({1}).op(0x89).op('}');
                   })),
                   format, "_rebuild_tensor_v2 argument 2 (size) is a list of 0");
  EXPECT_VQM_ERROR(parse(tensor_call([](Pickle *p) {
                     storage(p);
                     p->integer(0).ints({4}).ints({1}).integer(0).op('}');
                   })),
                   format, "argument 4 (requires_grad) is an int (0)");
  EXPECT_VQM_ERROR(parse(tensor_call([](Pickle *p) {
                     storage(p);
                     p->integer(0).ints({4}).ints({1}).op(0x89).op('}').op('}');
                     p->str("conj").op(0x88).op('s');
                   })),
                   unsupported,
                   "_rebuild_tensor_v2 with tensor metadata (a dict of 1) is not supported");
}

TEST(PthPickle, PersistentIdsAreStoragesOnly) {
  EXPECT_VQM_ERROR(parse(Pickle().proto(2).str("x").op('Q').stop()), unsupported,
                   "persistent id the string 'x' is not a storage ('storage', type, key, "
                   "location, numel)");
  EXPECT_VQM_ERROR(parse(Pickle().proto(2).mark().str("storage").tuple().op('Q').stop()),
                   unsupported, "persistent id a tuple of 1 is not a storage");
  EXPECT_VQM_ERROR(parse(Pickle()
                             .proto(2)
                             .mark()
                             .str("module")
                             .integer(1)
                             .integer(2)
                             .integer(3)
                             .integer(4)
                             .tuple()
                             .op('Q')
                             .stop()),
                   unsupported, "persistent id a tuple of 5 is not a storage");
  Pickle p;
  p.proto(2).mark().str("storage").global("collections", "OrderedDict").str("0").str("cpu");
  EXPECT_VQM_ERROR(parse(p.integer(4).tuple().op('Q').stop()), format,
                   "storage type is global 'collections OrderedDict', expected a torch storage "
                   "type");
  p = Pickle();
  p.proto(2).mark().str("storage").global("torch", "FloatStorage").integer(0).str("cpu");
  EXPECT_VQM_ERROR(parse(p.integer(4).tuple().op('Q').stop()), format,
                   "storage key and location are an int (0) and the string 'cpu', expected "
                   "strings");
  p = Pickle().proto(2);
  storage(&p, "FloatStorage", "0", -1);
  EXPECT_VQM_ERROR(parse(p.stop()), format,
                   "storage '0' has an int (-1) elements, expected an int");
}

TEST(PthPickle, AMemoizedPersistentIdNamesTheSameStorage) {
  Pickle p;
  p.proto(2).op('}').mark();
  for (const char *name : {"a", "b"}) {
    p.str(name).global("torch._utils", "_rebuild_tensor_v2").mark();
    if (name[0] == 'a') {
      p.mark().str("storage").global("torch", "FloatStorage").str("0").str("cpu").integer(4);
      p.tuple().put(7).op('Q');
    } else {
      p.get(7).op('Q');  // the same pid tuple again
    }
    p.integer(name[0] == 'a' ? 0 : 2).ints({2}).ints({1}).op(0x89).op('}').tuple().op('R');
  }
  const PthFile f = parse(p.op('u').stop());
  EXPECT_EQ(f.get("b").data, f.get("a").data + 8);
}

TEST(PthPickle, StoragesMustMatchTheirEntries) {
  auto pid_only = [](const std::string &type, const std::string &key, int64_t numel) {
    Pickle p;
    p.proto(2);
    storage(&p, type, key, numel);
    return p.stop();
  };
  EXPECT_VQM_ERROR(parse(pid_only("FloatStorage", "0", 5)), format,
                   "t.pth: storage '0' (FloatStorage of 5 elements, 20 bytes) does not match its "
                   "zip entry 'archive/data/0' of 16 bytes");
  EXPECT_VQM_ERROR(parse(pid_only("HalfStorage", "0", 4)), format,
                   "(HalfStorage of 4 elements, 8 bytes) does not match");
  EXPECT_VQM_ERROR(parse(pid_only("FloatStorage", "0", int64_t{1} << 62)), format,
                   "t.pth: storage '0' (FloatStorage of 4611686018427387904 elements) needs more "
                   "than 2^64 bytes");
  EXPECT_VQM_ERROR(parse(pid_only("FloatStorage", "../0", 4)), format,
                   "has no zip entry 'archive/data/../0'");
  // One key, two declarations.
  Pickle p;
  p.proto(2).mark();
  storage(&p, "FloatStorage", "0", 4);
  storage(&p, "FloatStorage", "0", 2);
  EXPECT_VQM_ERROR(parse(p), format,
                   "storage '0' is declared as FloatStorage of 4 elements and again as "
                   "FloatStorage of 2");
  p = Pickle().proto(2).mark();
  storage(&p, "FloatStorage", "0", 4);
  storage(&p, "IntStorage", "0", 4);
  EXPECT_VQM_ERROR(parse(p), format, "and again as IntStorage of 4");
}

TEST(PthPickle, BrokenStackMemoAndMarks) {
  EXPECT_VQM_ERROR(parse(body("s")), format,
                   kAt + "2: stack underflow: SETITEM (0x73) needs a value, the stack is empty");
  EXPECT_VQM_ERROR(parse(body("}Ns")), format, kAt + "4: stack underflow: SETITEM");
  EXPECT_VQM_ERROR(parse(body("}(Ns")), format,
                   "SETITEM (0x73) needs a value, the stack above the last MARK is empty");
  EXPECT_VQM_ERROR(parse(body("}(\x85")), format,
                   "stack underflow: TUPLE1 (0x85) needs a value, the stack above the last MARK is "
                   "empty");
  EXPECT_VQM_ERROR(parse(body("N\x87")), format, "TUPLE3 (0x87) needs 3 values, the stack holds 1");
  EXPECT_VQM_ERROR(parse(body("(N\x86")), format,
                   "TUPLE2 (0x86) needs 2 values, the stack holds 1 above the last MARK");
  EXPECT_VQM_ERROR(parse(body("Nt")), format, kAt + "3: TUPLE (0x74) without a MARK before it");
  EXPECT_VQM_ERROR(parse(body("}u")), format, "SETITEMS (0x75) without a MARK before it");
  EXPECT_VQM_ERROR(parse(body("}(}")), format, kAt + "5: STOP with the MARK at byte 3 still open");
  EXPECT_VQM_ERROR(parse(body("}}")), format, "STOP with 2 values on the stack, expected 1");
  EXPECT_VQM_ERROR(parse(body("")), format, kAt + "2: STOP with 0 values on the stack");
  EXPECT_VQM_ERROR(parse(Pickle().proto(2).raw("}.x")), format, kAt + "3: 1 bytes follow STOP");
  EXPECT_VQM_ERROR(parse(Pickle().proto(2).op('}')), format,
                   kAt + "3: the pickle ends without STOP after 3 bytes (truncated?)");
  EXPECT_VQM_ERROR(parse(Pickle()), format, kAt + "0: the pickle ends without STOP after 0 bytes");
  EXPECT_VQM_ERROR(parse(body("h\x05")), format,
                   kAt + "2: BINGET (0x68) of memo key 5, which was never set");
  EXPECT_VQM_ERROR(parse(body(lit("}q\x01h\x00"))), format, "memo key 0, which was never set");
  EXPECT_VQM_ERROR(parse(body(std::string("j\xff\xff\xff\xff", 5))), format,
                   "LONG_BINGET (0x6a) of memo key 4294967295, which was never set");
  EXPECT_VQM_ERROR(parse(body(lit("q\x00"))), format,
                   "stack underflow: BINPUT (0x71) needs a value");
  // A sparse memo key works (no 4-billion-entry table): the tuple shows both gets succeeded.
  EXPECT_VQM_ERROR(parse(body(std::string("(}r\x00\x28\x6b\xeej\x00\x28\x6b\xeet", 13))), format,
                   "t.pth: the pickle holds a tuple of 2, expected a dict of tensors");
  EXPECT_VQM_ERROR(parse(body("}Na")), format, "APPEND (0x61) on a dict of 0, expected a list");
  EXPECT_VQM_ERROR(parse(body("](Ne")), format, "t.pth: the pickle holds a list of 1");
  EXPECT_VQM_ERROR(parse(body("]NNs")), format, "SETITEM (0x73) on a list of 0, expected a dict");
  EXPECT_VQM_ERROR(parse(body("}(Nu")), format, "SETITEMS with an odd number of values (1)");
  EXPECT_VQM_ERROR(parse(body("cos")), format,
                   "GLOBAL module has no newline before the end of the pickle (truncated?)");
  EXPECT_VQM_ERROR(parse(body("cos\nsystem")), format, "GLOBAL name has no newline");
  EXPECT_VQM_ERROR(parse(body("NN\x93")), format,
                   "STACK_GLOBAL of None and None, expected two strings");
}

TEST(PthPickle, HugeDeclaredSizesFailBeforeAnyAllocation) {
  EXPECT_VQM_ERROR(parse(body(std::string("X\x00\x00\x00\x80", 5))), format,
                   kAt +
                       "2: BINUNICODE string of 2147483648 bytes runs past the end of the "
                       "pickle (1 bytes left)");
  EXPECT_VQM_ERROR(parse(body(std::string("X\xff\xff\xff\xff", 5))), format,
                   "string of 4294967295 bytes runs past the end");
  EXPECT_VQM_ERROR(parse(body(std::string("\x8d\0\0\0\0\0\0\0\x80", 9))), format,
                   "BINUNICODE8 string of 9223372036854775808 bytes runs past the end");
  EXPECT_VQM_ERROR(parse(body(std::string("\x8d\xff\xff\xff\xff\xff\xff\xff\xff", 9))), format,
                   "BINUNICODE8 string of 18446744073709551615 bytes runs past");
  EXPECT_VQM_ERROR(parse(body("\x8c\xc8"
                              "abc")),
                   format,
                   "SHORT_BINUNICODE string of 200 bytes runs past the end of the pickle (4 bytes "
                   "left)");
  EXPECT_VQM_ERROR(parse(body(std::string("\x95\0\0\0\0\0\x01\0\0", 9))), format,
                   "FRAME of 1099511627776 bytes runs past the end of the pickle");
  EXPECT_VQM_ERROR(parse(body(std::string("\x8a\x09\1\2\3\4\5\6\7\x08\x09", 11))), unsupported,
                   "LONG1 integer of 9 bytes does not fit in 64 bits");
  EXPECT_VQM_ERROR(parse(body("\x8a\xc8\x01")), format,
                   "LONG1 needs 200 bytes, but the pickle ends 2 bytes later (truncated?)");
  EXPECT_VQM_ERROR(parse(Pickle().proto(2).raw("J\x01\x02")), format,
                   "BININT needs 4 bytes, but the pickle ends 2 bytes later");
  EXPECT_VQM_ERROR(parse(body(std::string("X\x02\0\0\0\xff\xfe", 7))), format,
                   "BINUNICODE string of 2 bytes is not UTF-8");
  EXPECT_VQM_ERROR(parse(body(std::string("X\x02\0\0\0\xc0\x80", 7))), format, "is not UTF-8");
  // The pickle itself is bounded by max_json_bytes (it is the .pth's header).
  Limits l;
  l.max_json_bytes = 4;
  EXPECT_TRUE(parse(body("}"), l).tensors().empty());
  l.max_json_bytes = 3;
  EXPECT_VQM_ERROR(parse(body("}"), l), limit,
                   "t.pth: zip entry 'archive/data.pkl' is 4 bytes, over the limit max_json_bytes "
                   "(3; the pickle is the header)");
}

TEST(PthPickle, TruncatedPickleAtEveryLength) {
  const Bytes full = test::state_dict_pickle({{"w", "FloatStorage", "0", 4, 0, {2, 2}, {}}});
  for (size_t len = 0; len < full.size(); ++len) {
    SCOPED_TRACE("length " + std::to_string(len));
    EXPECT_VQM_ERROR(parse(Bytes(full.begin(), full.begin() + static_cast<long>(len))), format,
                     kAt);
  }
  EXPECT_EQ(parse(full).get("w").nbytes, 16u);
}

TEST(PthPickle, MachineBoundsAreLimits) {
  // MARK nesting, through the reader: 64 levels are fine, 65 are not.
  EXPECT_VQM_ERROR(parse(body(std::string(64, '('))), format, "STOP with the MARK at byte 65");
  EXPECT_VQM_ERROR(parse(body(std::string(65, '('))), limit,
                   kAt + "66: MARKs nested deeper than 64 levels (a bound of the pickle reader)");
  // The stack, through the reader: 2^20 values.
  EXPECT_VQM_ERROR(parse(body(std::string((size_t{1} << 20) + 1, 'N'))), limit,
                   "stack deeper than 1048576 values (a bound of the pickle reader)");
  // Storage keys (torch writes decimal numbers): 256 bytes at most.
  Pickle key;
  key.proto(2);
  storage(&key, "FloatStorage", std::string(257, '7'), 4);
  EXPECT_VQM_ERROR(parse(key.stop()), limit,
                   "storage key of 257 bytes is longer than 256 (a bound of the pickle reader)");
  // The others with small bounds on the machine itself.
  auto run = [](const std::string &pickle, const detail::pickle::Bounds &bounds) {
    detail::pickle::Machine m(
        "m", [](detail::pickle::Object &) {}, bounds);
    m.run(reinterpret_cast<const uint8_t *>(pickle.data()), pickle.size());
  };
  detail::pickle::Bounds small;
  small.memo = 3;
  run(lit("]q\x00q\x01q\x02q\x00."), small);  // overwriting a key adds no entry
  EXPECT_VQM_ERROR(run(lit("]q\x00q\x01q\x02q\x03."), small), limit,
                   "m byte 7: memo of more than 3 entries (a bound of the pickle reader)");
  EXPECT_VQM_ERROR(run("]\x94\x94\x94\x94.", small), limit, "memo of more than 3 entries");
  small = detail::pickle::Bounds();
  small.objects = 2;
  EXPECT_VQM_ERROR(run("(}}}t.", small), limit,
                   "m byte 3: more than 2 objects (a bound of the pickle reader)");
  small = detail::pickle::Bounds();
  small.items = 3;
  EXPECT_VQM_ERROR(run("](NNNNe.", small), limit,
                   "m byte 6: containers hold more than 3 values (a bound of the pickle reader)");
  EXPECT_VQM_ERROR(run("]NaNaNaNa.", small), limit, "m byte 8: containers hold more than 3");
}

// Each opcode costs O(1) amortized: a million APPENDs (2 MB of pickle) take milliseconds. An
// exact reserve per APPEND once made this quadratic (terabytes of copying).
TEST(PthPickle, AMillionAppendsAreLinear) {
  std::string appends;
  for (int i = 0; i < (1 << 20); ++i) appends += "Na";
  EXPECT_VQM_ERROR(parse(body("]" + appends)), format,
                   "t.pth: the pickle holds a list of 1048576, expected a dict of tensors");
}

TEST(PthTensor, GeometryThatDoesNotFitItsStorage) {
  auto shaped = [](const std::vector<int64_t> &shape, const std::vector<int64_t> &stride,
                   int64_t offset = 0) {
    return one({"w", "FloatStorage", "0", 4, offset, shape, stride});
  };
  const std::string w = "t.pth: tensor 'w': ";
  EXPECT_VQM_ERROR(parse(shaped({int64_t{1} << 40}, {1})), limit,
                   w + "size[0] is 1099511627776, over the limit max_dim (2147483648)");
  EXPECT_VQM_ERROR(parse(shaped({2, -2}, {1, 1})), format,
                   w + "size[1] is -2, dimensions must be >= 0");
  EXPECT_VQM_ERROR(parse(shaped({1, 1, 1, 1, 1, 1, 1, 1, 4}, {})), limit,
                   w + "rank 9 is over the limit max_rank (8)");
  const int64_t big = int64_t{1} << 31;
  EXPECT_VQM_ERROR(parse(shaped({big, big, big}, {1, 1, 1})), format,
                   w + "element count of size [2147483648, 2147483648, 2147483648] overflows");
  // An empty tensor with huge other dimensions is just empty.
  EXPECT_EQ(parse(shaped({0, big, big, big}, {1, 1, 1, 1})).get("w").nbytes, 0u);
  EXPECT_VQM_ERROR(parse(shaped({2, 2}, {1, 2})), unsupported,
                   w + "stride (1, 2) is not the contiguous stride (2, 1) of size [2, 2]; only "
                       "contiguous tensors are read (save t.contiguous())");
  EXPECT_VQM_ERROR(parse(shaped({4}, {2})), unsupported, "stride (2,) is not the contiguous");
  EXPECT_VQM_ERROR(parse(shaped({2, 2}, {-2, 1})), unsupported, "stride (-2, 1)");
  EXPECT_VQM_ERROR(parse(shaped({4}, {1, 1})), format,
                   w + "size [4] has 1 dimensions, stride (1, 1) has 2");
  EXPECT_VQM_ERROR(parse(shaped({4}, {}, 1)), format,
                   w + "storage offset 1 + 4 elements runs past its storage '0' of 4 elements");
  EXPECT_VQM_ERROR(parse(shaped({5}, {})), format, "storage offset 0 + 5 elements runs past");
  EXPECT_VQM_ERROR(parse(shaped({1}, {}, -1)), format, "storage offset -1 + 1 elements");
  EXPECT_VQM_ERROR(parse(shaped({1}, {}, INT64_MAX)), format, "storage offset 9223372036854775807");
  EXPECT_VQM_ERROR(parse(shaped({2, 3}, {})), format, "storage offset 0 + 6 elements");
  EXPECT_EQ(parse(shaped({2}, {}, 2)).get("w").offset % 64, 8u);
  EXPECT_EQ(parse(shaped({0}, {}, 4)).get("w").nbytes, 0u);  // empty, at the storage's end

  EXPECT_VQM_ERROR(parse(tensor_call([](Pickle *p) {
                     storage(p);
                     p->integer(0).ints({4}).mark().op('N').tuple().op(0x89).op('}');
                   })),
                   format, w + "stride[0] is None, expected an int");
  EXPECT_VQM_ERROR(parse(tensor_call([](Pickle *p) {
                     storage(p);
                     p->integer(0).mark().str("4").tuple().ints({1}).op(0x89).op('}');
                   })),
                   format, w + "size[0] is the string '4', expected an int");
}

TEST(PthTensor, DtypesAndLimits) {
  const std::pair<const char *, const char *> unsupported_types[] = {
      {"DoubleStorage", "float64"},
      {"ShortStorage", "int16"},
      {"BoolStorage", "bool"},
      {"ComplexFloatStorage", "complex64"},
      {"ComplexDoubleStorage", "complex128"}};
  for (const auto &[storage_type, torch_name] : unsupported_types) {
    SCOPED_TRACE(storage_type);
    const std::string type = storage_type;  // lambdas cannot capture structured bindings
    // Storage "0" holds 16 bytes: numel 16 / element size.
    const int64_t elem = type == "ComplexDoubleStorage" ? 16
                         : type == "BoolStorage"        ? 1
                         : type == "ShortStorage"       ? 2
                                                        : 8;
    EXPECT_VQM_ERROR(parse(one({"pos_embed", type, "0", 16 / elem, 0, {16 / elem}, {}})),
                     unsupported,
                     std::string("t.pth: tensor 'pos_embed': dtype ") + torch_name + " (" + type +
                         ") is not supported (float32, float16, bfloat16, int32, int64, int8, "
                         "uint8 are)");
  }
  const Bytes two = test::state_dict_pickle(
      {{"a", "FloatStorage", "0", 4, 0, {2, 2}, {}}, {"b", "FloatStorage", "0", 4, 1, {3}, {}}});
  Limits l;
  l.max_tensors = 1;
  EXPECT_VQM_ERROR(parse(two, l), limit, "t.pth: 2 tensors is over the limit max_tensors (1)");
  l = Limits();
  l.max_tensor_bytes = 15;
  EXPECT_VQM_ERROR(parse(two, l), limit,
                   "t.pth: tensor 'a': 16 bytes is over the limit max_tensor_bytes (15)");
  l = Limits();
  l.max_rank = 1;
  EXPECT_VQM_ERROR(parse(two, l), limit, "tensor 'a': rank 2 is over the limit max_rank (1)");
  l = Limits();
  l.max_dim = 1;
  EXPECT_VQM_ERROR(parse(two, l), limit, "tensor 'a': size[0] is 2, over the limit max_dim (1)");
  l = Limits();
  l.max_file_bytes = 100;
  EXPECT_VQM_ERROR(parse(two, l), limit, "over the limit max_file_bytes (100)");
  const PthFile f = parse(two);
  EXPECT_EQ(f.get("b").data, f.get("a").data + 4);
}

TEST(PthTensor, DictsThatAreNotStateDicts) {
  EXPECT_VQM_ERROR(parse(body("]")), format,
                   "t.pth: the pickle holds a list of 0, expected a dict of tensors");
  EXPECT_VQM_ERROR(parse(body("N")), format, "the pickle holds None, expected a dict");
  Pickle t;
  t.proto(2);
  test::pickle_tensor(&t, {"", "FloatStorage", "0", 4, 0, {4}, {}});
  EXPECT_VQM_ERROR(parse(t.stop()), format, "the pickle holds a tensor, expected a dict");
  EXPECT_VQM_ERROR(parse(Pickle().proto(2).op('}').str("a").integer(1).op('s').stop()), format,
                   "t.pth: the pickled dict's value for 'a' is an int (1), expected a tensor (a "
                   "state dict, or a checkpoint with one under 'model', 'state_dict' or "
                   "'model_state')");
  auto dict = [](const std::function<void(Pickle *)> &key2, bool tensor2) {
    Pickle p;
    p.proto(2).op('}').mark().str("w");
    test::pickle_tensor(&p, {"", "FloatStorage", "0", 4, 0, {4}, {}});
    key2(&p);
    if (tensor2) {
      test::pickle_tensor(&p, {"", "FloatStorage", "0", 4, 0, {4}, {}});
    } else {
      p.str("x");
    }
    return p.op('u').stop();
  };
  EXPECT_VQM_ERROR(parse(dict([](Pickle *p) { p->str("b"); }, false)), format,
                   "value for 'b' is the string 'x', expected a tensor");
  EXPECT_VQM_ERROR(parse(dict([](Pickle *p) { p->integer(5); }, true)), format,
                   "t.pth: state dict has the key an int (5), expected a string");
  EXPECT_VQM_ERROR(parse(dict([](Pickle *p) { p->str(""); }, true)), format,
                   "t.pth: empty tensor name");
  EXPECT_VQM_ERROR(parse(dict([](Pickle *p) { p->str("w"); }, true)), format,
                   "t.pth: tensor 'w' appears twice in the state dict");
  EXPECT_VQM_ERROR(parse(dict([](Pickle *p) { p->str("a\x01"); }, false)), format,
                   "value for 'a\\x01' is the string 'x'");
  // An empty state dict is a state dict; names may be any UTF-8, surrogates included.
  EXPECT_TRUE(parse(test::state_dict_pickle({})).tensors().empty());
  EXPECT_TRUE(parse(test::state_dict_pickle({}, false)).tensors().empty());
  const PthFile f = parse(dict([](Pickle *p) { p->str("\xc3\xa9\xed\xa0\x80"); }, true));
  EXPECT_NE(f.find("\xc3\xa9\xed\xa0\x80"), nullptr);
}

}  // namespace
}  // namespace vqm
